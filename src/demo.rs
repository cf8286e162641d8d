//! `gridcast demo`: the whole edge path on embedded defaults, nothing to
//! install first. It starts an MQTT broker of its own when none listens on
//! the configured address (rumqttd, behind the `embedded-broker` feature),
//! replays the shipped sample as simulated meters at a speed-up, runs ingest,
//! and writes windows as line-protocol files under `./data/` unless the
//! config names an InfluxDB. The predictor runs beside it on the same broker
//! with the shipped model: predictions go to `./data/predictions`, and
//! mispredicted minutes (relative error over 20 %) as triplets to the local
//! folder store `./data/triplets`. A summary line every second shows it working.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use gridcast_edge::http::ServeError;
use gridcast_edge::spool::depth_of;
use gridcast_ingest::{Ingest, config};
use gridcast_predictor::judge::Rule;
use gridcast_predictor::metrics::Metrics;
use gridcast_predictor::{PredictConfig, Predictor};
use gridcast_simulator::{Generator, GeneratorConfig, PublishOptions, Series, Start, publish};

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
    let total_readings = generator.total_readings();
    let sinks: Vec<String> = gridcast_ingest::run::effective_sinks(&config).iter().map(|s| s.name()).collect();
    println!(
        "gridcast demo: {} meters x {} minutes of {} at {}x real time via {broker}; windows go to {}",
        args.sensors,
        args.minutes,
        args.csv.display(),
        args.speedup,
        sinks.join(", ")
    );

    let ingest = match Ingest::start(config.clone()).await {
        Ok(ingest) => ingest,
        Err(e) if e.downcast_ref::<ServeError>().is_some() => {
            println!("ingest: {e}; running without /metrics");
            Ingest::start(gridcast_ingest::IngestConfig { http: Default::default(), ..config.clone() }).await?
        }
        Err(e) => return Err(e),
    };
    ingest.subscribed(Duration::from_secs(10)).await?;
    let predictor = start_predictor(&config).await?;
    predictor.subscribed(Duration::from_secs(10)).await?;
    let options = PublishOptions {
        host: config.mqtt.host.clone(),
        port: config.mqtt.port,
        client_id: "gridcast-demo-meter".into(),
        speedup: args.speedup,
        ..PublishOptions::default()
    };
    let publisher = tokio::spawn(async move { publish(&options, generator.readings(), |_| {}).await });

    let started = Instant::now();
    let mut last = ingest.stats.snapshot();
    let mut last_at = Instant::now();
    let mut published_done = false;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => { println!("interrupted"); break; }
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let now = ingest.stats.snapshot();
        let depth = depth_of(&ingest.spool).await;
        println!("{}", gridcast_ingest::run::summary_line(&last, &now, last_at.elapsed(), &depth));
        last = now.clone();
        last_at = Instant::now();
        if !published_done && publisher.is_finished() {
            published_done = true;
        }
        let written: u64 = now.sinks.values().map(|s| s.lines_written).sum::<u64>() / sinks.len().max(1) as u64;
        let all_in = now.readings + now.duplicate_readings >= total_readings;
        if published_done
            && all_in
            && now.windows_closed > 0
            && written >= now.windows_closed
            && depth.point_records == 0
            && now.open_windows == 0
        {
            break;
        }
        if started.elapsed() > Duration::from_secs(3600) {
            break;
        }
    }
    let report = ingest.stats.snapshot();
    ingest.stop().await?;
    // The predictor saw the same minutes; give it a moment to judge the last
    // one and upload its triplets.
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
    predictor.stop().await?;
    if published_done {
        match publisher.await? {
            Ok(r) => println!(
                "meters: {} messages published, {} acknowledged by the broker",
                r.messages_published, r.messages_acked
            ),
            Err(e) => println!("meters: publishing failed: {e}"),
        }
    }
    println!(
        "done: {} readings -> {} minute windows; {} rejected messages. Data: {}",
        report.readings,
        report.windows_closed,
        report.decode_errors_total(),
        sinks.join(", ")
    );
    Ok(())
}

/// The predictor on the demo's broker, with local stores under ./data.
async fn start_predictor(ingest: &config::IngestConfig) -> anyhow::Result<Predictor> {
    let mut config = PredictConfig::default();
    config.mqtt.host = ingest.mqtt.host.clone();
    config.mqtt.port = ingest.mqtt.port;
    config.mqtt.topics = ingest.mqtt.topics.clone();
    config.predict.idle_close_secs = 3;
    config.predict.stats_interval_secs = 3600;
    // Relative rule: the adaptive default needs 30 minutes of warm-up per sensor.
    config.judge = Some(Rule::Relative { threshold: 0.2, floor_w: 50.0 });
    config.upload.batch_interval_secs = 2;
    println!(
        "predictor: model {}, triplets to {}, predictions to {}, /metrics on {}",
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
