//! `gridcast ingest` wired together: spool, sinks, pipeline, MQTT source,
//! and a summary log line every few seconds.
//!
//! Shutdown order matters: the pipeline stops first (finishing and acking
//! its batch), then the source disconnects, then the sinks stop (whatever
//! they had not written stays spooled for the next start).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::config::IngestConfig;
use crate::pipeline::Pipeline;
use crate::sinks::SinkConfig;
use crate::sinks::task::SinkTask;
use crate::source::mqtt::MqttSource;
use crate::spool::{Depth, Spool};
use crate::stats::{Snapshot, Stats};

/// Where the demo store goes when no sink is configured.
pub const DEFAULT_LINES_DIR: &str = "./data/lines";

/// A started service (ingest, predict): the token that asks it to stop, and
/// the task that ends once every part of it has stopped.
pub struct Service {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Service {
    pub fn new(shutdown: CancellationToken, task: tokio::task::JoinHandle<anyhow::Result<()>>) -> Service {
        Service { shutdown, task }
    }

    /// Ask every task to stop, and wait until they have.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.task.await?
    }

    /// Wait until the service ends on its own (an error) or `shutdown` fires.
    pub async fn run_until(self, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
        let Service { shutdown: token, mut task } = self;
        tokio::select! {
            result = &mut task => return result?,
            _ = shutdown => tracing::info!("shutting down: finishing the current batch"),
        }
        token.cancel();
        task.await?
    }
}

/// A running ingest, for callers that want to watch it (the demo, tests).
pub struct Ingest {
    pub stats: Arc<Stats>,
    pub spool: Arc<Spool>,
    service: Service,
}

impl Ingest {
    /// Open the spool, replay it, start sinks, source and pipeline.
    pub async fn start(config: IngestConfig) -> anyhow::Result<Ingest> {
        let sinks = effective_sinks(&config);
        let names: Vec<String> = sinks.iter().map(SinkConfig::name).collect();
        let spool = {
            let (dir, max) = (config.spool.dir.clone(), config.spool.max_bytes);
            let names = names.clone();
            Arc::new(tokio::task::spawn_blocking(move || Spool::open(&dir, max, &names)).await?.map_err(|e| {
                anyhow::anyhow!("{e} (is another gridcast ingest using {}?)", config.spool.dir.display())
            })?)
        };
        let stats = Arc::new(Stats::default());
        let (newest_tx, newest_rx) = watch::channel(0u64);
        let mut pipeline = Pipeline::new(&config, spool.clone(), stats.clone(), newest_tx);
        pipeline.recover().await?;

        let shutdown = CancellationToken::new();
        let sinks_stop = CancellationToken::new();
        let mut sink_handles = Vec::new();
        for sink in &sinks {
            let task = SinkTask::build(sink, config.spool.dir.join("rejected"))?;
            tracing::info!(sink = %task.name, "sink ready");
            sink_handles.push(tokio::spawn(task.run(
                spool.clone(),
                newest_rx.clone(),
                stats.clone(),
                sinks_stop.clone(),
            )));
        }

        let source = MqttSource::new(&config.mqtt);
        let client = source.client.clone();
        let (tx, rx) = mpsc::channel(65_536);
        let source_stop = CancellationToken::new();
        let source_handle = tokio::spawn(source.run(tx, stats.clone(), source_stop.clone()));
        let pipeline_handle = tokio::spawn(pipeline.run(rx, client, shutdown.clone()));
        let summary = tokio::spawn(log_summaries(
            stats.clone(),
            spool.clone(),
            Duration::from_secs(config.pipeline.stats_interval_secs.max(1)),
            shutdown.clone(),
        ));

        let task = tokio::spawn(async move {
            let pipeline_result = pipeline_handle.await?;
            source_stop.cancel();
            source_handle.await??;
            sinks_stop.cancel();
            for handle in sink_handles {
                handle.await??;
            }
            summary.abort();
            pipeline_result
        });
        Ok(Ingest { stats, spool, service: Service::new(shutdown, task) })
    }

    /// Wait until the broker has confirmed our subscriptions: from then on
    /// it keeps every matching message for us, even while we are away.
    pub async fn subscribed(&self, timeout: Duration) -> anyhow::Result<()> {
        self.stats.wait_subscribed(timeout).await
    }

    /// Ask every task to stop, and wait until they have.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.service.stop().await
    }

    /// Wait until ingest ends on its own (an error) or `shutdown` fires.
    pub async fn run_until(self, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
        self.service.run_until(shutdown).await
    }
}

/// The configured sinks, or the line-protocol folder when there are none.
pub fn effective_sinks(config: &IngestConfig) -> Vec<SinkConfig> {
    SinkConfig::or_file(&config.sinks, Path::new(DEFAULT_LINES_DIR))
}

async fn log_summaries(stats: Arc<Stats>, spool: Arc<Spool>, every: Duration, shutdown: CancellationToken) {
    let mut last = stats.snapshot();
    let mut last_at = Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let now = stats.snapshot();
        let depth = spool.depth().unwrap_or_default();
        tracing::info!("{}", summary_line(&last, &now, last_at.elapsed(), &depth));
        last = now;
        last_at = Instant::now();
    }
}

/// One human line: rates since the last line, totals, spool depth.
pub fn summary_line(before: &Snapshot, now: &Snapshot, elapsed: Duration, depth: &Depth) -> String {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let written: u64 = now.sinks.values().map(|s| s.lines_written).sum();
    let retries: u64 = now.sinks.values().map(|s| s.retries).sum();
    format!(
        "readings/s {:.0} | readings {} | windows closed {} | lines written {} | late {} | duplicates {} | rejected {} | sink retries {} | spool: {} point records ({} B), {} journal batches",
        (now.readings - before.readings) as f64 / secs,
        now.readings,
        now.windows_closed,
        written,
        now.late_readings,
        now.duplicate_readings,
        now.decode_errors_total(),
        retries,
        depth.point_records,
        depth.point_bytes,
        depth.journal_batches,
    )
}
