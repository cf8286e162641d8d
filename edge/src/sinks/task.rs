//! The loop that moves spooled point records to one sink.
//!
//! It reads from the sink's cursor, sends a batch, and advances the cursor
//! only after the sink confirmed it. A retryable failure (server down, slow,
//! 5xx) waits with exponential backoff and tries the same batch again, for
//! as long as it takes: the spool holds the data meanwhile. A batch the
//! server refuses (400, 413, ...) can never succeed as is; it is kept in a
//! `rejected/` folder beside the spool, counted and logged, and the cursor
//! moves on. A configuration error (401, 403, 404: wrong credentials,
//! database, org or bucket) is no batch's fault: the sink stops with an
//! error that stops the service, and every record stays spooled.
//!
//! [`SinkTask::health_check`] runs the same check at start-up, before any
//! data flows, so a wrong URL, database or token is named at once.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::file::FileWriter;
use super::influx::{InfluxWriter, WriteError};
use super::{HttpOptions, SinkConfig};
use crate::backoff::Backoff;
use crate::spool::Spool;
use crate::stats::Stats;

/// A sink ready to run.
pub struct SinkTask {
    pub name: String,
    writer: Writer,
    batch_max_records: usize,
    backoff: Backoff,
    rejected_dir: PathBuf,
}

enum Writer {
    Influx(InfluxWriter),
    File(FileWriter),
}

impl SinkTask {
    /// Build a sink from its config; `rejected_dir` keeps refused batches.
    pub fn build(config: &SinkConfig, rejected_dir: PathBuf) -> anyhow::Result<SinkTask> {
        let name = config.name();
        let (writer, http) = match config {
            SinkConfig::File { dir } => (Writer::File(FileWriter::new(dir.clone())), HttpOptions::default()),
            SinkConfig::InfluxdbV1 { http, .. } | SinkConfig::InfluxdbV2 { http, .. } => {
                let writer = InfluxWriter::from_config(config)?.expect("an InfluxDB sink has a writer");
                (Writer::Influx(writer), http.clone())
            }
        };
        Ok(SinkTask {
            name,
            writer,
            batch_max_records: http.batch_max_records.max(1),
            backoff: Backoff::new(http.retry_min_ms, http.retry_max_ms),
            rejected_dir,
        })
    }

    /// Run until `shutdown`. `newest` changes whenever the pipeline adds
    /// point records, to wake the sink without polling.
    pub async fn run(
        mut self,
        spool: Arc<Spool>,
        mut newest: watch::Receiver<u64>,
        stats: Arc<Stats>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        loop {
            let records = {
                let spool = spool.clone();
                let (name, max) = (self.name.clone(), self.batch_max_records);
                tokio::task::spawn_blocking(move || spool.pending_points(&name, max)).await??
            };
            let Some(&(last_seq, _)) = records.last() else {
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    changed = newest.changed() => if changed.is_err() { return Ok(()) },
                }
                continue;
            };
            let body: Vec<u8> = records.iter().flat_map(|(_, lines)| lines.iter().copied()).collect();
            let lines = body.iter().filter(|b| **b == b'\n').count() as u64;
            if !self.deliver(&body, last_seq, &stats, &shutdown).await? {
                return Ok(()); // shut down mid-retry: the records stay spooled
            }
            stats.sink_lines_written(&self.name, lines);
            let spool = spool.clone();
            let name = self.name.clone();
            tokio::task::spawn_blocking(move || spool.advance_cursor(&name, last_seq)).await??;
        }
    }

    /// Check the sink before data flows: `Err` for a configuration error
    /// (the service should not start); a sink that is down is only logged,
    /// since the spool holds the data until it is back.
    pub async fn health_check(&self) -> anyhow::Result<()> {
        let Writer::Influx(writer) = &self.writer else {
            return Ok(());
        };
        match writer.health_check().await {
            Ok(()) => Ok(()),
            Err(WriteError::Config(e)) => Err(anyhow::anyhow!("sink {}: {e}", self.name)),
            Err(e) => {
                tracing::warn!(sink = %self.name, error = %e, "sink not writable at start-up; its data waits in the spool");
                Ok(())
            }
        }
    }

    /// Send one batch until it is stored or set aside. `Ok(false)` when shut
    /// down first; `Err` for a configuration error (nothing is set aside).
    async fn deliver(
        &mut self,
        body: &[u8],
        last_seq: u64,
        stats: &Stats,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<bool> {
        self.backoff.reset();
        loop {
            let result = match &self.writer {
                Writer::Influx(w) => w.write(body).await,
                Writer::File(w) => {
                    let (w, body) = (w.clone(), body.to_vec());
                    match tokio::task::spawn_blocking(move || w.write(&body)).await {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(e)) => Err(WriteError::Retryable(format!("file write failed: {e}"))),
                        Err(e) => Err(WriteError::Retryable(format!("file write task failed: {e}"))),
                    }
                }
            };
            match result {
                Ok(()) => {
                    if self.backoff.attempts() > 0 {
                        tracing::info!(sink = %self.name, "sink is back: spooled windows are being written");
                    }
                    return Ok(true);
                }
                Err(WriteError::Rejected { status, body: reason }) => {
                    let kept = self.keep_rejected(body, last_seq).await;
                    stats.sink_rejected(&self.name);
                    tracing::error!(sink = %self.name, status, %reason, kept = %kept,
                        "sink refused a batch of windows; it is kept on disk, not retried");
                    return Ok(true);
                }
                Err(WriteError::Config(e)) => {
                    tracing::error!(sink = %self.name, error = %e,
                        "sink configuration error: stopping; every record stays spooled until it is fixed");
                    anyhow::bail!("sink {}: {e}", self.name);
                }
                Err(e) => {
                    stats.sink_retry(&self.name);
                    let delay = self.backoff.next_delay();
                    if self.backoff.attempts() == 1 || self.backoff.attempts().is_multiple_of(10) {
                        tracing::warn!(sink = %self.name, error = %e, attempt = self.backoff.attempts(),
                            retry_in_ms = delay.as_millis() as u64, "sink write failed; windows wait in the spool");
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(false),
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    /// Write a refused batch to `rejected/` (off the async worker).
    async fn keep_rejected(&self, body: &[u8], last_seq: u64) -> String {
        let safe: String = self.name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
        let path = self.rejected_dir.join(format!("{safe}-{last_seq}.lp"));
        let (dir, file, body) = (self.rejected_dir.clone(), path.clone(), body.to_vec());
        let result = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&file, body))
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        match result {
            Ok(()) => path.display().to_string(),
            Err(e) => format!("(could not write {}: {e})", path.display()),
        }
    }
}
