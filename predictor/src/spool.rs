//! The triplet spool: mispredictions on local disk until blob storage has
//! them, and each sensor's predictor state, in one redb database.
//!
//! Promise: when [`TripletSpool::commit`] returns, the triplets and the
//! sensor states that produced them are on disk (fsync); only then does the
//! predictor acknowledge the MQTT messages behind them. A triplet leaves the
//! spool only after the object holding it was stored.
//!
//! The same transaction keeps the prediction lines of that step, with the
//! stream spool's point sequence number they are due to get
//! ([`TripletSpool::unsent_prediction_lines`]): the predictor commits the
//! stream spool second, and a crash between the two commits would otherwise
//! lose those lines (the redelivered readings close an interval the sensor
//! state has already passed, so they are not made again).
//!
//! Idempotent uploads: the uploader asks for a batch with
//! [`TripletSpool::next_batch`]; the batch's bounds are stored (durably)
//! before it is returned, and the same bounds come back until
//! [`TripletSpool::complete_batch`], even across a restart. The object key
//! is made from those bounds, so a retry rewrites the same object with the
//! same bytes and never uploads a triplet under a second name.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::triplet::Triplet;

const TRIPLETS: TableDefinition<u64, &[u8]> = TableDefinition::new("triplets");
const SENSORS: TableDefinition<&str, &[u8]> = TableDefinition::new("sensors");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// The last step's prediction lines, under the stream spool's point sequence
/// number they are due to get (one entry at most).
const LINES: TableDefinition<u64, &[u8]> = TableDefinition::new("prediction_lines");
const NEXT_SEQ: &str = "next_seq";
const BATCH_FIRST: &str = "batch_first";
const BATCH_LAST: &str = "batch_last";
/// When this spool was created (Unix ms): part of every object key.
const CREATED_MS: &str = "created_ms";

#[derive(Debug, thiserror::Error)]
pub enum TripletSpoolError {
    #[error("triplet spool {path}: {source} (is another gridcast predict using it?)")]
    Open { path: String, source: redb::Error },
    #[error("triplet spool write failed: {0}")]
    Storage(#[from] redb::Error),
    #[error("triplet spool folder {path} cannot be created: {source}")]
    Dir { path: String, source: std::io::Error },
}

macro_rules! storage_from {
    ($($t:ty),*) => {$(
        impl From<$t> for TripletSpoolError {
            fn from(e: $t) -> Self { TripletSpoolError::Storage(e.into()) }
        }
    )*};
}
storage_from!(redb::TransactionError, redb::TableError, redb::StorageError, redb::CommitError);

/// A batch to upload: `lines` are the records `first..=last`, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub first: u64,
    pub last: u64,
    pub lines: Vec<Vec<u8>>,
    /// Target interval start of the first triplet (for the key's date).
    pub first_interval_ms: i64,
}

pub struct TripletSpool {
    db: Database,
    created_ms: u64,
    next_seq: AtomicU64,
    depth: AtomicU64,
}

impl TripletSpool {
    pub fn open(dir: &Path) -> Result<TripletSpool, TripletSpoolError> {
        std::fs::create_dir_all(dir)
            .map_err(|source| TripletSpoolError::Dir { path: dir.display().to_string(), source })?;
        let path = dir.join("triplets.redb");
        let db = Database::create(&path)
            .map_err(|e| TripletSpoolError::Open { path: path.display().to_string(), source: e.into() })?;
        let txn = db.begin_write()?;
        let (next_seq, depth, created_ms) = {
            let triplets = txn.open_table(TRIPLETS)?;
            txn.open_table(SENSORS)?;
            txn.open_table(LINES)?;
            let mut meta = txn.open_table(META)?;
            let stored = meta.get(NEXT_SEQ)?.map_or(0, |v| v.value());
            let next = triplets.last()?.map_or(0, |(k, _)| k.value() + 1).max(stored);
            let created = meta.get(CREATED_MS)?.map(|v| v.value());
            let created = match created {
                Some(ms) => ms,
                None => {
                    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
                    let ms = now.map_or(0, |d| d.as_millis() as u64);
                    meta.insert(CREATED_MS, ms)?;
                    ms
                }
            };
            (next, triplets.len()?, created)
        };
        txn.commit()?;
        Ok(TripletSpool { db, created_ms, next_seq: AtomicU64::new(next_seq), depth: AtomicU64::new(depth) })
    }

    /// Number the triplets, and store them with the given sensor states and
    /// prediction lines (`(point sequence number, lines)`) in one durable
    /// transaction.
    pub fn commit(
        &self,
        triplets: &mut [Triplet],
        sensors: &[(String, Vec<u8>)],
        prediction_lines: Option<(u64, &[u8])>,
    ) -> Result<(), TripletSpoolError> {
        let txn = self.db.begin_write()?;
        let mut next = self.next_seq.load(Ordering::Relaxed);
        {
            let mut table = txn.open_table(TRIPLETS)?;
            for t in triplets.iter_mut() {
                t.seq = next;
                table.insert(next, &t.to_json_line()[..])?;
                next += 1;
            }
            let mut states = txn.open_table(SENSORS)?;
            for (sensor, state) in sensors {
                states.insert(sensor.as_str(), &state[..])?;
            }
            txn.open_table(META)?.insert(NEXT_SEQ, next)?;
            if let Some((point_seq, lines)) = prediction_lines {
                let mut table = txn.open_table(LINES)?;
                table.retain(|_, _| false)?;
                table.insert(point_seq, lines)?;
            }
        }
        txn.commit()?;
        self.next_seq.store(next, Ordering::Relaxed);
        self.depth.fetch_add(triplets.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// The prediction lines of the last commit, with the point sequence
    /// number they were due to get in the stream spool. After a restart,
    /// lines whose number the stream spool has not reached were never
    /// written there.
    pub fn unsent_prediction_lines(&self) -> Result<Option<(u64, Vec<u8>)>, TripletSpoolError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(LINES)?;
        Ok(table.last()?.map(|(k, v)| (k.value(), v.value().to_vec())))
    }

    /// Every sensor's stored state, for a restart.
    pub fn sensor_states(&self) -> Result<Vec<(String, Vec<u8>)>, TripletSpoolError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SENSORS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (k, v) = entry?;
            out.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// The batch to upload next: the one started before (same bounds, even
    /// after a restart) or up to `max` of the oldest triplets. `None` when empty.
    pub fn next_batch(&self, max: usize) -> Result<Option<Batch>, TripletSpoolError> {
        let txn = self.db.begin_write()?;
        let batch = {
            let meta = txn.open_table(META)?;
            let pending = match (meta.get(BATCH_FIRST)?, meta.get(BATCH_LAST)?) {
                (Some(f), Some(l)) => Some((f.value(), l.value())),
                _ => None,
            };
            drop(meta);
            let triplets = txn.open_table(TRIPLETS)?;
            let mut lines = Vec::new();
            let mut last = None;
            match pending {
                Some((first, l)) => {
                    for entry in triplets.range(first..=l)? {
                        let (k, v) = entry?;
                        last = Some(k.value());
                        lines.push(v.value().to_vec());
                    }
                    last.map(|_| (first, l, lines))
                }
                None => {
                    let mut first = None;
                    for entry in triplets.iter()?.take(max.max(1)) {
                        let (k, v) = entry?;
                        first.get_or_insert(k.value());
                        last = Some(k.value());
                        lines.push(v.value().to_vec());
                    }
                    first.zip(last).map(|(f, l)| (f, l, lines))
                }
            }
        };
        let Some((first, last, lines)) = batch else {
            return Ok(None);
        };
        {
            let mut meta = txn.open_table(META)?;
            meta.insert(BATCH_FIRST, first)?;
            meta.insert(BATCH_LAST, last)?;
        }
        txn.commit()?;
        let first_interval_ms = Triplet::from_json(&lines[0]).map_or(0, |t| t.interval_start_ms);
        Ok(Some(Batch { first, last, lines, first_interval_ms }))
    }

    /// The batch `first..=last` is stored remotely: forget it.
    pub fn complete_batch(&self, first: u64, last: u64) -> Result<(), TripletSpoolError> {
        let txn = self.db.begin_write()?;
        let mut removed = 0u64;
        {
            txn.open_table(TRIPLETS)?.retain_in(first..=last, |_, _| {
                removed += 1;
                false
            })?;
            let mut meta = txn.open_table(META)?;
            meta.remove(BATCH_FIRST)?;
            meta.remove(BATCH_LAST)?;
        }
        txn.commit()?;
        self.depth.fetch_sub(removed, Ordering::Relaxed);
        Ok(())
    }

    /// When this spool was created, Unix ms: it names the spool in object
    /// keys, since a new spool numbers its triplets from 0 again.
    pub fn created_ms(&self) -> u64 {
        self.created_ms
    }

    /// Triplets waiting for upload.
    pub fn depth(&self) -> u64 {
        self.depth.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn triplet(start: i64) -> Triplet {
        Triplet {
            seq: 0,
            sensor: "s".into(),
            model_version: "m".into(),
            feature_names: vec!["total".into()],
            features: vec![Some(1.0)],
            predicted: 1.0,
            actual: 2.0,
            error: -1.0,
            features_start_ms: start - 60_000,
            interval_start_ms: start,
            interval_end_ms: start + 60_000,
            horizon: 1,
            rule: "absolute".into(),
        }
    }

    #[test]
    fn a_started_batch_keeps_its_bounds_across_a_restart_and_new_triplets() {
        let dir = tempfile::tempdir().unwrap();
        {
            let spool = TripletSpool::open(dir.path()).unwrap();
            let mut ts: Vec<Triplet> = (0..3).map(|i| triplet(i * 60_000)).collect();
            spool.commit(&mut ts, &[("s".into(), b"state".to_vec())], Some((7, b"lines"))).unwrap();
            assert_eq!(ts.iter().map(|t| t.seq).collect::<Vec<_>>(), vec![0, 1, 2]);
            let b = spool.next_batch(10).unwrap().unwrap();
            assert_eq!((b.first, b.last, b.lines.len()), (0, 2, 3));
            // more arrive while the upload is in flight; then we "crash"
            spool.commit(&mut [triplet(999)], &[], None).unwrap();
        }
        let spool = TripletSpool::open(dir.path()).unwrap();
        assert_eq!(spool.depth(), 4);
        assert!(spool.created_ms() > 1_700_000_000_000, "a creation time, kept across restarts");
        let b = spool.next_batch(10).unwrap().unwrap();
        assert_eq!((b.first, b.last), (0, 2), "same bounds, hence the same object key");
        spool.complete_batch(b.first, b.last).unwrap();
        let b = spool.next_batch(10).unwrap().unwrap();
        assert_eq!((b.first, b.last, b.first_interval_ms), (3, 3, 999));
        spool.complete_batch(3, 3).unwrap();
        assert!(spool.next_batch(10).unwrap().is_none());
        assert_eq!(spool.depth(), 0);
        assert_eq!(spool.sensor_states().unwrap(), vec![("s".to_string(), b"state".to_vec())]);
        assert_eq!(spool.unsent_prediction_lines().unwrap(), Some((7, b"lines".to_vec())));
    }

    #[test]
    fn sequence_numbers_never_restart_after_the_spool_empties() {
        let dir = tempfile::tempdir().unwrap();
        {
            let spool = TripletSpool::open(dir.path()).unwrap();
            spool.commit(&mut [triplet(0), triplet(1)], &[], Some((1, b"a"))).unwrap();
            let b = spool.next_batch(10).unwrap().unwrap();
            spool.complete_batch(b.first, b.last).unwrap();
        }
        let spool = TripletSpool::open(dir.path()).unwrap();
        let mut t = [triplet(2)];
        spool.commit(&mut t, &[], Some((2, b"b"))).unwrap();
        assert_eq!(spool.unsent_prediction_lines().unwrap(), Some((2, b"b".to_vec())), "only the last step's lines");
        assert_eq!(t[0].seq, 2);
    }

    #[test]
    fn batches_are_capped_at_max() {
        let dir = tempfile::tempdir().unwrap();
        let spool = TripletSpool::open(dir.path()).unwrap();
        let mut ts: Vec<Triplet> = (0..5).map(triplet).collect();
        spool.commit(&mut ts, &[], None).unwrap();
        let b = spool.next_batch(2).unwrap().unwrap();
        assert_eq!((b.first, b.last), (0, 1));
    }
}
