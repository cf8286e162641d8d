//! The disk spool: what a service (ingest, predict) has promised the broker
//! it will not lose.
//!
//! Two kinds of records live in one redb database, written together in one
//! transaction per batch of MQTT messages:
//!
//! - the **journal**: the raw payloads of every acknowledged message whose
//!   window is still open. After a crash (even `kill -9`) ingest replays it
//!   to rebuild its open windows exactly. Batches below the oldest open
//!   window are forgotten in the same transaction that closes that window.
//! - **points**: closed windows as line protocol, waiting for the sinks. Each
//!   sink has a cursor; a record is deleted once every sink has passed it.
//!
//! Next to them, each (sensor, source)'s window *frontier* (readings before
//! it belong to windows already closed) is stored with the points that
//! closed them, so a replay never rebuilds a half window from a journal that
//! was partly forgotten.
//!
//! A service adds its own tables to the same transaction through
//! [`TableWrites`] (predict: triplets and per-sensor state), so one batch is
//! one commit and one fsync, and no crash can separate its parts.
//!
//! Promise: when [`Spool::commit`] returns, the batch is on disk (fsync);
//! only then are its messages acknowledged to the broker.
//!
//! Bound: what waits to be delivered (point records, and the bytes a
//! service's own tables report) is counted against `max_bytes`; at the bound
//! [`Spool::is_full`] says so and the driver stops taking messages.

mod codec;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use gridcast_core::window::WindowKey;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction,
};

pub use codec::{decode_journal_batch, encode_journal_batch};

const JOURNAL: TableDefinition<u64, &[u8]> = TableDefinition::new("journal");
const POINTS: TableDefinition<u64, &[u8]> = TableDefinition::new("points");
const FRONTIERS: TableDefinition<&str, i64> = TableDefinition::new("frontiers");
const CURSORS: TableDefinition<&str, u64> = TableDefinition::new("cursors");
/// Sequence counters. Kept apart from the tables they number, because a
/// table emptied by its sinks must not restart at 0: a sink's cursor would
/// then sit above the new records and skip them.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const NEXT_POINT: &str = "next_point";
const NEXT_JOURNAL: &str = "next_journal";

/// A spool failure: the disk or the database file is in trouble. The cause
/// is in the message, not chained as a `source`: `{:#}` at the binary's
/// edge would print it twice.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool database {path}: {error}")]
    Open { path: String, error: redb::Error },
    #[error("spool write failed: {0}")]
    Storage(redb::Error),
    #[error("spool folder {path} cannot be created: {error}")]
    Dir { path: String, error: std::io::Error },
}

impl From<redb::Error> for SpoolError {
    fn from(e: redb::Error) -> Self {
        SpoolError::Storage(e)
    }
}

impl SpoolError {
    /// The disk is full (ENOSPC). redb cannot go on after a failed write
    /// (its database must be opened again), but nothing is lost: what was
    /// not committed was not acknowledged either.
    pub fn is_disk_full(&self) -> bool {
        let io = match self {
            SpoolError::Open { error, .. } | SpoolError::Storage(error) => match error {
                redb::Error::Io(e) => Some(e.kind()),
                _ => None,
            },
            SpoolError::Dir { error, .. } => Some(error.kind()),
        };
        io == Some(std::io::ErrorKind::StorageFull)
    }
}

/// redb's error types, each into [`SpoolError::Storage`].
macro_rules! storage_from {
    ($($t:ty),*) => {$(
        impl From<$t> for SpoolError {
            fn from(e: $t) -> Self { SpoolError::Storage(e.into()) }
        }
    )*};
}
storage_from!(redb::TransactionError, redb::TableError, redb::StorageError, redb::CommitError);

/// A service's own writes, added to a step's transaction.
pub trait TableWrites {
    /// Write into `txn`; return the bytes added that wait for delivery
    /// (they count against the spool's bound until [`Spool::release`]).
    fn write(&mut self, txn: &WriteTransaction) -> Result<u64, SpoolError>;
}

/// No writes of one's own (ingest).
impl TableWrites for () {
    fn write(&mut self, _txn: &WriteTransaction) -> Result<u64, SpoolError> {
        Ok(0)
    }
}

/// One durable step of the pipeline.
#[derive(Debug, Default)]
pub struct Commit<'a> {
    /// The batch's raw messages ([`encode_journal_batch`]), under `journal_seq`.
    pub journal: Option<(u64, &'a [u8])>,
    /// Line protocol of the windows this batch closed.
    pub points: Option<&'a [u8]>,
    /// New frontiers of the (sensor, source) keys whose windows closed.
    pub frontiers: &'a [(WindowKey, i64)],
    /// Forget journal batches below this sequence number.
    pub forget_journal_below: Option<u64>,
}

/// What the spool holds, for logs and `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Depth {
    pub journal_batches: u64,
    pub journal_bytes: u64,
    pub point_records: u64,
    pub point_bytes: u64,
    /// Bytes of the service's own tables waiting for delivery (triplets).
    pub held_bytes: u64,
}

/// What a restart replays: the journal's batches in order, and the stored
/// frontiers by window key.
pub type Recovered = (Vec<(u64, Vec<u8>)>, Vec<(WindowKey, i64)>);

/// The open spool. Cheap to share behind an `Arc`; redb serialises writers.
pub struct Spool {
    db: Database,
    /// The folder it lives in.
    dir: std::path::PathBuf,
    max_bytes: u64,
    point_bytes: AtomicU64,
    /// Bytes of the service's own tables waiting for delivery.
    held_bytes: AtomicU64,
    journal_bytes: AtomicU64,
    /// Sequence numbers to hand out next, and the sinks' cursors, kept in
    /// memory so the hot path reads no table.
    seqs: Mutex<Seqs>,
}

#[derive(Debug)]
struct Seqs {
    next_journal: u64,
    next_point: u64,
    cursors: BTreeMap<String, u64>,
}

impl Spool {
    /// Open (or create) the spool in `dir`, for the given sinks. A sink seen
    /// for the first time starts at the oldest record still held; cursors of
    /// sinks no longer configured are dropped (and say so in the log), so
    /// they do not pin records forever.
    pub fn open(dir: &Path, max_bytes: u64, sinks: &[String]) -> Result<Spool, SpoolError> {
        std::fs::create_dir_all(dir).map_err(|error| SpoolError::Dir { path: dir.display().to_string(), error })?;
        let path = dir.join("spool.redb");
        let db = Database::create(&path)
            .map_err(|e| SpoolError::Open { path: path.display().to_string(), error: e.into() })?;

        let txn = db.begin_write()?;
        let (seqs, journal_bytes, point_bytes) = {
            let journal = txn.open_table(JOURNAL)?;
            let points = txn.open_table(POINTS)?;
            txn.open_table(FRONTIERS)?;
            let mut cursors = txn.open_table(CURSORS)?;
            let meta = txn.open_table(META)?;
            let stored = |key: &str| -> Result<u64, SpoolError> { Ok(meta.get(key)?.map_or(0, |v| v.value())) };
            let next_journal = journal.last()?.map_or(0, |(k, _)| k.value() + 1).max(stored(NEXT_JOURNAL)?);
            let next_point = points.last()?.map_or(0, |(k, _)| k.value() + 1).max(stored(NEXT_POINT)?);
            let first_point = points.first()?.map_or(next_point, |(k, _)| k.value());
            let journal_bytes = sum_value_bytes(&journal)?;
            let point_bytes = sum_value_bytes(&points)?;

            let stale: Vec<String> = cursors
                .iter()?
                .filter_map(|e| e.ok().map(|(k, _)| k.value().to_string()))
                .filter(|k| !sinks.contains(k))
                .collect();
            for name in stale {
                tracing::warn!(sink = %name, "sink is no longer configured: dropping its spool cursor");
                cursors.remove(name.as_str())?;
            }
            let mut in_memory = BTreeMap::new();
            for name in sinks {
                let cursor = match cursors.get(name.as_str())? {
                    Some(c) => c.value(),
                    None => first_point,
                };
                cursors.insert(name.as_str(), cursor)?;
                in_memory.insert(name.clone(), cursor);
            }
            (Seqs { next_journal, next_point, cursors: in_memory }, journal_bytes, point_bytes)
        };
        txn.commit()?;
        let spool = Spool {
            db,
            dir: dir.to_path_buf(),
            max_bytes,
            point_bytes: AtomicU64::new(point_bytes),
            held_bytes: AtomicU64::new(0),
            journal_bytes: AtomicU64::new(journal_bytes),
            seqs: Mutex::new(seqs),
        };
        // Points every sink has passed may remain if the sink list changed.
        spool.forget_delivered_points(Durability::Immediate)?;
        Ok(spool)
    }

    /// The journal's batches in order, and the stored frontiers: what a
    /// restart replays.
    pub fn recover(&self) -> Result<Recovered, SpoolError> {
        let txn = self.db.begin_read()?;
        let journal = txn.open_table(JOURNAL)?;
        let mut batches = Vec::new();
        for entry in journal.iter()? {
            let (k, v) = entry?;
            batches.push((k.value(), v.value().to_vec()));
        }
        let frontiers_table = txn.open_table(FRONTIERS)?;
        let mut frontiers = Vec::new();
        for entry in frontiers_table.iter()? {
            let (k, v) = entry?;
            match WindowKey::decode(k.value()) {
                Some(key) => frontiers.push((key, v.value())),
                None => tracing::warn!(key = %k.value(), "ignoring an unreadable frontier key in the spool"),
            }
        }
        Ok((batches, frontiers))
    }

    /// The sequence number the next journal batch will get.
    pub fn next_journal_seq(&self) -> u64 {
        self.seqs.lock().expect("spool lock").next_journal
    }

    /// The sequence number the next point record will get.
    pub fn next_point_seq(&self) -> u64 {
        self.seqs.lock().expect("spool lock").next_point
    }

    /// True when what waits for delivery (point records for the sinks, and
    /// the service's own held bytes) fills the configured size: the driver
    /// stops taking new messages until sinks and uploaders catch up.
    pub fn is_full(&self) -> bool {
        self.waiting_bytes() >= self.max_bytes
    }

    /// Bytes waiting for delivery, the figure the bound applies to.
    pub fn waiting_bytes(&self) -> u64 {
        self.point_bytes.load(Ordering::Relaxed) + self.held_bytes.load(Ordering::Relaxed)
    }

    /// The folder the spool lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The configured bound.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Count bytes of the service's own tables found at start-up.
    pub fn hold(&self, bytes: u64) {
        self.held_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The service delivered (and deleted) this many held bytes.
    pub fn release(&self, bytes: u64) {
        let _ = self.held_bytes.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| Some(b.saturating_sub(bytes)));
    }

    /// The database, for a service's own tables (read transactions, and
    /// writes outside a step such as an uploader's bookkeeping).
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Make one step durable (one fsync).
    pub fn commit(&self, step: Commit<'_>) -> Result<(), SpoolError> {
        self.commit_with(step, &mut ())
    }

    /// Make one step and the service's own `writes` durable together: one
    /// transaction, one fsync.
    pub fn commit_with(&self, step: Commit<'_>, writes: &mut dyn TableWrites) -> Result<(), SpoolError> {
        let txn = self.db.begin_write()?;
        let held = writes.write(&txn)?;
        let mut journal_delta: i64 = 0;
        let mut point_delta: u64 = 0;
        let mut next_point = None;
        {
            let mut journal = txn.open_table(JOURNAL)?;
            if let Some((seq, bytes)) = step.journal {
                journal.insert(seq, bytes)?;
                journal_delta += bytes.len() as i64;
            }
            if let Some(below) = step.forget_journal_below {
                journal.retain_in(..below, |_, v| {
                    journal_delta -= v.len() as i64;
                    false
                })?;
            }
            if let Some(lines) = step.points.filter(|p| !p.is_empty()) {
                let seq = self.seqs.lock().expect("spool lock").next_point;
                txn.open_table(POINTS)?.insert(seq, lines)?;
                point_delta = lines.len() as u64;
                next_point = Some(seq + 1);
            }
            let mut frontiers = txn.open_table(FRONTIERS)?;
            for (key, closed_until) in step.frontiers {
                frontiers.insert(key.encode().as_str(), *closed_until)?;
            }
            let mut meta = txn.open_table(META)?;
            if let Some((seq, _)) = step.journal {
                meta.insert(NEXT_JOURNAL, seq + 1)?;
            }
            if let Some(next) = next_point {
                meta.insert(NEXT_POINT, next)?;
            }
        }
        txn.commit()?;

        let mut seqs = self.seqs.lock().expect("spool lock");
        if let Some((seq, _)) = step.journal {
            seqs.next_journal = seq + 1;
        }
        if let Some(next) = next_point {
            seqs.next_point = next;
        }
        drop(seqs);
        self.journal_bytes.fetch_add(journal_delta as u64, Ordering::Relaxed);
        self.point_bytes.fetch_add(point_delta, Ordering::Relaxed);
        self.held_bytes.fetch_add(held, Ordering::Relaxed);
        Ok(())
    }

    /// Up to `max_records` point records at or after `sink`'s cursor.
    pub fn pending_points(&self, sink: &str, max_records: usize) -> Result<Vec<(u64, Vec<u8>)>, SpoolError> {
        let from = self.cursor(sink);
        let txn = self.db.begin_read()?;
        let points = txn.open_table(POINTS)?;
        let mut out = Vec::new();
        for entry in points.range(from..)?.take(max_records) {
            let (k, v) = entry?;
            out.push((k.value(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Record that `sink` has stored every point record up to and including
    /// `through`, and delete what every sink has stored.
    ///
    /// Not synced on its own: a crash may forget the advance, and the sink
    /// then gets those records again (same series and timestamps: harmless).
    /// The next pipeline commit syncs it.
    pub fn advance_cursor(&self, sink: &str, through: u64) -> Result<(), SpoolError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::None).map_err(redb::Error::from)?;
        txn.open_table(CURSORS)?.insert(sink, through + 1)?;
        txn.commit()?;
        self.seqs.lock().expect("spool lock").cursors.insert(sink.to_string(), through + 1);
        self.forget_delivered_points(Durability::None)
    }

    fn cursor(&self, sink: &str) -> u64 {
        self.seqs.lock().expect("spool lock").cursors.get(sink).copied().unwrap_or(0)
    }

    fn forget_delivered_points(&self, durability: Durability) -> Result<(), SpoolError> {
        let seqs = self.seqs.lock().expect("spool lock");
        let Some(low) = seqs.cursors.values().min().copied() else {
            return Ok(()); // no sinks: keep everything
        };
        drop(seqs);
        let mut txn = self.db.begin_write()?;
        txn.set_durability(durability).map_err(redb::Error::from)?;
        let mut freed = 0u64;
        txn.open_table(POINTS)?.retain_in(..low, |_, v| {
            freed += v.len() as u64;
            false
        })?;
        txn.commit()?;
        self.point_bytes.fetch_sub(freed, Ordering::Relaxed);
        Ok(())
    }

    /// What the spool holds now.
    pub fn depth(&self) -> Result<Depth, SpoolError> {
        let txn = self.db.begin_read()?;
        Ok(Depth {
            journal_batches: txn.open_table(JOURNAL)?.len()?,
            journal_bytes: self.journal_bytes.load(Ordering::Relaxed),
            point_records: txn.open_table(POINTS)?.len()?,
            point_bytes: self.point_bytes.load(Ordering::Relaxed),
            held_bytes: self.held_bytes.load(Ordering::Relaxed),
        })
    }
}

/// [`Spool::depth`] off the async worker (it reads the database); a spool
/// that cannot be read shows as empty in logs.
pub async fn depth_of(spool: &std::sync::Arc<Spool>) -> Depth {
    let spool = spool.clone();
    tokio::task::spawn_blocking(move || spool.depth().unwrap_or_default()).await.unwrap_or_default()
}

fn sum_value_bytes(table: &impl ReadableTable<u64, &'static [u8]>) -> Result<u64, SpoolError> {
    let mut total = 0;
    for entry in table.iter()? {
        total += entry?.1.value().len() as u64;
    }
    Ok(total)
}

#[cfg(test)]
mod tests;
