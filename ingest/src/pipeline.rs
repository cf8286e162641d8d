//! The pipeline: MQTT publishes in, durable spool commits and acks out.
//!
//! Each turn takes every publish waiting (up to a batch size), and:
//! 1. decodes the payloads (bad ones are counted, logged and kept in
//!    `rejected/messages.jsonl`, never silently dropped);
//! 2. folds the readings into the per-minute windows, which may close some;
//! 3. commits, in one spool transaction, the batch's raw payloads (the
//!    journal), the closed windows as line protocol, their frontiers, and
//!    the journal's new low-water mark;
//! 4. only then acknowledges the batch's messages to the broker.
//!
//! A crash anywhere before 3 loses nothing (the broker redelivers); after 3,
//! a restart replays the journal to rebuild the open windows. Redelivered
//! duplicates are recognised by the windows (same sensor, same timestamp).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gridcast_core::payload::Decoder;
use gridcast_core::window::{ClosedWindow, Push, WindowKey, Windows};
use gridcast_core::{Reading, SensorId, Source};
use rumqttc::{AsyncClient, Publish};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::config::IngestConfig;
use crate::sinks::line;
use crate::spool::{self, Commit, Spool};
use crate::stats::Stats;

/// The decode-and-window state machine plus what it needs to persist.
pub struct Pipeline {
    decoder: Decoder,
    windows: Windows,
    spool: Arc<Spool>,
    stats: Arc<Stats>,
    measurement: String,
    batch_max: usize,
    idle_close_ms: i64,
    rejected_log: PathBuf,
    /// Bumped after every commit that added point records; sinks watch it.
    newest_points: watch::Sender<u64>,
    readings: Vec<Reading>,
    closed: Vec<ClosedWindow>,
}

/// What one batch did to the windows, ready to be committed.
struct Step {
    lines: Vec<u8>,
    frontiers: Vec<(String, i64)>,
    forget_below: u64,
}

impl Pipeline {
    pub fn new(
        config: &IngestConfig,
        spool: Arc<Spool>,
        stats: Arc<Stats>,
        newest_points: watch::Sender<u64>,
    ) -> Pipeline {
        Pipeline {
            decoder: Decoder::new(config.decode.clone()),
            windows: Windows::new(config.window),
            spool,
            stats,
            measurement: config.pipeline.measurement.clone(),
            batch_max: config.pipeline.batch_max_messages.max(1),
            idle_close_ms: (config.pipeline.idle_close_secs as i64).saturating_mul(1000),
            rejected_log: config.spool.dir.join("rejected").join("messages.jsonl"),
            newest_points,
            readings: Vec::new(),
            closed: Vec::new(),
        }
    }

    /// Rebuild the open windows from the journal after a restart. Readings
    /// of windows closed before the restart fall behind the restored
    /// frontiers and are skipped quietly: they were written already.
    pub async fn recover(&mut self) -> anyhow::Result<()> {
        let (journal, frontiers) = self.spool.recover()?;
        for (key, closed_until) in frontiers {
            match parse_key(&key) {
                Some(key) => self.windows.restore_frontier(key, closed_until),
                None => tracing::warn!(key = %key, "ignoring an unreadable frontier key in the spool"),
            }
        }
        let now = now_ms();
        let mut replayed = 0u64;
        for (seq, record) in &journal {
            for payload in spool::decode_journal_batch(record) {
                self.readings.clear();
                if self.decoder.decode(payload, &mut self.readings).is_ok() {
                    for reading in &self.readings {
                        if matches!(self.windows.push(reading, *seq, now), Push::Accepted) {
                            replayed += 1;
                        }
                    }
                }
            }
        }
        if !journal.is_empty() {
            tracing::info!(
                batches = journal.len(),
                readings = replayed,
                open_windows = self.windows.open_windows(),
                "replayed the spool journal: open windows restored"
            );
        }
        // Anything the replay closed is complete (all its readings are in the journal).
        self.windows.drain_closed(&mut self.closed);
        if !self.closed.is_empty() {
            let step = self.step(self.spool.next_journal_seq());
            self.commit(None, step).await?;
        }
        Ok(())
    }

    /// Run until `shutdown`: take publishes from `incoming`, commit, ack.
    pub async fn run(
        mut self,
        mut incoming: mpsc::Receiver<Publish>,
        client: AsyncClient,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let mut batch: Vec<Publish> = Vec::with_capacity(self.batch_max);
        let mut idle_tick = tokio::time::interval(Duration::from_secs(1));
        idle_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(()),
                n = incoming.recv_many(&mut batch, self.batch_max) => if n == 0 { return Ok(()) },
                _ = idle_tick.tick() => {
                    self.close_idle().await?;
                    continue;
                }
            }
            self.wait_while_spool_full(&shutdown).await;
            self.process(&batch).await?;
            for publish in batch.drain(..) {
                // The event loop sends it; if the connection dropped meanwhile
                // the broker redelivers and the windows skip the duplicate.
                let _ = client.ack(&publish).await;
            }
        }
    }

    /// Decode, window, commit one batch.
    async fn process(&mut self, batch: &[Publish]) -> anyhow::Result<()> {
        let seq = self.spool.next_journal_seq();
        let now = now_ms();
        let mut journal = Vec::with_capacity(batch.iter().map(|p| p.payload.len() + 4).sum());
        spool::encode_journal_batch(batch.iter().map(|p| &p.payload[..]), &mut journal);
        Stats::add(&self.stats.messages, batch.len() as u64);
        let (mut accepted, mut late, mut duplicate) = (0u64, 0u64, 0u64);
        for publish in batch {
            self.readings.clear();
            if let Err(error) = self.decoder.decode(&publish.payload, &mut self.readings) {
                self.reject(publish, &error.to_string(), error.kind());
                continue;
            }
            for reading in &self.readings {
                match self.windows.push(reading, seq, now) {
                    Push::Accepted => accepted += 1,
                    Push::Late { window_start_ms, closed_until_ms } => {
                        late += 1;
                        if late == 1 {
                            tracing::warn!(sensor = %reading.sensor, ts_ms = reading.ts_ms, window_start_ms, closed_until_ms,
                                topic = %publish.topic, "late reading: its window is already closed and written; counted, not merged");
                        }
                    }
                    Push::Duplicate => duplicate += 1,
                }
            }
        }
        Stats::add(&self.stats.readings, accepted);
        Stats::add(&self.stats.late_readings, late);
        Stats::add(&self.stats.duplicate_readings, duplicate);
        self.windows.drain_closed(&mut self.closed);
        let step = self.step(seq + 1);
        self.commit(Some((seq, journal)), step).await
    }

    async fn close_idle(&mut self) -> anyhow::Result<()> {
        self.windows.close_idle(now_ms(), self.idle_close_ms, &mut self.closed);
        if self.closed.is_empty() {
            return Ok(());
        }
        tracing::info!(windows = self.closed.len(), "closing the windows of sensors that went quiet");
        let step = self.step(self.spool.next_journal_seq());
        self.commit(None, step).await
    }

    /// Turn the windows closed so far into a commit's contents.
    fn step(&mut self, next_seq: u64) -> Step {
        let lines = line::write_windows(&self.measurement, &self.closed, Vec::new());
        let mut latest: BTreeMap<String, i64> = BTreeMap::new();
        for window in &self.closed {
            let end = window.start_ms + window.width_ms;
            let frontier = latest.entry(key_string(&window.key)).or_insert(end);
            *frontier = (*frontier).max(end);
        }
        let frontiers = latest.into_iter().collect();
        Stats::add(&self.stats.windows_closed, self.closed.len() as u64);
        self.closed.clear();
        Step { lines, frontiers, forget_below: self.windows.min_open_seq().unwrap_or(next_seq) }
    }

    async fn commit(&self, journal: Option<(u64, Vec<u8>)>, step: Step) -> anyhow::Result<()> {
        let spool = self.spool.clone();
        let has_points = !step.lines.is_empty();
        tokio::task::spawn_blocking(move || {
            spool.commit(Commit {
                journal: journal.as_ref().map(|(seq, bytes)| (*seq, &bytes[..])),
                points: Some(&step.lines[..]),
                frontiers: &step.frontiers,
                forget_journal_below: Some(step.forget_below),
            })
        })
        .await??;
        Stats::add(&self.stats.batches_committed, 1);
        self.stats.open_windows.store(self.windows.open_windows() as u64, std::sync::atomic::Ordering::Relaxed);
        if has_points {
            self.newest_points.send_modify(|n| *n += 1);
        }
        Ok(())
    }

    async fn wait_while_spool_full(&self, shutdown: &CancellationToken) {
        if !self.spool.is_full() {
            return;
        }
        tracing::error!(
            "spool is full: not acknowledging MQTT messages until the sinks catch up (the broker keeps them)"
        );
        while self.spool.is_full() && !shutdown.is_cancelled() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        tracing::info!("spool has room again: taking messages");
    }

    /// Count, log and keep a message we cannot decode.
    fn reject(&self, publish: &Publish, error: &str, kind: &'static str) {
        self.stats.decode_error(kind);
        tracing::warn!(topic = %publish.topic, bytes = publish.payload.len(), %error, "rejected a message");
        let record = serde_json::json!({
            "at_ms": now_ms(),
            "topic": publish.topic,
            "error": error,
            "payload_hex": hex(&publish.payload),
        });
        let result = std::fs::create_dir_all(self.rejected_log.parent().expect("rejected log has a parent"))
            .and_then(|_| std::fs::OpenOptions::new().create(true).append(true).open(&self.rejected_log))
            .and_then(|mut f| writeln!(f, "{record}"));
        if let Err(e) = result {
            tracing::error!(path = %self.rejected_log.display(), error = %e, "cannot keep a rejected message");
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A window key as stored in the spool: sensor and source, unit-separated.
fn key_string(key: &WindowKey) -> String {
    format!("{}\u{1f}{}", key.sensor, key.source.name())
}

fn parse_key(s: &str) -> Option<WindowKey> {
    let (sensor, source) = s.split_once('\u{1f}')?;
    let source = [Source::Raw, Source::TenSecond, Source::OneMinute].into_iter().find(|k| k.name() == source)?;
    Some(WindowKey { sensor: SensorId::new(sensor), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_keys_round_trip_through_the_spool_form() {
        let key = WindowKey { sensor: SensorId::new("60a3aec3d2dd9849d6935976"), source: Source::TenSecond };
        assert_eq!(parse_key(&key_string(&key)), Some(key));
        assert_eq!(parse_key("no separator"), None);
    }
}
