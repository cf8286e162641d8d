//! `gridcast predict` wired together, and its loop.
//!
//! Flow per batch of MQTT messages (the pattern of ingest's pipeline):
//! 1. decode (core) and fold into per-sensor intervals (core windows);
//! 2. for each closed interval, the sensor's [`Forecaster`]: judge the
//!    prediction made for it, compute features, predict the next interval;
//! 3. commit the triplets and the sensors' states to the triplet spool (fsync);
//! 4. commit the batch's raw payloads (journal of open intervals), the
//!    prediction lines for InfluxDB and the interval frontiers to the stream
//!    spool (ingest's `Spool`, fsync);
//! 5. only then acknowledge the messages to the broker.
//!
//! A SIGKILL before 3 loses nothing (the broker redelivers). Between 3 and 4,
//! the redelivered readings close an interval the forecaster has seen
//! already; it is skipped, so no triplet is made twice, and the step's
//! prediction lines, kept in the triplet spool's transaction, are written to
//! the stream spool on restart. After 4 a restart replays the journal into
//! the open intervals.
//!
//! Model swaps arrive on a channel and are applied between two batches.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use gridcast_core::features::Interval;
use gridcast_core::payload::Decoder;
use gridcast_core::window::{ClosedWindow, Push, WindowConfig, WindowKey, Windows};
use gridcast_core::{Field, Reading, SensorId, Source};
use gridcast_ingest::run::Service;
use gridcast_ingest::sinks::SinkConfig;
use gridcast_ingest::sinks::task::SinkTask;
use gridcast_ingest::source::mqtt::MqttSource;
use gridcast_ingest::spool::{self as stream_spool, Commit, Spool};
use gridcast_ingest::stats::Stats;
use influxdb_line_protocol::LineProtocolBuilder;
use rumqttc::{AsyncClient, Publish};
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::config::PredictConfig;
use crate::forecast::{Forecaster, Judged, SensorState};
use crate::judge::Judge;
use crate::metrics::Metrics;
use crate::model_source::{LoadedModel, ModelSource, ModelWatcher};
use crate::spool::TripletSpool;
use crate::triplet::Triplet;
use crate::uploader::Uploader;

/// Where predictions go when no sink is configured.
pub const DEFAULT_PREDICTIONS_DIR: &str = "./data/predictions";

pub fn source_from_name(name: &str) -> Option<Source> {
    [Source::Raw, Source::TenSecond, Source::OneMinute].into_iter().find(|s| s.name() == name)
}

/// The configured sinks, or the line-protocol folder when there are none.
pub fn effective_sinks(config: &PredictConfig) -> Vec<SinkConfig> {
    SinkConfig::or_file(&config.sinks, std::path::Path::new(DEFAULT_PREDICTIONS_DIR))
}

/// A running predictor.
pub struct Predictor {
    pub metrics: Arc<Metrics>,
    pub stats: Arc<Stats>,
    pub triplets: Arc<TripletSpool>,
    pub stream: Arc<Spool>,
    service: Service,
}

impl Predictor {
    /// Load the model, open the spools, replay them, start every task.
    pub async fn start(config: PredictConfig) -> anyhow::Result<Predictor> {
        let source = ModelSource::parse(&config.predict.model)?;
        let model = Arc::new(source.load(config.predict.interval_secs).await?);
        tracing::info!(model = %source.describe(), version = %model.version, trees = model.model.trees().len(), "model loaded");
        let metrics = Arc::new(Metrics::default());
        metrics.set_model_version(&model.version);

        let sinks = effective_sinks(&config);
        let names: Vec<String> = sinks.iter().map(SinkConfig::name).collect();
        let (stream, triplets) = {
            let dir = config.spool.dir.clone();
            let max = config.spool.max_bytes;
            tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
                let stream = Spool::open(&dir.join("stream"), max, &names)
                    .map_err(|e| anyhow::anyhow!("{e} (is another gridcast predict using {}?)", dir.display()))?;
                Ok((Arc::new(stream), Arc::new(TripletSpool::open(&dir.join("triplets"))?)))
            })
            .await??
        };
        metrics.triplet_spool_depth.store(triplets.depth(), Ordering::Relaxed);
        let stats = Arc::new(Stats::default());
        let (newest_tx, newest_rx) = watch::channel(0u64);
        let wake = Arc::new(Notify::new());
        let (models_tx, models_rx) = mpsc::channel(4);
        let mut predict =
            Loop::new(&config, model.clone(), stream.clone(), triplets.clone(), metrics.clone(), newest_tx);
        predict.wake = wake.clone();
        predict.models = Some(models_rx);
        predict.recover().await?;

        let shutdown = CancellationToken::new();
        let aux_stop = CancellationToken::new();
        let mut aux = Vec::new();
        for sink in &sinks {
            let task = SinkTask::build(sink, config.spool.dir.join("rejected"))?;
            tracing::info!(sink = %task.name, "prediction sink ready");
            aux.push(tokio::spawn(task.run(stream.clone(), newest_rx.clone(), stats.clone(), aux_stop.clone())));
        }
        let uploader = Uploader::new(&config.upload)?;
        tracing::info!(store = %config.upload.url, prefix = %config.upload.prefix, device = %config.upload.device, "triplet store ready");
        aux.push(tokio::spawn(uploader.run(triplets.clone(), wake, metrics.clone(), aux_stop.clone())));
        let watcher = ModelWatcher {
            source,
            interval_secs: config.predict.interval_secs,
            poll: Duration::from_secs(config.predict.model_poll_secs.max(1)),
            current_version: model.version.clone(),
        };
        aux.push(tokio::spawn(watcher.run(models_tx, metrics.clone(), aux_stop.clone())));
        let http = if config.http.listen.is_empty() {
            None
        } else {
            Some(crate::metrics::serve(&config.http.listen, metrics.clone(), aux_stop.clone()).await?)
        };

        let mqtt = MqttSource::new(&config.mqtt);
        let client = mqtt.client.clone();
        let (tx, rx) = mpsc::channel(65_536);
        let source_stop = CancellationToken::new();
        let source_handle = tokio::spawn(mqtt.run(tx, stats.clone(), source_stop.clone()));
        let loop_handle = tokio::spawn(predict.run(rx, client, shutdown.clone()));
        let summary = tokio::spawn(log_summaries(
            metrics.clone(),
            Duration::from_secs(config.predict.stats_interval_secs.max(1)),
            shutdown.clone(),
        ));
        metrics.running.store(true, Ordering::Relaxed);

        let m = metrics.clone();
        let task = tokio::spawn(async move {
            let result = loop_handle.await?;
            m.running.store(false, Ordering::Relaxed);
            source_stop.cancel();
            source_handle.await??;
            aux_stop.cancel();
            for handle in aux {
                handle.await??;
            }
            if let Some(h) = http {
                let _ = h.await;
            }
            summary.abort();
            result
        });
        Ok(Predictor { metrics, stats, triplets, stream, service: Service::new(shutdown, task) })
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

/// The prediction loop's state.
struct Loop {
    decoder: Decoder,
    windows: Windows,
    source: Source,
    model: Arc<LoadedModel>,
    models: Option<mpsc::Receiver<Arc<LoadedModel>>>,
    judge: Judge,
    forecasters: HashMap<String, Forecaster>,
    stream: Arc<Spool>,
    triplets: Arc<TripletSpool>,
    metrics: Arc<Metrics>,
    newest_points: watch::Sender<u64>,
    wake: Arc<Notify>,
    measurement: String,
    width_ms: i64,
    batch_max: usize,
    idle_close_ms: i64,
    readings: Vec<Reading>,
    closed: Vec<ClosedWindow>,
}

/// What one batch produced, ready to commit.
#[derive(Default)]
struct Outcome {
    lines: Vec<u8>,
    triplets: Vec<Triplet>,
    states: Vec<(String, Vec<u8>)>,
    frontiers: Vec<(String, i64)>,
    predictions: u64,
    judged: u64,
    dropped: u64,
}

impl Loop {
    fn new(
        config: &PredictConfig,
        model: Arc<LoadedModel>,
        stream: Arc<Spool>,
        triplets: Arc<TripletSpool>,
        metrics: Arc<Metrics>,
        newest_points: watch::Sender<u64>,
    ) -> Loop {
        let p = &config.predict;
        Loop {
            decoder: Decoder::new(config.decode.clone()),
            windows: Windows::new(WindowConfig { width_secs: p.interval_secs, lateness_secs: p.lateness_secs }),
            source: source_from_name(&p.source).unwrap_or(Source::Raw),
            model,
            models: None,
            judge: Judge::new(config.rule()),
            forecasters: HashMap::new(),
            stream,
            triplets,
            metrics,
            newest_points,
            wake: Arc::new(Notify::new()),
            measurement: p.measurement.clone(),
            width_ms: p.interval_secs as i64 * 1000,
            batch_max: p.batch_max_messages.max(1),
            idle_close_ms: (p.idle_close_secs as i64).saturating_mul(1000),
            readings: Vec::new(),
            closed: Vec::new(),
        }
    }

    /// Restore sensor states, frontiers and open intervals after a restart.
    async fn recover(&mut self) -> anyhow::Result<()> {
        for (sensor, bytes) in self.triplets.sensor_states()? {
            match serde_json::from_slice::<SensorState>(&bytes) {
                Ok(state) => {
                    self.forecasters.insert(sensor, Forecaster::new(state, &self.model));
                }
                Err(e) => tracing::warn!(%sensor, error = %e, "unreadable stored sensor state; starting it afresh"),
            }
        }
        // A crash between the two commits of a step leaves its prediction
        // lines in the triplet spool only: write them to the stream spool.
        if let Some((point_seq, lines)) = self.triplets.unsent_prediction_lines()?
            && point_seq >= self.stream.next_point_seq()
        {
            let stream = self.stream.clone();
            tokio::task::spawn_blocking(move || {
                stream.commit(Commit { points: Some(&lines[..]), ..Commit::default() })
            })
            .await??;
            tracing::warn!(point_seq, "restored the prediction lines of a step interrupted between its two commits");
        }
        let (journal, frontiers) = self.stream.recover()?;
        for (key, until) in frontiers {
            if let Some((sensor, source)) = key.split_once('\u{1f}')
                && let Some(source) = source_from_name(source)
            {
                self.windows.restore_frontier(WindowKey { sensor: SensorId::new(sensor), source }, until);
            }
        }
        let now = now_ms();
        for (seq, record) in &journal {
            for payload in stream_spool::decode_journal_batch(record) {
                self.readings.clear();
                if self.decoder.decode(payload, &mut self.readings).is_ok() {
                    for r in &self.readings {
                        let _ = self.windows.push(r, *seq, now);
                    }
                }
            }
        }
        if !journal.is_empty() || !self.forecasters.is_empty() {
            tracing::info!(
                sensors = self.forecasters.len(),
                journal_batches = journal.len(),
                open_intervals = self.windows.open_windows(),
                "restored predictor state from the spools"
            );
        }
        let next = self.stream.next_journal_seq();
        self.finish(None, next).await
    }

    async fn run(
        mut self,
        mut incoming: mpsc::Receiver<Publish>,
        client: AsyncClient,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let mut batch: Vec<Publish> = Vec::with_capacity(self.batch_max);
        let mut idle_tick = tokio::time::interval(Duration::from_secs(1));
        idle_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut models = self.models.take().expect("a model channel");
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(()),
                Some(model) = models.recv() => { self.swap_model(model); continue; }
                n = incoming.recv_many(&mut batch, self.batch_max) => if n == 0 { return Ok(()) },
                _ = idle_tick.tick() => {
                    self.windows.close_idle(now_ms(), self.idle_close_ms, &mut self.closed);
                    let next = self.stream.next_journal_seq();
                    self.finish(None, next).await?;
                    continue;
                }
            }
            self.process(&batch).await?;
            for publish in batch.drain(..) {
                let _ = client.ack(&publish).await;
            }
        }
    }

    /// Swap the model between two batches; rebuild feature states if needed.
    fn swap_model(&mut self, model: Arc<LoadedModel>) {
        let same_spec = model.model.meta.feature_spec == self.model.model.meta.feature_spec;
        if !same_spec {
            for f in self.forecasters.values_mut() {
                f.swap_model(&model);
            }
        }
        tracing::info!(old = %self.model.version, new = %model.version, rebuilt_features = !same_spec, "model swapped");
        self.metrics.set_model_version(&model.version);
        Metrics::inc(&self.metrics.model_reloads);
        self.model = model;
    }

    async fn process(&mut self, batch: &[Publish]) -> anyhow::Result<()> {
        let seq = self.stream.next_journal_seq();
        let now = now_ms();
        let mut journal = Vec::with_capacity(batch.iter().map(|p| p.payload.len() + 4).sum());
        stream_spool::encode_journal_batch(batch.iter().map(|p| &p.payload[..]), &mut journal);
        let mut accepted = 0u64;
        for publish in batch {
            self.readings.clear();
            if let Err(e) = self.decoder.decode(&publish.payload, &mut self.readings) {
                tracing::debug!(topic = %publish.topic, error = %e, "undecodable message (ingest keeps these)");
                continue;
            }
            for r in &self.readings {
                if r.source == self.source && matches!(self.windows.push(r, seq, now), Push::Accepted) {
                    accepted += 1;
                }
            }
        }
        Metrics::add(&self.metrics.readings, accepted);
        self.finish(Some((seq, journal)), seq + 1).await
    }

    /// Run the closed intervals through the forecasters and commit.
    async fn finish(&mut self, journal: Option<(u64, Vec<u8>)>, next_seq: u64) -> anyhow::Result<()> {
        self.windows.drain_closed(&mut self.closed);
        if self.closed.is_empty() && journal.is_none() {
            return Ok(());
        }
        let mut out = self.forecast();
        let forget_below = self.windows.min_open_seq().unwrap_or(next_seq);
        let mut lines = std::mem::take(&mut out.lines);
        if !out.triplets.is_empty() || !out.states.is_empty() {
            let spool = self.triplets.clone();
            let (mut triplets, states) = (std::mem::take(&mut out.triplets), std::mem::take(&mut out.states));
            // The lines go with the triplets too, under the point number the
            // stream spool will give them: see `recover`.
            let point_seq = self.stream.next_point_seq();
            let (triplets, returned) = tokio::task::spawn_blocking(move || {
                let pending = (!lines.is_empty()).then_some((point_seq, &lines[..]));
                spool.commit(&mut triplets, &states, pending).map(|_| (triplets, lines))
            })
            .await??;
            lines = returned;
            for t in &triplets {
                tracing::info!(sensor = %t.sensor, interval_start_ms = t.interval_start_ms, seq = t.seq,
                    predicted = t.predicted, actual = t.actual, "mispredicted: triplet spooled");
            }
            Metrics::add(&self.metrics.mispredictions, triplets.len() as u64);
            self.metrics.triplet_spool_depth.store(self.triplets.depth(), Ordering::Relaxed);
            if !triplets.is_empty() {
                self.wake.notify_one();
            }
        }
        let stream = self.stream.clone();
        let has_points = !lines.is_empty();
        let frontiers = out.frontiers;
        tokio::task::spawn_blocking(move || {
            stream.commit(Commit {
                journal: journal.as_ref().map(|(s, b)| (*s, &b[..])),
                points: Some(&lines[..]),
                frontiers: &frontiers,
                forget_journal_below: Some(forget_below),
            })
        })
        .await??;
        if has_points {
            self.newest_points.send_modify(|n| *n += 1);
        }
        Metrics::add(&self.metrics.predictions, out.predictions);
        Metrics::add(&self.metrics.judged, out.judged);
        Metrics::add(&self.metrics.unjudged, out.dropped);
        Ok(())
    }

    /// Feed every closed interval to its sensor's forecaster.
    fn forecast(&mut self) -> Outcome {
        let mut out = Outcome::default();
        let mut closed = std::mem::take(&mut self.closed);
        closed.sort_by(|a, b| (&a.key, a.start_ms).cmp(&(&b.key, b.start_ms)));
        let mut changed: Vec<String> = Vec::new();
        let mut builder = LineProtocolBuilder::new_with(Vec::new());
        for w in &closed {
            out.frontiers.push((format!("{}\u{1f}{}", w.key.sensor, w.key.source.name()), w.end_ms()));
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
            out.predictions += step.predicted as u64;
            out.dropped += step.dropped;
            for j in &step.judged {
                out.judged += 1;
                builder = prediction_line(builder, &self.measurement, sensor, j);
                if j.verdict.mispredicted {
                    out.triplets.push(Forecaster::triplet(sensor, j, model, self.width_ms, self.judge.rule().name()));
                }
            }
            if !changed.iter().any(|s| s == sensor) {
                changed.push(sensor.to_string());
            }
        }
        closed.clear();
        self.closed = closed;
        out.lines = builder.build();
        for sensor in changed {
            let state = serde_json::to_vec(&self.forecasters[&sensor].state).expect("state serializes");
            out.states.push((sensor, state));
        }
        out
    }
}

fn prediction_line(
    builder: LineProtocolBuilder<Vec<u8>>,
    measurement: &str,
    sensor: &str,
    j: &Judged,
) -> LineProtocolBuilder<Vec<u8>> {
    builder
        .measurement(measurement)
        .tag("sensor", sensor)
        .tag("model", &j.pending.model_version[..j.pending.model_version.len().min(16)])
        .field("predicted", j.pending.predicted)
        .field("actual", j.actual)
        .field("error", j.verdict.error)
        .field("abs_error", j.verdict.error.abs())
        .field("mispredicted", j.verdict.mispredicted)
        .timestamp(j.pending.target_start_ms)
        .close_line()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

async fn log_summaries(metrics: Arc<Metrics>, every: Duration, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        tracing::info!("{}", summary_line(&metrics));
    }
}

/// One human line with the totals.
pub fn summary_line(m: &Metrics) -> String {
    format!(
        "readings {} | intervals {} | predictions {} | judged {} | mispredicted {} | triplets spooled {} | uploaded {} in {} objects | upload failures {} | model {} (reloads {}, refused {})",
        Metrics::get(&m.readings),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model_source::load_model;

    /// A SIGKILL after a step's triplet commit and before its stream commit:
    /// the restart writes the step's prediction lines to the stream spool,
    /// once.
    #[tokio::test]
    async fn lines_of_a_step_cut_between_its_two_commits_reach_the_stream_spool_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = PredictConfig::default();
        config.spool.dir = dir.path().to_path_buf();
        let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../models/default.gcm")).unwrap();
        let model = Arc::new(load_model(&bytes, config.predict.interval_secs).unwrap());
        let sinks = ["file".to_string()];
        let line = b"prediction,sensor=a predicted=1,actual=2 60000\n".to_vec();
        {
            let stream = Spool::open(&dir.path().join("stream"), u64::MAX, &sinks).unwrap();
            let triplets = TripletSpool::open(&dir.path().join("triplets")).unwrap();
            triplets.commit(&mut [], &[], Some((stream.next_point_seq(), &line[..]))).unwrap();
            // ... and the process dies here.
        }
        for _restart in 0..2 {
            let stream = Arc::new(Spool::open(&dir.path().join("stream"), u64::MAX, &sinks).unwrap());
            let triplets = Arc::new(TripletSpool::open(&dir.path().join("triplets")).unwrap());
            let (newest, _) = watch::channel(0);
            let mut predict = Loop::new(&config, model.clone(), stream.clone(), triplets, Arc::default(), newest);
            predict.recover().await.unwrap();
            assert_eq!(stream.pending_points("file", 10).unwrap(), vec![(0, line.clone())]);
        }
    }
}
