//! The driver: the thin async layer around the [`Stage`]. It takes one
//! [`Input`] at a time (a batch of MQTT messages, a clock tick, or an event of
//! the service's own, such as a model swap), asks the stage what the input
//! means, hands the closed windows to the service's [`Consumer`], commits
//! everything in one spool transaction (one fsync), and only then
//! acknowledges the batch's messages.
//!
//! Because inputs are one enum handled one after the other, "a model swaps
//! between two batches" is a property of the type, not of a `select!` arm
//! order. Acks go through [`Acker`], so commit-before-ack is tested without
//! a broker (see the tests).
//!
//! Crash points: before the commit, nothing was acked and the broker
//! redelivers; after it, the journal holds the batch and a restart replays
//! it ([`Driver::recover`]), and a redelivered message is a duplicate the
//! windows recognise.

use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gridcast_core::window::{ClosedWindow, WindowKey};
use rumqttc::Publish;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::spool::{Commit, Spool, SpoolError, TableWrites};
use crate::stage::{Aside, AsideMessage, Stage, StageConfig, Step};
use crate::stats::Stats;

/// One thing for the driver to do.
#[derive(Debug)]
pub enum Input<E> {
    /// Messages from the broker, not yet acknowledged.
    Batch(Vec<Publish>),
    /// The clock moved (about once a second): close idle windows.
    Tick,
    /// The service's own event, handled between two batches.
    Event(E),
}

/// Acknowledges a message to the broker.
pub trait Acker: Send + Sync + 'static {
    fn ack(&self, publish: &Publish) -> impl Future<Output = ()> + Send;
}

impl Acker for rumqttc::AsyncClient {
    async fn ack(&self, publish: &Publish) {
        // If the connection dropped meanwhile the broker redelivers, and the
        // windows skip the duplicate.
        let _ = rumqttc::AsyncClient::ack(self, publish).await;
    }
}

/// What a service does with the windows the stage closes.
pub trait Consumer: Send + 'static {
    /// The service's own inputs (predict: a new model).
    type Event: Send + 'static;
    /// The service's own tables, written in the step's transaction.
    type Writes: TableWrites + Send + 'static;

    /// Turn one step's closed windows into line protocol for the sinks and
    /// the service's own writes. Called once per step, in input order.
    fn on_closed(&mut self, closed: Vec<ClosedWindow>) -> Output<Self::Writes>;

    /// The service's own event, between two steps. What it returns (e.g.
    /// ingest's own counters as line protocol) is committed on its own, in
    /// one transaction, like a step.
    fn on_event(&mut self, _event: Self::Event) -> Option<Output<Self::Writes>> {
        None
    }

    /// The step holding `writes` is durable (its messages are acked next).
    fn on_committed(&mut self, _writes: Self::Writes) {}
}

/// What a consumer adds to a step's commit.
pub struct Output<W> {
    /// Line protocol for the sinks; empty for none.
    pub lines: Vec<u8>,
    pub writes: W,
}

/// The stage, its consumer and what they commit to.
pub struct Driver<C: Consumer> {
    stage: Stage,
    consumer: C,
    spool: Arc<Spool>,
    stats: Arc<Stats>,
    /// Bumped after every commit that added point records; sinks watch it.
    newest_points: watch::Sender<u64>,
    /// Where undecodable messages are kept; `None`: counted and logged only
    /// (predict reads the same topics as ingest, which keeps them).
    rejected_log: Option<PathBuf>,
}

impl<C: Consumer> Driver<C> {
    pub fn new(
        config: StageConfig,
        consumer: C,
        spool: Arc<Spool>,
        stats: Arc<Stats>,
        newest_points: watch::Sender<u64>,
        rejected_log: Option<PathBuf>,
    ) -> Driver<C> {
        let stage = Stage::new(config, spool.next_journal_seq());
        Driver { stage, consumer, spool, stats, newest_points, rejected_log }
    }

    pub fn consumer(&self) -> &C {
        &self.consumer
    }

    /// The counters this driver and its source keep.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Rebuild the open windows from the spool after a restart, and commit
    /// whatever the replay closed.
    pub async fn recover(&mut self) -> anyhow::Result<()> {
        let spool = self.spool.clone();
        let (journal, frontiers) = tokio::task::spawn_blocking(move || spool.recover()).await??;
        let step = self.stage.replay(&journal, &frontiers, now_ms());
        if !journal.is_empty() {
            tracing::info!(
                batches = journal.len(),
                readings = step.counts.accepted,
                open_windows = self.stage.open_windows(),
                "replayed the spool journal: open windows restored"
            );
        }
        if !step.closed.is_empty() {
            self.commit(step, &[]).await?;
        }
        Ok(())
    }

    /// Handle one input: for a batch, commit and then ack every message.
    pub async fn handle(&mut self, input: Input<C::Event>, acker: &impl Acker) -> anyhow::Result<()> {
        match input {
            Input::Event(event) => {
                if let Some(output) = self.consumer.on_event(event) {
                    self.commit_output(output).await?;
                }
            }
            Input::Tick => {
                let step = self.stage.on_tick(now_ms(), self.stats.listening_since());
                if !step.closed.is_empty() {
                    tracing::info!(windows = step.closed.len(), "closing the windows of sensors that went quiet");
                    self.commit(step, &[]).await?;
                }
            }
            Input::Batch(batch) => {
                let step = self.stage.on_batch(batch.iter().map(|p| &p.payload[..]), now_ms());
                self.count(&step, &batch);
                self.commit(step, &batch).await?;
                for publish in &batch {
                    acker.ack(publish).await;
                }
            }
        }
        Ok(())
    }

    /// Run until `shutdown` or until the source closes `publishes`: batches
    /// as `batching` says, a tick every second, and `events`. While the
    /// spool is full, no batch is taken (and so none acked): the broker
    /// keeps the messages.
    pub async fn run(
        mut self,
        mut publishes: mpsc::Receiver<Publish>,
        mut events: mpsc::Receiver<C::Event>,
        acker: impl Acker,
        batching: Batching,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let batch_max = batching.max_messages.max(1);
        let mut batch: Vec<Publish> = Vec::with_capacity(batch_max);
        let mut events_open = true;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            if self.spool.is_full() && !wait_for_room(&self.spool, &self.stats, &shutdown).await {
                return Ok(());
            }
            let input = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(()),
                event = events.recv(), if events_open => match event {
                    Some(event) => Input::Event(event),
                    None => {
                        events_open = false; // a service without events of its own
                        continue;
                    }
                },
                n = publishes.recv_many(&mut batch, batch_max) => {
                    if n == 0 {
                        return Ok(());
                    }
                    linger(&mut publishes, &mut batch, batch_max, batching.linger).await;
                    Input::Batch(std::mem::take(&mut batch))
                }
                _ = tick.tick() => Input::Tick,
            };
            if let Err(error) = self.handle(input, &acker).await {
                match error.downcast_ref::<SpoolError>() {
                    Some(spool_error) if spool_error.is_disk_full() => {
                        return disk_full(&self.spool, &self.stats, &shutdown, spool_error).await;
                    }
                    _ => return Err(error),
                }
            }
        }
    }

    fn count(&self, step: &Step, batch: &[Publish]) {
        let c = &step.counts;
        Stats::add(&self.stats.messages, c.messages);
        Stats::add(&self.stats.readings, c.accepted);
        Stats::add(&self.stats.late_readings, c.late);
        Stats::add(&self.stats.clock_jump_readings, c.clock_jumped);
        Stats::add(&self.stats.duplicate_readings, c.duplicate);
        Stats::add(&self.stats.key_limit_readings, c.key_limit);
        if let Some(key) = &step.first_refused_key {
            tracing::warn!(sensor = %key.sensor, source = %key.source, refused_in_batch = c.key_limit,
                max_keys = self.stage.max_keys(),
                "reading of a new sensor refused: [window] max_keys sensors are kept already; counted, not merged");
        }
        if let Some(first) = step.aside.first() {
            let kept = if self.rejected_log.is_some() { "kept in the rejected log" } else { "counted" };
            let topic = &batch[first.index].topic;
            let messages = step.aside.len();
            match first.why {
                Aside::Late { window_start_ms, closed_until_ms } => {
                    tracing::warn!(sensor = %first.key.sensor, ts_ms = first.ts_ms, window_start_ms, closed_until_ms,
                        %topic, late_in_batch = c.late, clock_jumped_in_batch = c.clock_jumped, messages,
                        "late reading: its window is already closed and written; {kept}, not merged")
                }
                Aside::ClockJump { ahead_ms } => {
                    tracing::warn!(sensor = %first.key.sensor, ts_ms = first.ts_ms, ahead_ms, %topic,
                        late_in_batch = c.late, clock_jumped_in_batch = c.clock_jumped, messages,
                        "reading from a meter clock that jumped ahead; {kept}, not merged")
                }
            }
        }
        for reject in &step.rejects {
            self.stats.decode_error(reject.error.kind());
            let publish = &batch[reject.index];
            if self.rejected_log.is_some() {
                tracing::warn!(topic = %publish.topic, bytes = publish.payload.len(), error = %reject.error, "rejected a message");
            } else {
                tracing::debug!(topic = %publish.topic, error = %reject.error, "undecodable message (ingest keeps these)");
            }
        }
    }

    /// Commit one step (and the batch's rejected messages) in one
    /// transaction, off the async worker.
    async fn commit(&mut self, step: Step, batch: &[Publish]) -> anyhow::Result<()> {
        let Step { journal, closed, frontiers, forget_below, rejects, aside, .. } = step;
        let closed_count = closed.len() as u64;
        let output = self.consumer.on_closed(closed);
        let rejected: Vec<RejectedRecord> = match &self.rejected_log {
            Some(_) => {
                let undecodable =
                    rejects.iter().map(|r| RejectedRecord::new(&batch[r.index], "undecodable", &r.error.to_string()));
                let aside = aside.iter().map(|m| RejectedRecord::new(&batch[m.index], m.kind(), &aside_reason(m)));
                undecodable.chain(aside).collect()
            }
            None => Vec::new(),
        };
        let stored =
            self.store(StepRecords { journal, frontiers, forget_below: Some(forget_below), rejected }, output).await?;
        Stats::add(&self.stats.windows_closed, closed_count);
        Stats::add(&self.stats.batches_committed, 1);
        self.stats.open_windows.store(self.stage.open_windows() as u64, std::sync::atomic::Ordering::Relaxed);
        self.committed(stored);
        Ok(())
    }

    /// Commit an event's output: its lines and writes, nothing of a step.
    async fn commit_output(&mut self, output: Output<C::Writes>) -> anyhow::Result<()> {
        let stored = self.store(StepRecords::default(), output).await?;
        self.committed(stored);
        Ok(())
    }

    /// Write `records` and `output` to the spool in one transaction, off the
    /// async worker (the rejected messages to their log first).
    async fn store(&mut self, records: StepRecords, output: Output<C::Writes>) -> anyhow::Result<Stored<C::Writes>> {
        let StepRecords { journal, frontiers, forget_below, rejected } = records;
        let Output { lines, mut writes } = output;
        let spool = self.spool.clone();
        let rejected_log = self.rejected_log.clone();
        let has_points = !lines.is_empty();
        let stats = self.stats.clone();
        let writes = tokio::task::spawn_blocking(move || -> anyhow::Result<C::Writes> {
            if let Some(path) = rejected_log.filter(|_| !rejected.is_empty()) {
                keep_rejected(&path, &rejected, &stats);
            }
            spool.commit_with(
                Commit {
                    journal: journal.as_ref().map(|(seq, bytes)| (*seq, &bytes[..])),
                    points: Some(&lines[..]),
                    frontiers: &frontiers,
                    forget_journal_below: forget_below,
                },
                &mut writes,
            )?;
            Ok(writes)
        })
        .await??;
        Ok(Stored { writes, has_points })
    }

    /// What is durable now: the sinks are told of new points, the consumer
    /// of its writes.
    fn committed(&mut self, stored: Stored<C::Writes>) {
        if stored.has_points {
            self.newest_points.send_modify(|n| *n += 1);
        }
        self.consumer.on_committed(stored.writes);
    }
}

/// A step's own records for the spool besides the consumer's output; none
/// for an event's output.
#[derive(Default)]
struct StepRecords {
    journal: Option<(u64, Vec<u8>)>,
    frontiers: Vec<(WindowKey, i64)>,
    forget_below: Option<u64>,
    rejected: Vec<RejectedRecord>,
}

/// A committed transaction: the consumer's writes, and whether it added
/// point records for the sinks.
struct Stored<W> {
    writes: W,
    has_points: bool,
}

/// Wait until the spool has room again; false if shut down first. (A free
/// function: holding `&Driver` across the wait would make the driver's
/// future `Send` only for `Sync` consumers.)
async fn wait_for_room(spool: &Spool, stats: &Stats, shutdown: &CancellationToken) -> bool {
    tracing::error!(
        waiting_bytes = spool.waiting_bytes(),
        max_bytes = spool.max_bytes(),
        "spool is full: not acknowledging MQTT messages until the sinks catch up (the broker keeps them)"
    );
    Stats::add(&stats.spool_full_waits, 1);
    while spool.is_full() {
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
    tracing::info!("spool has room again: taking messages");
    true
}

/// The disk under the spool is full: the batch was not committed, so it
/// was not acknowledged, and the broker keeps it and everything after it.
/// redb cannot go on after a failed write (its database must be opened
/// anew), so: wait, taking nothing, until a probe file of
/// [`DISK_ROOM_PROBE_BYTES`] can be written beside the spool, then start
/// this service again in place (exec, same arguments): the path a crash
/// takes, journal replay and broker redelivery, which loses nothing.
/// Returns only on shutdown, or with the error if the exec fails.
async fn disk_full(
    spool: &Spool,
    stats: &Stats,
    shutdown: &CancellationToken,
    error: &SpoolError,
) -> anyhow::Result<()> {
    tracing::error!(spool = %spool.dir().display(), %error,
        "the disk under the spool is full: not acknowledging MQTT messages (the broker keeps them); \
         starting again once there is room");
    stats.spool_disk_full.store(1, std::sync::atomic::Ordering::Relaxed);
    Stats::add(&stats.spool_full_waits, 1);
    let probe = spool.dir().join(".room-probe");
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let path = probe.clone();
        let room = tokio::task::spawn_blocking(move || {
            let written = std::fs::write(&path, vec![0u8; DISK_ROOM_PROBE_BYTES]).is_ok();
            let _ = std::fs::remove_file(&path);
            written
        })
        .await
        .unwrap_or(false);
        if room {
            break;
        }
    }
    tracing::warn!("there is room on the disk again: starting again to reopen the spool");
    restart_in_place()
}

/// Free space that counts as room again after a full disk: a few batches'
/// worth, and redb growing its file.
pub const DISK_ROOM_PROBE_BYTES: usize = 1 << 20;

/// Replaces this process by a fresh run of the same program and arguments.
/// Through `/proc/self/exe`: the binary may have been replaced or deleted
/// on disk since it started (an upgrade; a rebuild), and this is still the
/// program that runs, as it was (`current_exe()` would name a path that is
/// gone or holds another build).
fn restart_in_place() -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| "gridcast".into());
    let error = std::process::Command::new("/proc/self/exe").arg0(&arg0).args(args).exec();
    Err(anyhow::anyhow!("cannot start {} again (through /proc/self/exe): {error}", arg0.to_string_lossy()))
}

/// How the driver groups messages into batches (one commit and one fsync
/// each).
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    /// Most messages in one batch.
    pub max_messages: usize,
    /// After a batch's first message, wait this long for more (up to
    /// `max_messages`) before committing. Zero commits whatever is there at
    /// once. Fewer, larger commits write fewer bytes per reading to the disk
    /// (an SD card wears out) at the cost of that much ack latency; the
    /// broker's in-flight window must hold a linger's worth of messages, or
    /// throughput is capped at window / linger.
    pub linger: Duration,
}

/// Add to `batch` what arrives within `linger` (up to `batch_max`).
async fn linger(publishes: &mut mpsc::Receiver<Publish>, batch: &mut Vec<Publish>, batch_max: usize, linger: Duration) {
    if linger.is_zero() {
        return;
    }
    let deadline = tokio::time::Instant::now() + linger;
    while batch.len() < batch_max {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return,
            n = publishes.recv_many(batch, batch_max - batch.len()) => if n == 0 { return },
        }
    }
}

/// A message we could not decode, or one with readings that cannot be
/// merged (late, or clock-jumped), as kept in `rejected/messages.jsonl`.
struct RejectedRecord(serde_json::Value);

/// Most payload bytes a rejected record keeps: an oversized message is kept
/// by its start (enough to recognise the sender), so a flood of them cannot
/// fill the disk at the size they were sent.
const REJECTED_KEEP_BYTES: usize = 64 << 10;

/// Why a message was kept aside.
fn aside_reason(m: &AsideMessage) -> String {
    let (sensor, ts) = (&m.key.sensor, m.ts_ms);
    let first = match m.why {
        Aside::Late { window_start_ms, closed_until_ms } => format!(
            "sensor {sensor} at {ts} ms falls in the window from {window_start_ms} ms, and its windows up to {closed_until_ms} ms are closed and written (a meter clock that jumped back, or a redelivery after a crash)"
        ),
        Aside::ClockJump { ahead_ms } => format!(
            "sensor {sensor} at {ts} ms is {ahead_ms} ms ahead of its newest reading, more than the wall clock moved: the meter's clock jumped ahead ([window] clock_jump_secs)"
        ),
    };
    format!("{} late and {} clock-jumped of its {} readings: {first}", m.late, m.clock_jumped, m.readings)
}

impl RejectedRecord {
    fn new(publish: &Publish, kind: &str, error: &str) -> RejectedRecord {
        let kept = &publish.payload[..publish.payload.len().min(REJECTED_KEEP_BYTES)];
        let payload_hex: String = kept.iter().map(|b| format!("{b:02x}")).collect();
        RejectedRecord(serde_json::json!({
            "at_ms": now_ms(),
            "topic": publish.topic,
            "kind": kind,
            "error": error,
            "payload_bytes": publish.payload.len(),
            "payload_truncated": kept.len() < publish.payload.len(),
            "payload_hex": payload_hex,
        }))
    }
}

/// The rejected log's bound: past it, rejected messages are counted
/// (`gridcast_rejected_not_kept_total`) and logged, not kept, so a meter
/// sending garbage, or one whose clock is stuck an hour back, cannot fill
/// the disk the spool needs. At 12 Hz and about 300 B a record, a day of
/// one meter's readings.
pub const REJECTED_LOG_MAX_BYTES: u64 = 256 << 20;

/// Append rejected messages to their log (blocking: runs with the commit).
fn keep_rejected(path: &std::path::Path, records: &[RejectedRecord], stats: &Stats) {
    keep_rejected_within(path, records, stats, REJECTED_LOG_MAX_BYTES);
}

fn keep_rejected_within(path: &std::path::Path, records: &[RejectedRecord], stats: &Stats, max_bytes: u64) {
    let size = std::fs::metadata(path).map_or(0, |m| m.len());
    if size >= max_bytes {
        let before = stats.rejected_not_kept.fetch_add(records.len() as u64, std::sync::atomic::Ordering::Relaxed);
        if before == 0 || (before + records.len() as u64) / 10_000 > before / 10_000 {
            tracing::error!(path = %path.display(), bytes = size, not_kept_so_far = before + records.len() as u64,
                "the rejected log is at its bound: rejected messages are counted, not kept; move it away to keep more");
        }
        return;
    }
    let result = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|_| std::fs::OpenOptions::new().create(true).append(true).open(path))
        .and_then(|mut file| records.iter().try_for_each(|r| writeln!(file, "{}", r.0)));
    if let Err(e) = result {
        tracing::error!(path = %path.display(), error = %e, "cannot keep rejected messages");
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests;
