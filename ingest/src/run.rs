//! `gridcast ingest` wired together: the edge runtime's spool, sinks, MQTT
//! source and driver, with ingest's consumer of closed windows (one line of
//! line protocol per window), `/metrics` and `/health`, and a summary log
//! line every few seconds.
//!
//! Shutdown order (see [`gridcast_edge::service`]): the driver stops first
//! (finishing and acking its batch), then the source disconnects, then the
//! sinks stop (whatever they had not written stays spooled for the next
//! start).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gridcast_core::window::ClosedWindow;
use gridcast_edge::http::Exposition;
use gridcast_edge::service::launch;
use gridcast_edge::sinks::SinkConfig;
use gridcast_edge::sinks::task::SinkTask;
use gridcast_edge::spool::Depth;
use gridcast_edge::stage::idle_close_warning;
use gridcast_edge::stats::Snapshot;
use gridcast_edge::{Batching, Consumer, Driver, Output, Service, Shutdown, Spool, StageConfig, Stats};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::config::IngestConfig;
use crate::line::{self, ExtraTags};

/// Where the demo store goes when no sink is configured.
pub const DEFAULT_LINES_DIR: &str = "./data/lines";

/// A running ingest, for callers that want to watch it (the demo, tests).
pub struct Ingest {
    pub stats: Arc<Stats>,
    pub spool: Arc<Spool>,
    /// Where `/metrics` and `/health` are served, when they are.
    pub http_addr: Option<std::net::SocketAddr>,
    service: Service,
}

/// Ingest's consumer: closed windows as line protocol for the sinks, and
/// its own counters when it is time to write them.
struct WindowLines {
    measurement: String,
    /// `part` when this replica sees only part of each window; `site`.
    tags: ExtraTags,
    stats: StatsLines,
}

/// What ingest's counters line needs.
struct StatsLines {
    measurement: String,
    /// Tag `instance`: the MQTT client id, unique per replica.
    instance: String,
    stats: Arc<Stats>,
    spool: Arc<Spool>,
}

/// Ingest's own event: time to write its counters.
struct WriteStats;

impl Consumer for WindowLines {
    type Event = WriteStats;
    type Writes = ();

    fn on_closed(&mut self, closed: Vec<ClosedWindow>) -> Output<()> {
        Output { lines: line::write_windows(&self.measurement, &self.tags, &closed, Vec::new()), writes: () }
    }

    fn on_event(&mut self, WriteStats: WriteStats) -> Option<Output<()>> {
        let s = &self.stats;
        let now_ms = gridcast_edge::driver::now_ms();
        let snapshot = s.stats.snapshot();
        let (waiting, max) = (s.spool.waiting_bytes(), s.spool.max_bytes());
        let site = self.tags.site.as_deref();
        let lines = line::write_stats(&s.measurement, (&s.instance, site), &snapshot, waiting, max, now_ms, Vec::new());
        Some(Output { lines, writes: () })
    }
}

impl Ingest {
    /// Open the spool, replay it, start sinks, source and driver.
    pub async fn start(config: IngestConfig) -> anyhow::Result<Ingest> {
        // Dropped on every early return below: whatever was started stops.
        let shutdown = Shutdown::default();
        let sinks = effective_sinks(&config);
        let names: Vec<String> = sinks.iter().map(SinkConfig::name).collect();
        let spool = {
            let (dir, max) = (config.spool.dir.clone(), config.spool.max_bytes);
            Arc::new(tokio::task::spawn_blocking(move || Spool::open(&dir, max, &names)).await?.map_err(|e| {
                anyhow::anyhow!("{e} (is another gridcast ingest using {}?)", config.spool.dir.display())
            })?)
        };
        let stats = Arc::new(Stats::default());
        let (newest_tx, newest_rx) = watch::channel(0u64);
        if let Some(warning) = idle_close_warning(config.pipeline.idle_close_secs, config.mqtt.keep_alive_secs) {
            tracing::warn!("[pipeline] {warning}");
        }
        let stage = StageConfig {
            decode: config.decode.clone(),
            window: config.window,
            only: None,
            idle_close_ms: (config.pipeline.idle_close_secs as i64).saturating_mul(1000),
        };
        // On a shared subscription other replicas hold the rest of each
        // window: write ours as a part, under our (unique, stable) client id.
        let part = config.mqtt.is_shared().then(|| config.mqtt.client_id.clone());
        if let Some(part) = &part {
            tracing::info!(
                part = %part,
                "shared subscription: windows are written as partial windows tagged part={part:?}; \
                 a minute's mean is sum(\"x_sum\") / sum(\"x_count\") over its parts"
            );
        }
        let stats_lines = StatsLines {
            measurement: config.pipeline.stats_measurement.clone(),
            instance: config.mqtt.client_id.clone(),
            stats: stats.clone(),
            spool: spool.clone(),
        };
        let tags = ExtraTags { part, site: Some(config.pipeline.site.clone()).filter(|s| !s.is_empty()) };
        let consumer = WindowLines { measurement: config.pipeline.measurement.clone(), tags, stats: stats_lines };
        let rejected_log = Some(config.spool.dir.join("rejected").join("messages.jsonl"));
        let mut driver = Driver::new(stage, consumer, spool.clone(), stats.clone(), newest_tx, rejected_log);
        driver.recover().await?;

        let mut helpers = tokio::task::JoinSet::new();
        for sink in &sinks {
            let task = SinkTask::build(sink, config.spool.dir.join("rejected"))?;
            task.health_check().await?;
            tracing::info!(sink = %task.name, "sink ready");
            helpers.spawn(task.run(spool.clone(), newest_rx.clone(), stats.clone(), shutdown.helpers.clone()));
        }
        let running = Arc::new(AtomicBool::new(false));
        let exposition =
            Arc::new(IngestExposition { stats: stats.clone(), spool: spool.clone(), running: running.clone() });
        let http_addr =
            gridcast_edge::http::serve_in(&config.http.listen, exposition, shutdown.helpers.clone(), &mut helpers)
                .await?;
        tokio::spawn(log_summaries(
            stats.clone(),
            spool.clone(),
            Duration::from_secs(config.pipeline.stats_interval_secs.max(1)),
            shutdown.driver.clone(),
        ));
        let batching = Batching {
            max_messages: config.pipeline.batch_max_messages,
            linger: Duration::from_millis(config.pipeline.batch_linger_ms),
        };
        // Ingest's one event: write its counters, every stats_write_secs.
        let (events_tx, events) = mpsc::channel(1);
        if config.pipeline.stats_write_secs > 0 {
            let every = Duration::from_secs(config.pipeline.stats_write_secs);
            tokio::spawn(send_write_stats(events_tx, every, shutdown.driver.clone()));
        }
        running.store(true, Ordering::Relaxed);
        let on_driver_end = move || running.store(false, Ordering::Relaxed);
        let service = launch(&config.mqtt, driver, events, batching, shutdown, helpers, on_driver_end);
        Ok(Ingest { stats, spool, http_addr, service })
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

/// Ingest's `/metrics` (the edge runtime's counters) and `/health` (up
/// while the driver runs; the spool's fill shown, not judged).
struct IngestExposition {
    stats: Arc<Stats>,
    spool: Arc<Spool>,
    running: Arc<AtomicBool>,
}

impl Exposition for IngestExposition {
    fn render(&self) -> String {
        self.stats.render(self.spool.waiting_bytes(), self.spool.max_bytes())
    }

    fn health(&self) -> (bool, serde_json::Value) {
        let running = self.running.load(Ordering::Relaxed);
        let body = serde_json::json!({
            "status": if running { "ok" } else { "unavailable" },
            "running": running,
            "spool_full": self.spool.is_full(),
            "spool_waiting_bytes": self.spool.waiting_bytes(),
        });
        (running, body)
    }
}

/// The configured sinks, or the line-protocol folder when there are none.
pub fn effective_sinks(config: &IngestConfig) -> Vec<SinkConfig> {
    SinkConfig::or_file(&config.sinks, Path::new(DEFAULT_LINES_DIR))
}

/// Ask the driver to write ingest's counters every `every` (first after one
/// period); a slow driver skips ticks rather than queueing them.
async fn send_write_stats(events: mpsc::Sender<WriteStats>, every: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(mpsc::error::TrySendError::Closed(_)) = events.try_send(WriteStats) {
            return;
        }
    }
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
        let depth = gridcast_edge::spool::depth_of(&spool).await;
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
