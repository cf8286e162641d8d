//! `gridcast predict` wired together: the edge runtime's driver with the
//! predictor's consumer of closed intervals ([`Forecasting`]).
//!
//! Per input (the driver's, see `gridcast_edge::driver`):
//! 1. the stage decodes the batch and folds it into per-sensor intervals;
//! 2. for each closed interval, the sensor's [`Forecaster`] judges the
//!    prediction made for it, computes features and predicts the next one;
//! 3. one spool transaction (one fsync) holds the batch's journal entry, the
//!    interval frontiers, the prediction lines for InfluxDB, the triplets and
//!    the changed sensor states;
//! 4. only then are the messages acknowledged to the broker.
//!
//! A SIGKILL before 3 loses nothing (the broker redelivers); after 3 a
//! restart replays the journal into the open intervals and restores the
//! sensor states of the same commit. A new model is an input like a batch
//! ([`Input::Event`]), so it is swapped in between two batches.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use gridcast_core::features::Interval;
use gridcast_core::window::{ClosedWindow, WindowConfig};
use gridcast_core::{Field, Source};
use gridcast_edge::http::Exposition;
use gridcast_edge::service::launch;
use gridcast_edge::sinks::SinkConfig;
use gridcast_edge::sinks::task::SinkTask;
use gridcast_edge::stage::idle_close_warning;
use gridcast_edge::{Batching, Consumer, Driver, Output, Service, Shutdown, Spool, StageConfig, Stats};
use influxdb_line_protocol::LineProtocolBuilder;
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::config::PredictConfig;
use crate::forecast::{Forecaster, Judged, SensorState};
use crate::judge::Judge;
use crate::metrics::{ErrorSums, Metrics};
use crate::model_source::{LoadedModel, ModelSource, ModelWatcher};
use crate::spool::{TripletQueue, TripletWrites};
use crate::trust::Trust;
use crate::uploader::Uploader;

/// Where predictions go when no sink is configured.
pub const DEFAULT_PREDICTIONS_DIR: &str = "./data/predictions";

/// The configured sinks, or the line-protocol folder when there are none.
pub fn effective_sinks(config: &PredictConfig) -> Vec<SinkConfig> {
    SinkConfig::or_file(&config.sinks, std::path::Path::new(DEFAULT_PREDICTIONS_DIR))
}

/// A running predictor.
pub struct Predictor {
    pub metrics: Arc<Metrics>,
    pub stats: Arc<Stats>,
    pub triplets: Arc<TripletQueue>,
    pub spool: Arc<Spool>,
    service: Service,
}

impl Predictor {
    /// Load the model, open the spool, replay it, start every task.
    pub async fn start(config: PredictConfig) -> anyhow::Result<Predictor> {
        // Dropped on every early return below: whatever was started stops.
        let shutdown = Shutdown::default();
        let source = ModelSource::parse(&config.predict.model)?;
        let trust = Trust::from_config(&config.predict)?;
        if trust.is_enforced() {
            let keys: Vec<String> = trust.keys().iter().map(|k| k.id()).collect();
            tracing::info!(keys = %keys.join(","), "models must be signed by a trusted key (or be the shipped default)");
        } else {
            tracing::warn!(
                "models are not verified: no [predict] trusted_keys, so any valid model file at the source is served; \
                 sign models (gridcast model keygen, sign) and list the public key to refuse others"
            );
        }
        let model = Arc::new(source.load(config.predict.interval_secs, &trust).await?);
        tracing::info!(model = %source.describe(), version = %model.version, trees = model.model.trees().len(),
            provenance = %model.provenance, "model loaded");
        let metrics = Arc::new(Metrics::default());
        metrics.set_model_version(&model.version);
        metrics.set_model_provenance(&model.provenance.to_string());

        let sinks = effective_sinks(&config);
        let names: Vec<String> = sinks.iter().map(SinkConfig::name).collect();
        let (spool, triplets) = {
            let dir = config.spool.dir.clone();
            let max = config.spool.max_bytes;
            tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
                // `stream/` is where older releases kept the journal: an
                // upgrade keeps it, and moves their `triplets/` spool in.
                let spool = Arc::new(
                    Spool::open(&dir.join("stream"), max, &names)
                        .map_err(|e| anyhow::anyhow!("{e} (is another gridcast predict using {}?)", dir.display()))?,
                );
                let triplets = Arc::new(TripletQueue::open(spool.clone(), &dir.join("triplets"))?);
                Ok((spool, triplets))
            })
            .await??
        };
        metrics.triplet_spool_depth.store(triplets.depth(), Ordering::Relaxed);
        let stats = Arc::new(Stats::default());
        let (newest_tx, newest_rx) = watch::channel(0u64);
        let wake = Arc::new(Notify::new());
        let forecasting =
            Forecasting::restore(&config, model.clone(), triplets.clone(), metrics.clone(), wake.clone())?;
        if let Some(warning) = idle_close_warning(config.predict.idle_close_secs, config.mqtt.keep_alive_secs) {
            tracing::warn!("[predict] {warning}");
        }
        let stage = StageConfig {
            decode: config.decode.clone(),
            window: WindowConfig {
                width_secs: config.predict.interval_secs,
                lateness_secs: config.predict.lateness_secs,
                ..WindowConfig::default()
            },
            only: Some(config.predict.source),
            idle_close_ms: (config.predict.idle_close_secs as i64).saturating_mul(1000),
        };
        let mut driver = Driver::new(stage, forecasting, spool.clone(), stats.clone(), newest_tx, None);
        driver.recover().await?;

        let mut helpers = tokio::task::JoinSet::new();
        for sink in &sinks {
            let task = SinkTask::build(sink, config.spool.dir.join("rejected"))?;
            task.health_check().await?;
            tracing::info!(sink = %task.name, "prediction sink ready");
            helpers.spawn(task.run(spool.clone(), newest_rx.clone(), stats.clone(), shutdown.helpers.clone()));
        }
        let uploader = Uploader::new(&config.upload)?;
        tracing::info!(store = %config.upload.url, prefix = %config.upload.prefix, device = %config.upload.device, "triplet store ready");
        helpers.spawn(uploader.run(triplets.clone(), wake, metrics.clone(), shutdown.helpers.clone()));
        let (models_tx, models_rx) = mpsc::channel(4);
        let watcher = ModelWatcher {
            source,
            interval_secs: config.predict.interval_secs,
            poll: Duration::from_secs(config.predict.model_poll_secs.max(1)),
            current_version: model.version.clone(),
            trust,
        };
        helpers.spawn(watcher.run(models_tx, metrics.clone(), shutdown.helpers.clone()));
        let exposition =
            Arc::new(PredictExposition { metrics: metrics.clone(), stats: stats.clone(), spool: spool.clone() });
        gridcast_edge::http::serve_in(&config.http.listen, exposition, shutdown.helpers.clone(), &mut helpers).await?;
        tokio::spawn(log_summaries(
            metrics.clone(),
            stats.clone(),
            Duration::from_secs(config.predict.stats_interval_secs.max(1)),
            shutdown.driver.clone(),
        ));
        let batching = Batching {
            max_messages: config.predict.batch_max_messages,
            linger: Duration::from_millis(config.predict.batch_linger_ms),
        };
        metrics.running.store(true, Ordering::Relaxed);
        let m = metrics.clone();
        let on_driver_end = move || m.running.store(false, Ordering::Relaxed);
        let service = launch(&config.mqtt, driver, models_rx, batching, shutdown, helpers, on_driver_end);
        Ok(Predictor { metrics, stats, triplets, spool, service })
    }

    /// Wait until the broker confirmed our subscriptions.
    pub async fn subscribed(&self, timeout: Duration) -> anyhow::Result<()> {
        self.stats.wait_subscribed(timeout).await
    }

    /// Ask every task to stop, and wait until they have.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.service.stop().await
    }

    /// Wait until the predictor ends on its own (an error) or `shutdown` fires.
    pub async fn run_until(self, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
        self.service.run_until(shutdown).await
    }
}

/// The predictor's consumer of closed intervals: forecasters, judge and
/// model, and where their output goes.
struct Forecasting {
    source: Source,
    model: Arc<LoadedModel>,
    judge: Judge,
    forecasters: HashMap<String, Forecaster>,
    triplets: Arc<TripletQueue>,
    metrics: Arc<Metrics>,
    /// Tells the uploader that triplets were spooled.
    wake: Arc<Notify>,
    measurement: String,
    /// Tag `site` on every prediction line, when configured.
    site: Option<String>,
    width_ms: i64,
}

/// What one step's forecasts add to the commit.
struct ForecastWrites {
    triplets: TripletWrites,
    predictions: u64,
    judged: u64,
    dropped: u64,
    /// Sums over the judged predictions that have a persistence forecast
    /// and finite values: |predicted - actual|, |actual| and |persistence -
    /// actual|, in W (the agent's soak window compares models by the first
    /// over the last).
    absolute_error_w: f64,
    absolute_actual_w: f64,
    /// The same sum for the persistence forecasts made with them.
    persistence_error_w: f64,
}

impl gridcast_edge::spool::TableWrites for ForecastWrites {
    fn write(&mut self, txn: &redb::WriteTransaction) -> Result<u64, gridcast_edge::spool::SpoolError> {
        self.triplets.write(txn)
    }
}

impl Forecasting {
    /// The forecasters of every sensor, from the states in the spool.
    fn restore(
        config: &PredictConfig,
        model: Arc<LoadedModel>,
        triplets: Arc<TripletQueue>,
        metrics: Arc<Metrics>,
        wake: Arc<Notify>,
    ) -> anyhow::Result<Forecasting> {
        let mut forecasters = HashMap::new();
        for (sensor, bytes) in triplets.sensor_states()? {
            match serde_json::from_slice::<SensorState>(&bytes) {
                Ok(state) => {
                    forecasters.insert(sensor, Forecaster::new(state, &model));
                }
                Err(e) => tracing::warn!(%sensor, error = %e, "unreadable stored sensor state; starting it afresh"),
            }
        }
        if !forecasters.is_empty() {
            tracing::info!(sensors = forecasters.len(), "restored the sensors' predictor state from the spool");
        }
        Ok(Forecasting {
            source: config.predict.source,
            model,
            judge: Judge::new(config.rule()),
            forecasters,
            triplets,
            metrics,
            wake,
            measurement: config.predict.measurement.clone(),
            site: Some(config.predict.site.clone()).filter(|s| !s.is_empty()),
            width_ms: config.predict.interval_secs as i64 * 1000,
        })
    }
}

impl Consumer for Forecasting {
    type Event = Arc<LoadedModel>;
    type Writes = ForecastWrites;

    /// Feed every closed interval to its sensor's forecaster.
    fn on_closed(&mut self, mut closed: Vec<ClosedWindow>) -> Output<ForecastWrites> {
        closed.sort_by(|a, b| (&a.key, a.start_ms).cmp(&(&b.key, b.start_ms)));
        let (mut predictions, mut judged, mut dropped) = (0, 0, 0);
        let (mut absolute_error_w, mut absolute_actual_w, mut persistence_error_w) = (0.0, 0.0, 0.0);
        let mut triplets = Vec::new();
        let mut changed: Vec<String> = Vec::new();
        let mut builder = LineProtocolBuilder::new_with(Vec::new());
        for w in &closed {
            if w.key.source != self.source {
                continue;
            }
            let mean = |f: Field| w.field(f).map_or(f32::NAN, |s| s.mean() as f32);
            let iv =
                Interval { ts: w.start_ms.div_euclid(1000), p: [mean(Field::PL1), mean(Field::PL2), mean(Field::PL3)] };
            if iv.p.iter().all(|v| v.is_nan()) {
                continue; // no active power in this interval: nothing to predict from
            }
            Metrics::inc(&self.metrics.intervals);
            let sensor = w.key.sensor.as_str();
            let model = &self.model;
            let f = self
                .forecasters
                .entry(sensor.to_string())
                .or_insert_with(|| Forecaster::new(SensorState::default(), model));
            let Some(step) = f.step(&iv, model, &self.judge) else {
                continue;
            };
            predictions += step.predicted as u64;
            dropped += step.dropped;
            for j in &step.judged {
                judged += 1;
                let error = (j.pending.predicted - j.actual).abs();
                if let Some(persistence) = j.pending.persistence
                    && error.is_finite()
                    && j.actual.is_finite()
                {
                    absolute_error_w += error;
                    absolute_actual_w += j.actual.abs();
                    persistence_error_w += (persistence - j.actual).abs();
                }
                builder = prediction_line(builder, &self.measurement, self.site.as_deref(), sensor, j);
                if j.verdict.mispredicted {
                    triplets.push(Forecaster::triplet(sensor, j, model, self.width_ms, self.judge.rule().name()));
                }
            }
            if !changed.iter().any(|s| s == sensor) {
                changed.push(sensor.to_string());
            }
        }
        let states = changed
            .into_iter()
            .map(|sensor| {
                let state = serde_json::to_vec(&self.forecasters[&sensor].state).expect("state serializes");
                (sensor, state)
            })
            .collect();
        let triplets = self.triplets.writes(triplets, states);
        Output {
            lines: builder.build(),
            writes: ForecastWrites {
                triplets,
                predictions,
                judged,
                dropped,
                absolute_error_w,
                absolute_actual_w,
                persistence_error_w,
            },
        }
    }

    /// A new model, between two batches; rebuild feature states if needed.
    fn on_event(&mut self, model: Arc<LoadedModel>) -> Option<Output<ForecastWrites>> {
        let same_spec = model.model.meta.feature_spec == self.model.model.meta.feature_spec;
        if !same_spec {
            for f in self.forecasters.values_mut() {
                f.swap_model(&model);
            }
        }
        tracing::info!(old = %self.model.version, new = %model.version, rebuilt_features = !same_spec, "model swapped");
        self.metrics.set_model_version(&model.version);
        self.metrics.set_model_provenance(&model.provenance.to_string());
        Metrics::inc(&self.metrics.model_reloads);
        self.model = model;
        None
    }

    fn on_committed(&mut self, writes: ForecastWrites) {
        writes.triplets.committed();
        for t in &writes.triplets.triplets {
            tracing::info!(sensor = %t.sensor, interval_start_ms = t.interval_start_ms, seq = t.seq,
                predicted = t.predicted, actual = t.actual, "mispredicted: triplet spooled");
        }
        let spooled = writes.triplets.triplets.len() as u64;
        Metrics::add(&self.metrics.mispredictions, spooled);
        Metrics::add(&self.metrics.predictions, writes.predictions);
        Metrics::add(&self.metrics.judged, writes.judged);
        Metrics::add(&self.metrics.unjudged, writes.dropped);
        self.metrics.add_errors(ErrorSums {
            absolute_error_w: writes.absolute_error_w,
            absolute_actual_w: writes.absolute_actual_w,
            persistence_error_w: writes.persistence_error_w,
        });
        self.metrics.triplet_spool_depth.store(self.triplets.depth(), Ordering::Relaxed);
        if spooled > 0 {
            self.wake.notify_one();
        }
    }
}

fn prediction_line(
    builder: LineProtocolBuilder<Vec<u8>>,
    measurement: &str,
    site: Option<&str>,
    sensor: &str,
    j: &Judged,
) -> LineProtocolBuilder<Vec<u8>> {
    let line = builder.measurement(measurement);
    let line = match site {
        Some(site) => line.tag("site", site),
        None => line,
    };
    line.tag("sensor", sensor)
        .tag("model", &j.pending.model_version[..j.pending.model_version.len().min(16)])
        .field("predicted", j.pending.predicted)
        .field("actual", j.actual)
        .field("error", j.verdict.error)
        .field("abs_error", j.verdict.error.abs())
        .field("mispredicted", j.verdict.mispredicted)
        .timestamp(j.pending.target_start_ms)
        .close_line()
}

/// Predict's `/metrics`: its own counters, then the edge runtime's (stage,
/// MQTT, spool, sinks); `/health`: running with a model loaded.
struct PredictExposition {
    metrics: Arc<Metrics>,
    stats: Arc<Stats>,
    spool: Arc<Spool>,
}

impl Exposition for PredictExposition {
    fn render(&self) -> String {
        let mut text = self.metrics.render();
        let readings = self.stats.readings.load(Ordering::Relaxed);
        gridcast_edge::http::metric(
            &mut text,
            "readings_total",
            "Readings accepted into intervals.",
            "counter",
            readings,
        );
        text.push_str(&self.stats.render(self.spool.waiting_bytes(), self.spool.max_bytes()));
        text
    }

    fn health(&self) -> (bool, serde_json::Value) {
        self.metrics.health()
    }
}

async fn log_summaries(metrics: Arc<Metrics>, stats: Arc<Stats>, every: Duration, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        tracing::info!("{}", summary_line(&metrics, &stats));
    }
}

/// One human line with the totals.
pub fn summary_line(m: &Metrics, stats: &Stats) -> String {
    format!(
        "readings {} | intervals {} | predictions {} | judged {} | mispredicted {} | triplets spooled {} | uploaded {} in {} objects | upload failures {} | model {} (reloads {}, refused {})",
        stats.readings.load(Ordering::Relaxed),
        Metrics::get(&m.intervals),
        Metrics::get(&m.predictions),
        Metrics::get(&m.judged),
        Metrics::get(&m.mispredictions),
        Metrics::get(&m.triplet_spool_depth),
        Metrics::get(&m.uploaded_triplets),
        Metrics::get(&m.uploads),
        Metrics::get(&m.upload_failures),
        &m.model_version()[..m.model_version().len().min(12)],
        Metrics::get(&m.model_reloads),
        Metrics::get(&m.model_rejects),
    )
}
