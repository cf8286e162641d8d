//! The triplet queue: mispredictions on local disk until blob storage has
//! them, and each sensor's predictor state. Both are tables of the edge
//! runtime's one spool, written in the same transaction as the batch's
//! journal entry, frontiers and prediction lines ([`TripletWrites`]): one
//! commit, one fsync, and no crash can keep one part of a step without the
//! others.
//!
//! Promise: when the step's commit returns, its triplets and the sensor
//! states that produced them are on disk; only then are the MQTT messages
//! behind them acknowledged. A triplet leaves the queue only after the
//! object holding it was stored. Waiting triplets count against the spool's
//! byte bound.
//!
//! Idempotent uploads: the uploader asks for a batch with
//! [`TripletQueue::next_batch`]; the batch's bounds are stored (durably)
//! before it is returned, and the same bounds come back until
//! [`TripletQueue::complete_batch`], even across a restart. The object key
//! is made from those bounds, so a retry rewrites the same object with the
//! same bytes and never uploads a triplet under a second name.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use gridcast_edge::Spool;
use gridcast_edge::spool::{SpoolError, TableWrites};
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};

use crate::triplet::Triplet;

const TRIPLETS: TableDefinition<u64, &[u8]> = TableDefinition::new("triplets");
const SENSORS: TableDefinition<&str, &[u8]> = TableDefinition::new("sensor_states");
const META: TableDefinition<&str, u64> = TableDefinition::new("triplet_meta");
const NEXT_SEQ: &str = "next_seq";
const BATCH_FIRST: &str = "batch_first";
const BATCH_LAST: &str = "batch_last";
/// When this queue was created (Unix ms): part of every object key.
const CREATED_MS: &str = "created_ms";

/// A batch to upload: `lines` are the records `first..=last`, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub first: u64,
    pub last: u64,
    pub lines: Vec<Vec<u8>>,
    /// Target interval start of the first triplet (for the key's date).
    pub first_interval_ms: i64,
}

pub struct TripletQueue {
    spool: Arc<Spool>,
    created_ms: u64,
    next_seq: AtomicU64,
    depth: AtomicU64,
}

impl TripletQueue {
    /// The queue's tables in `spool` (created when missing). Triplets and
    /// sensor states of a spool written by an older gridcast, in
    /// `legacy_dir/triplets.redb`, are moved in first.
    pub fn open(spool: Arc<Spool>, legacy_dir: &Path) -> Result<TripletQueue, SpoolError> {
        let txn = spool.database().begin_write()?;
        let (next_seq, depth, bytes, created_ms) = {
            let triplets = txn.open_table(TRIPLETS)?;
            txn.open_table(SENSORS)?;
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
            let mut bytes = 0u64;
            for entry in triplets.iter()? {
                bytes += entry?.1.value().len() as u64;
            }
            (next, triplets.len()?, bytes, created)
        };
        txn.commit()?;
        spool.hold(bytes);
        let mut queue =
            TripletQueue { spool, created_ms, next_seq: AtomicU64::new(next_seq), depth: AtomicU64::new(depth) };
        if let Some(created_ms) = queue.move_in_legacy(legacy_dir)? {
            queue.created_ms = created_ms;
        }
        Ok(queue)
    }

    /// The writes of one step: its triplets (numbered in the transaction)
    /// and the states of the sensors it changed.
    pub fn writes(self: &Arc<Self>, triplets: Vec<Triplet>, states: Vec<(String, Vec<u8>)>) -> TripletWrites {
        TripletWrites { queue: self.clone(), triplets, states, next_seq: 0 }
    }

    /// Every sensor's stored state, for a restart.
    pub fn sensor_states(&self) -> Result<Vec<(String, Vec<u8>)>, SpoolError> {
        let txn = self.spool.database().begin_read()?;
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
    pub fn next_batch(&self, max: usize) -> Result<Option<Batch>, SpoolError> {
        let txn = self.spool.database().begin_write()?;
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
    pub fn complete_batch(&self, first: u64, last: u64) -> Result<(), SpoolError> {
        let txn = self.spool.database().begin_write()?;
        let (mut removed, mut bytes) = (0u64, 0u64);
        {
            txn.open_table(TRIPLETS)?.retain_in(first..=last, |_, v| {
                removed += 1;
                bytes += v.len() as u64;
                false
            })?;
            let mut meta = txn.open_table(META)?;
            meta.remove(BATCH_FIRST)?;
            meta.remove(BATCH_LAST)?;
        }
        txn.commit()?;
        self.depth.fetch_sub(removed, Ordering::Relaxed);
        self.spool.release(bytes);
        Ok(())
    }

    /// When this queue was created, Unix ms: it names the queue in object
    /// keys, since a new queue numbers its triplets from 0 again.
    pub fn created_ms(&self) -> u64 {
        self.created_ms
    }

    /// Triplets waiting for upload.
    pub fn depth(&self) -> u64 {
        self.depth.load(Ordering::Relaxed)
    }

    /// Move the triplets, sensor states and numbering of an older release's
    /// separate triplet spool into these tables, once, then rename its file.
    /// Returns the old spool's creation time, which now names this one.
    fn move_in_legacy(&self, legacy_dir: &Path) -> Result<Option<u64>, SpoolError> {
        let path = legacy_dir.join("triplets.redb");
        if !path.exists() {
            return Ok(None);
        }
        let legacy = redb::Database::open(&path)
            .map_err(|e| SpoolError::Open { path: path.display().to_string(), error: e.into() })?;
        let read = legacy.begin_read()?;
        let old_triplets: TableDefinition<u64, &[u8]> = TableDefinition::new("triplets");
        let old_sensors: TableDefinition<&str, &[u8]> = TableDefinition::new("sensors");
        let old_meta: TableDefinition<&str, u64> = TableDefinition::new("meta");
        let mut moved = Vec::new();
        for entry in read.open_table(old_triplets)?.iter()? {
            let (k, v) = entry?;
            moved.push((k.value(), v.value().to_vec()));
        }
        let mut states = Vec::new();
        for entry in read.open_table(old_sensors)?.iter()? {
            let (k, v) = entry?;
            states.push((k.value().to_string(), v.value().to_vec()));
        }
        let meta = read.open_table(old_meta)?;
        let old_next = meta.get(NEXT_SEQ)?.map_or(0, |v| v.value());
        let old_created = meta.get(CREATED_MS)?.map(|v| v.value());
        drop((meta, read, legacy));

        let txn = self.spool.database().begin_write()?;
        let mut bytes = 0u64;
        {
            let mut table = txn.open_table(TRIPLETS)?;
            for (seq, line) in &moved {
                table.insert(*seq, &line[..])?;
                bytes += line.len() as u64;
            }
            let mut table = txn.open_table(SENSORS)?;
            for (sensor, state) in &states {
                table.insert(sensor.as_str(), &state[..])?;
            }
            let mut meta = txn.open_table(META)?;
            let next = old_next.max(moved.last().map_or(0, |(s, _)| s + 1)).max(self.next_seq.load(Ordering::Relaxed));
            meta.insert(NEXT_SEQ, next)?;
            self.next_seq.store(next, Ordering::Relaxed);
            // Keys name the spool by its creation time: keep the old one, so
            // a batch it had started keeps its key.
            if let Some(created) = old_created {
                meta.insert(CREATED_MS, created)?;
            }
        }
        txn.commit()?;
        let done = path.with_extension("redb.moved");
        std::fs::rename(&path, &done).map_err(|error| SpoolError::Dir { path: done.display().to_string(), error })?;
        self.depth.fetch_add(moved.len() as u64, Ordering::Relaxed);
        self.spool.hold(bytes);
        tracing::warn!(from = %path.display(), triplets = moved.len(), sensors = states.len(),
            "moved an older release's triplet spool into the predictor's one spool");
        Ok(old_created)
    }
}

/// One step's triplets and sensor states, written in the step's transaction.
pub struct TripletWrites {
    queue: Arc<TripletQueue>,
    /// Numbered (`seq`) when written.
    pub triplets: Vec<Triplet>,
    states: Vec<(String, Vec<u8>)>,
    next_seq: u64,
}

impl TableWrites for TripletWrites {
    fn write(&mut self, txn: &WriteTransaction) -> Result<u64, SpoolError> {
        let mut next = self.queue.next_seq.load(Ordering::Relaxed);
        let mut bytes = 0u64;
        if !self.triplets.is_empty() {
            let mut table = txn.open_table(TRIPLETS)?;
            for t in &mut self.triplets {
                t.seq = next;
                let line = t.to_json_line();
                table.insert(next, &line[..])?;
                bytes += line.len() as u64;
                next += 1;
            }
            txn.open_table(META)?.insert(NEXT_SEQ, next)?;
        }
        if !self.states.is_empty() {
            let mut table = txn.open_table(SENSORS)?;
            for (sensor, state) in &self.states {
                table.insert(sensor.as_str(), &state[..])?;
            }
        }
        self.next_seq = next;
        Ok(bytes)
    }
}

impl TripletWrites {
    /// The step is durable: count its triplets in the queue.
    pub fn committed(&self) {
        self.queue.next_seq.store(self.next_seq.max(self.queue.next_seq.load(Ordering::Relaxed)), Ordering::Relaxed);
        self.queue.depth.fetch_add(self.triplets.len() as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridcast_edge::spool::Commit;

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

    fn open(dir: &Path, max_bytes: u64) -> (Arc<Spool>, Arc<TripletQueue>) {
        let spool = Arc::new(Spool::open(dir, max_bytes, &["file".to_string()]).unwrap());
        let queue = Arc::new(TripletQueue::open(spool.clone(), &dir.join("legacy")).unwrap());
        (spool, queue)
    }

    /// One step: triplets and states through the spool's one commit.
    fn commit(spool: &Spool, queue: &Arc<TripletQueue>, triplets: Vec<Triplet>, states: &[(&str, &[u8])]) -> Vec<u64> {
        let states = states.iter().map(|(s, b)| (s.to_string(), b.to_vec())).collect();
        let mut writes = queue.writes(triplets, states);
        spool.commit_with(Commit { points: Some(b"prediction line\n"), ..Commit::default() }, &mut writes).unwrap();
        writes.committed();
        writes.triplets.iter().map(|t| t.seq).collect()
    }

    #[test]
    fn a_started_batch_keeps_its_bounds_across_a_restart_and_new_triplets() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (spool, queue) = open(dir.path(), u64::MAX);
            let seqs = commit(&spool, &queue, (0..3).map(|i| triplet(i * 60_000)).collect(), &[("s", b"state")]);
            assert_eq!(seqs, vec![0, 1, 2]);
            let b = queue.next_batch(10).unwrap().unwrap();
            assert_eq!((b.first, b.last, b.lines.len()), (0, 2, 3));
            // more arrive while the upload is in flight; then we "crash"
            commit(&spool, &queue, vec![triplet(999)], &[]);
        }
        let (spool, queue) = open(dir.path(), u64::MAX);
        assert_eq!(queue.depth(), 4);
        assert!(queue.created_ms() > 1_700_000_000_000, "a creation time, kept across restarts");
        let b = queue.next_batch(10).unwrap().unwrap();
        assert_eq!((b.first, b.last), (0, 2), "same bounds, hence the same object key");
        queue.complete_batch(b.first, b.last).unwrap();
        let b = queue.next_batch(10).unwrap().unwrap();
        assert_eq!((b.first, b.last, b.first_interval_ms), (3, 3, 999));
        queue.complete_batch(3, 3).unwrap();
        assert!(queue.next_batch(10).unwrap().is_none());
        assert_eq!(queue.depth(), 0);
        assert_eq!(spool.depth().unwrap().held_bytes, 0);
        assert_eq!(queue.sensor_states().unwrap(), vec![("s".to_string(), b"state".to_vec())]);
    }

    #[test]
    fn sequence_numbers_never_restart_after_the_queue_empties() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (spool, queue) = open(dir.path(), u64::MAX);
            commit(&spool, &queue, vec![triplet(0), triplet(1)], &[]);
            let b = queue.next_batch(10).unwrap().unwrap();
            queue.complete_batch(b.first, b.last).unwrap();
        }
        let (spool, queue) = open(dir.path(), u64::MAX);
        assert_eq!(commit(&spool, &queue, vec![triplet(2)], &[]), vec![2]);
    }

    #[test]
    fn batches_are_capped_at_max() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, queue) = open(dir.path(), u64::MAX);
        commit(&spool, &queue, (0..5).map(triplet).collect(), &[]);
        let b = queue.next_batch(2).unwrap().unwrap();
        assert_eq!((b.first, b.last), (0, 1));
    }

    #[test]
    fn waiting_triplets_count_against_the_spool_bound_until_uploaded() {
        let dir = tempfile::tempdir().unwrap();
        let line_bytes = triplet(0).to_json_line().len() as u64;
        // Room for three steps' prediction lines (16 B each, sent by no sink
        // here) and 2.5 triplets.
        let bound = 48 + line_bytes * 5 / 2;
        let (spool, queue) = open(dir.path(), bound);
        commit(&spool, &queue, vec![triplet(0), triplet(1)], &[]);
        assert!(!spool.is_full());
        commit(&spool, &queue, vec![triplet(2)], &[]);
        assert!(spool.is_full(), "{} of {}", spool.waiting_bytes(), spool.max_bytes());
        let b = queue.next_batch(1).unwrap().unwrap();
        queue.complete_batch(b.first, b.last).unwrap();
        assert!(!spool.is_full());
        drop((spool, queue));
        let (spool, _queue) = open(dir.path(), bound);
        assert_eq!(spool.waiting_bytes(), 32 + 2 * line_bytes, "held bytes are counted again at start-up");
    }

    #[test]
    fn an_older_release_triplet_spool_is_moved_in_once() {
        let dir = tempfile::tempdir().unwrap();
        let legacy = dir.path().join("legacy");
        std::fs::create_dir_all(&legacy).unwrap();
        {
            let db = redb::Database::create(legacy.join("triplets.redb")).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut t = txn.open_table(TableDefinition::<u64, &[u8]>::new("triplets")).unwrap();
                t.insert(7, &triplet(0).to_json_line()[..]).unwrap();
                let mut s = txn.open_table(TableDefinition::<&str, &[u8]>::new("sensors")).unwrap();
                s.insert("a", &b"old state"[..]).unwrap();
                let mut m = txn.open_table(TableDefinition::<&str, u64>::new("meta")).unwrap();
                m.insert(NEXT_SEQ, 8).unwrap();
                m.insert(CREATED_MS, 1_600_000_000_000).unwrap();
            }
            txn.commit().unwrap();
        }
        let (spool, queue) = open(dir.path(), u64::MAX);
        assert_eq!((queue.depth(), queue.created_ms()), (1, 1_600_000_000_000));
        assert_eq!(queue.sensor_states().unwrap(), vec![("a".to_string(), b"old state".to_vec())]);
        assert_eq!(commit(&spool, &queue, vec![triplet(1)], &[]), vec![8]);
        assert!(!legacy.join("triplets.redb").exists());
        drop((spool, queue));
        let (_spool, queue) = open(dir.path(), u64::MAX);
        assert_eq!(queue.depth(), 2, "moved once, not twice");
    }
}
