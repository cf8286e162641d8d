//! `gridcast demo`: the whole edge loop on embedded defaults, nothing to
//! install first. It starts an MQTT broker of its own when none listens on
//! the configured address (rumqttd, behind the `embedded-broker` feature),
//! replays the shipped sample as simulated meters at a speed-up, runs ingest,
//! and writes windows as line-protocol files under `./data/` unless the
//! config names an InfluxDB. The predictor runs beside it on the same broker:
//! predictions go to `./data/predictions`, and mispredicted minutes (relative
//! error over 20 %) as triplets to the local folder store `./data/triplets`.
//!
//! The loop closes without a server: the predictor serves
//! `./data/models/current.gcm` (a copy of the shipped model on a fresh
//! `./data`) and polls it; after a number of simulated minutes (or of
//! uploaded triplets) the demo runs a retrain in this process on one meter's
//! history in `./data/lines` and the triplets, gated against that champion,
//! and a challenger that wins is published to `./data/models/`, where the
//! predictor picks it up. A summary line every second shows it working, with
//! the model serving and the last retrain's verdict.

mod retrain;

use retrain::{Retrainer, short};

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use gridcast_edge::config::ServiceConfig;
use gridcast_edge::http::ServeError;
use gridcast_edge::sinks::SinkConfig;
use gridcast_edge::spool::depth_of;
use gridcast_ingest::{Ingest, config};
use gridcast_predictor::judge::Rule;
use gridcast_predictor::metrics::Metrics;
use gridcast_predictor::{PredictConfig, Predictor};
use gridcast_simulator::{Generator, GeneratorConfig, PublishOptions, Series, Start, publish, sensor_hex};
use gridcast_trainer::retrain::config::{PublishConfig, RetrainConfig};
use gridcast_trainer::retrain::{Outcome, gate, publish::CURRENT, retrain};
use tokio::task::JoinHandle;

/// Where the demo publishes models and the predictor reads them from.
const DATA_DIR: &str = "./data";

/// Run the edge path end to end on this machine, with simulated meters.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Ingest config (TOML); without one, defaults: broker 127.0.0.1:1883,
    /// spool ./data/spool, windows as line protocol in ./data/lines.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Minute CSV to replay (timestamp, p_l1[, p_l2, p_l3]).
    #[arg(long, default_value = "samples/uci_household_2007-01_14d.csv")]
    csv: PathBuf,
    /// Simulated meters.
    #[arg(long, default_value_t = 3)]
    sensors: u32,
    /// Simulated minutes; they end at the current minute.
    #[arg(long, default_value_t = 30)]
    minutes: usize,
    /// Multiple of real time (60: a simulated minute per second).
    #[arg(long, default_value_t = 60.0)]
    speedup: f64,
    /// The model a fresh ./data starts with, copied to
    /// ./data/models/current.gcm (what the predictor serves and retrain
    /// publishes over); an existing current.gcm is kept.
    #[arg(long, default_value = "models/default.gcm")]
    model: PathBuf,
    #[command(flatten)]
    retrain: DemoRetrainArgs,
}

/// When the demo retrains, and on what.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoRetrainArgs {
    /// Retrain once this many simulated minutes of the retrain meter are
    /// written to ./data/lines (0: never on minutes).
    #[arg(long = "retrain-after-minutes", default_value_t = 22)]
    after_minutes: u64,
    /// Then retrain again every N simulated minutes (0: once).
    #[arg(long = "retrain-every", default_value_t = 0)]
    every_minutes: u64,
    /// Also retrain each time the predictor has uploaded this many more
    /// triplets (0: never on triplets).
    #[arg(long = "retrain-after-triplets", default_value_t = 0)]
    after_triplets: u64,
    /// The last N minutes of the history are the holdout both models are
    /// scored on; the challenger trains on what comes before.
    #[arg(long = "retrain-holdout-minutes", default_value_t = 8)]
    holdout_minutes: u64,
    /// The simulated meter (0-based) whose history trains the challenger.
    #[arg(long = "retrain-meter", default_value_t = 1)]
    meter: u32,
}

pub async fn run(args: DemoArgs, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    let mut config = config::load(args.config.as_deref())?;
    // The demo's last minute must close without waiting five minutes for
    // the meters to be declared quiet.
    config.pipeline.idle_close_secs = config.pipeline.idle_close_secs.min(3);
    config.pipeline.stats_interval_secs = 3600; // the demo prints its own line
    let broker = format!("{}:{}", config.mqtt.host, config.mqtt.port);
    ensure_broker(&broker)?;

    let series = Series::load(&args.csv).with_context(|| format!("loading {}", args.csv.display()))?;
    let now_minute = unix_now() / 60 * 60;
    let generator = Generator::new(
        &series,
        GeneratorConfig {
            sensors: args.sensors,
            minutes: Some(args.minutes),
            start: Start::At(now_minute - 60 * args.minutes as i64),
            ..GeneratorConfig::default()
        },
    )?;
    let sinks = gridcast_ingest::run::effective_sinks(&config);
    let sink_names: Vec<String> = sinks.iter().map(|s| s.name()).collect();
    println!(
        "gridcast demo: {} meters x {} minutes of {} at {}x real time via {broker}; windows go to {}",
        args.sensors,
        args.minutes,
        args.csv.display(),
        args.speedup,
        sink_names.join(", ")
    );
    let current = seed_model(&args.model)?;
    let retrainer = Retrainer::plan(&args.retrain, &args, &sinks, &generator, &current)?;

    let ingest = match Ingest::start(config.clone()).await {
        Ok(ingest) => ingest,
        Err(e) if e.downcast_ref::<ServeError>().is_some() => {
            println!("ingest: {e}; running without /metrics");
            Ingest::start(gridcast_ingest::IngestConfig { http: Default::default(), ..config.clone() }).await?
        }
        Err(e) => return Err(e),
    };
    ingest.subscribed(Duration::from_secs(10)).await?;
    let predictor = start_predictor(&config, &current).await?;
    predictor.subscribed(Duration::from_secs(10)).await?;
    let options = PublishOptions {
        host: config.mqtt.host.clone(),
        port: config.mqtt.port,
        client_id: "gridcast-demo-meter".into(),
        speedup: args.speedup,
        ..PublishOptions::default()
    };
    let total_readings = generator.total_readings();
    let publisher = tokio::spawn(async move { publish(&options, generator.readings(), |_| {}).await });
    let demo = Demo { ingest, predictor, retrainer, total_readings, sensors: args.sensors.into(), sink_names };
    demo.run_until_done(publisher, shutdown).await
}

/// The running demo: the services, the retrain loop, and what it waits for.
struct Demo {
    ingest: Ingest,
    predictor: Predictor,
    retrainer: Retrainer,
    total_readings: u64,
    sensors: u64,
    sink_names: Vec<String>,
}

type Publisher = JoinHandle<Result<gridcast_simulator::PublishReport, gridcast_simulator::PublishError>>;

impl Demo {
    /// A summary line every second until every reading is written, every
    /// retrain has ended and a shipped model is serving; then stop.
    async fn run_until_done(
        mut self,
        publisher: Publisher,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        let mut last = self.ingest.stats.snapshot();
        let mut last_at = Instant::now();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => {
                    println!("interrupted");
                    self.retrainer.abort();
                    break;
                }
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            let now = self.ingest.stats.snapshot();
            let depth = depth_of(&self.ingest.spool).await;
            let m = &self.predictor.metrics;
            let serving = m.model_version();
            let written = |sink: &str| now.sinks.get(sink).map_or(0, |s| s.lines_written);
            let minutes = self.retrainer.lines_sink.as_deref().map_or(0, written) / self.sensors.max(1);
            self.retrainer.collect().await;
            self.retrainer.start_if_due(minutes, Metrics::get(&m.uploaded_triplets));
            println!(
                "{} | model {} | retrain: {}",
                gridcast_ingest::run::summary_line(&last, &now, last_at.elapsed(), &depth),
                short(&serving),
                self.retrainer.status()
            );
            last = now.clone();
            last_at = Instant::now();
            let all_written = self.sink_names.iter().all(|s| written(s) >= now.windows_closed);
            // Late readings count as in: a demo run again within --minutes
            // of the last one replays minutes ingest has already closed.
            let all_in = now.readings + now.duplicate_readings + now.late_readings >= self.total_readings;
            if publisher.is_finished()
                && all_in
                && (now.windows_closed > 0 || now.readings == 0)
                && all_written
                && depth.point_records == 0
                && now.open_windows == 0
                && !self.retrainer.busy(&serving)
            {
                break;
            }
            if started.elapsed() > Duration::from_secs(3600) {
                break;
            }
        }
        self.stop(publisher).await
    }

    async fn stop(self, publisher: Publisher) -> anyhow::Result<()> {
        let Demo { ingest, predictor, retrainer, sink_names, .. } = self;
        let report = ingest.stats.snapshot();
        ingest.stop().await?;
        // The predictor saw the same minutes; give it a moment to judge the
        // last one and upload its triplets.
        let deadline = Instant::now() + Duration::from_secs(20);
        let m = predictor.metrics.clone();
        while Instant::now() < deadline
            && !(Metrics::get(&m.intervals) >= report.windows_closed
                && predictor.triplets.depth() == 0
                && depth_of(&predictor.spool).await.point_records == 0)
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        println!("predictor: {}", gridcast_predictor::run::summary_line(&m, &predictor.stats));
        println!(
            "retrain: {} run(s); last: {}; serving model {}",
            retrainer.runs,
            retrainer.status(),
            m.model_version()
        );
        predictor.stop().await?;
        if publisher.is_finished() {
            match publisher.await? {
                Ok(r) => println!(
                    "meters: {} messages published, {} acknowledged by the broker",
                    r.messages_published, r.messages_acked
                ),
                Err(e) => println!("meters: publishing failed: {e}"),
            }
        } else {
            publisher.abort();
        }
        println!(
            "done: {} readings -> {} minute windows; {} rejected messages. Data: {}",
            report.readings,
            report.windows_closed,
            report.decode_errors_total(),
            sink_names.join(", ")
        );
        Ok(())
    }
}

/// `./data/models/current.gcm`, a copy of `seed` unless it exists (the
/// loop goes on from the model an earlier run shipped).
fn seed_model(seed: &Path) -> anyhow::Result<PathBuf> {
    let dir = PublishConfig { store: DATA_DIR.into(), ..PublishConfig::default() }.models_dir();
    let current = dir.join(CURRENT);
    if current.exists() {
        println!(
            "model: serving {} (kept from an earlier run; remove it to start from {})",
            current.display(),
            seed.display()
        );
        return Ok(current);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // Copy, then rename: the predictor never sees half a model.
    let staged = dir.join(".seed.gcm.tmp");
    std::fs::copy(seed, &staged).with_context(|| format!("copying the starting model {}", seed.display()))?;
    std::fs::rename(&staged, &current).with_context(|| format!("replacing {}", current.display()))?;
    println!("model: serving {}, a copy of {}", current.display(), seed.display());
    Ok(current)
}

/// The predictor on the demo's broker, with local stores under ./data,
/// serving (and polling) `model`.
async fn start_predictor(ingest: &config::IngestConfig, model: &Path) -> anyhow::Result<Predictor> {
    let mut config = PredictConfig::default();
    config.mqtt.host = ingest.mqtt.host.clone();
    config.mqtt.port = ingest.mqtt.port;
    config.mqtt.topics = ingest.mqtt.topics.clone();
    config.predict.idle_close_secs = 3;
    config.predict.stats_interval_secs = 3600;
    config.predict.model = model.display().to_string();
    config.predict.model_poll_secs = 1;
    // Relative rule: the adaptive default needs 30 minutes of warm-up per sensor.
    config.judge = Some(Rule::Relative { threshold: 0.2, floor_w: 50.0 });
    config.upload.batch_interval_secs = 2;
    println!(
        "predictor: model {} (polled every second), triplets to {}, predictions to {}, /metrics on {}",
        config.predict.model,
        config.upload.url,
        gridcast_predictor::run::DEFAULT_PREDICTIONS_DIR,
        config.http.listen
    );
    match Predictor::start(config.clone()).await {
        Ok(p) => Ok(p),
        Err(e) if e.downcast_ref::<ServeError>().is_some() => {
            println!("predictor: {e}; running without /metrics");
            config.http.listen.clear();
            Predictor::start(config).await
        }
        Err(e) => Err(e),
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Use the broker at `addr` if one answers; otherwise start our own there.
fn ensure_broker(addr: &str) -> anyhow::Result<()> {
    let socket: SocketAddr = addr
        .to_socket_addrs()
        .with_context(|| format!("MQTT address {addr}"))?
        .next()
        .with_context(|| format!("MQTT address {addr} resolves to nothing"))?;
    if TcpStream::connect_timeout(&socket, Duration::from_millis(300)).is_ok() {
        println!("using the MQTT broker at {addr}");
        return Ok(());
    }
    start_embedded_broker(socket)
}

#[cfg(feature = "embedded-broker")]
fn start_embedded_broker(socket: SocketAddr) -> anyhow::Result<()> {
    let config: rumqttd::Config = toml::from_str(&format!(
        r#"
        id = 0
        [router]
        id = 0
        max_connections = 64
        max_outgoing_packet_count = 1000
        max_segment_size = 104857600
        max_segment_count = 10
        [v4.1]
        name = "gridcast-demo"
        listen = "{socket}"
        next_connection_delay_ms = 1
        [v4.1.connections]
        connection_timeout_ms = 60000
        max_payload_size = 1048576
        max_inflight_count = 1000
        dynamic_filters = true
        "#
    ))
    .context("embedded broker config")?;
    let mut broker = rumqttd::Broker::new(config);
    std::thread::Builder::new().name("rumqttd".into()).spawn(move || {
        if let Err(e) = broker.start() {
            eprintln!("embedded MQTT broker stopped: {e}");
        }
    })?;
    for _ in 0..50 {
        if TcpStream::connect_timeout(&socket, Duration::from_millis(100)).is_ok() {
            println!("no MQTT broker at {socket}: started an embedded one (rumqttd)");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    anyhow::bail!("the embedded MQTT broker did not start listening on {socket}")
}

#[cfg(not(feature = "embedded-broker"))]
fn start_embedded_broker(socket: SocketAddr) -> anyhow::Result<()> {
    anyhow::bail!(
        "no MQTT broker answers at {socket}, and this build has no embedded one: start Mosquitto \
         (apt-get install mosquitto) or build with the default features"
    )
}
