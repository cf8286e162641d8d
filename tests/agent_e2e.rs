//! `gridcast agent` on a real Docker engine (Debian's `dockerd`, started by
//! the test with its data and socket under a temp dir, host networking) and
//! a real registry (Debian's `docker-registry`), with the shared Mosquitto
//! and InfluxDB and a simulated meter publishing at 60x real time (one
//! minute interval per second).
//!
//! One device's life, in order:
//! 1. the base image is built from this build's static binary and pushed,
//!    a model shipped on it to `:stable`; the agent starts it; it predicts;
//! 2. a new model is shipped daemonlessly, then another through the engine
//!    (bollard); the agent switches to each, /health reports it, and no
//!    interval goes unpredicted across the switches;
//! 3. an image whose model file is corrupt is rolled back and never tried
//!    again;
//! 4. an image whose model predicts 2 kW too high is rolled back by the
//!    soak window (its error against the previous model's);
//! 5. the agent is SIGKILLed mid-switch and, restarted, brings the device to
//!    a running known-good predictor.
//!
//! Every wait is for a condition (agent state file, /health, InfluxDB rows).

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use gridcast_simulator::{Generator, GeneratorConfig, PublishOptions, Series, Start, publish, sensor_hex};
use serde_json::Value;
use support::dockerd::Dockerd;
use support::gridcast::{GridcastProcess, PredictToml, model_version, shipped_model};
use support::image::{ship, shipped, static_gridcast};
use support::meter::sample_csv;
use support::registry::Registry;
use support::{INFLUX_DB, SharedServers, free_port, influxql_values, shared_servers, unique};

/// A meter publishing in the background until dropped.
struct Meter {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
    sensor: String,
}

impl Meter {
    fn start(servers: &SharedServers, topic_prefix: &str) -> Meter {
        let stop = Arc::new(AtomicBool::new(false));
        let options = PublishOptions {
            host: "127.0.0.1".into(),
            port: servers.mqtt.port(),
            client_id: unique("agent-meter"),
            topic_prefix: topic_prefix.into(),
            speedup: 60.0,
            ..PublishOptions::default()
        };
        let series = Series::load(&sample_csv()).expect("the shipped sample loads");
        let config = GeneratorConfig { sensors: 1, start: Start::Csv, seed: 11, ..GeneratorConfig::default() };
        let generator = Generator::new(&series, config).expect("generator");
        let sensor = sensor_hex(&generator.readings().next().expect("a reading").sensor);
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            let readings = generator.readings().take_while(|_| !flag.load(Ordering::Relaxed));
            runtime.block_on(publish(&options, readings, |_| {})).expect("every message acknowledged");
        });
        Meter { stop, thread: Some(thread), sensor }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The device: registry, engine, the agent and its files. Fields drop in
/// this order: the agent, then the engine (removing its containers), the
/// registry, and the folder they all live in last.
struct Device {
    agent: Option<GridcastProcess>,
    engine: Dockerd,
    registry: Registry,
    dir: tempfile::TempDir,
    servers: SharedServers,
    base: String,
    stable: String,
    health_port: u16,
    agent_port: u16,
    measurement: String,
    /// The device name in deploy events.
    device: String,
    /// The predictor container's name.
    container: String,
}

impl Device {
    fn new() -> Device {
        let servers = shared_servers();
        // Short: dockerd's and containerd's sockets live under it.
        let dir = tempfile::Builder::new().prefix("gca").tempdir_in("/tmp").unwrap();
        let registry = Registry::start(dir.path().join("registry"));
        let engine_dir = dir.path().join("d");
        std::fs::create_dir(&engine_dir).unwrap();
        let engine = Dockerd::start(&engine_dir);
        let addr = registry.addr();
        let base = format!("{addr}/gridcast/predictor:base");
        let stable = format!("{addr}/gridcast/predictor:stable");
        let binary = stripped(&static_gridcast(), dir.path());
        shipped(&ship(&["base", "--binary", &binary, "--image", &base], &[], dir.path()));
        Device {
            dir,
            servers,
            registry,
            engine,
            base,
            stable,
            health_port: free_port(),
            agent_port: free_port(),
            measurement: unique("prediction"),
            device: unique("device"),
            container: unique("gridcast-predict"),
            agent: None,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Ships `model` to `:stable`, daemonlessly or through the engine;
    /// returns the pushed digest.
    fn ship_model(&self, model: &Path, engine: bool) -> String {
        let model = model.to_str().unwrap();
        let mut args = vec!["model", "--model", model, "--base", &self.base, "--image", &self.stable];
        let host = self.engine.host();
        if engine {
            args.extend(["--engine", "--docker-host", &host]);
        }
        shipped(&ship(&args, &[], self.dir.path())).0
    }

    /// The predictor config the containers run with (bind-mounted over the
    /// image's): its spool, triplets and this file all under the device's
    /// folder, which is mounted at the same path inside.
    fn write_predict_config(&self, topic_prefix: &str) -> PathBuf {
        let mut config = PredictToml::new(&self.servers, self.dir.path(), &format!("{topic_prefix}/#"), INFLUX_DB);
        config.client_id = unique("agent-predict");
        config.model = "/models/current.gcm".into();
        config.measurement = self.measurement.clone();
        config.http_listen = format!("127.0.0.1:{}", self.health_port);
        let path = self.path("predict.toml");
        std::fs::write(&path, config.to_toml()).unwrap();
        path
    }

    fn start_agent(&mut self, predict_config: &Path) {
        let dir = self.dir.path().display().to_string();
        let config = format!(
            r#"
[agent]
image = "{stable}"
poll_secs = 1
state_dir = "{dir}/agent-state"
device = "{device}"
docker_host = "{host}"

[container]
name = "{name}"
network = "host"
binds = ["{dir}:{dir}", "{predict}:/etc/gridcast/predict.toml:ro"]
health_url = "http://127.0.0.1:{health}/health"
metrics_url = "http://127.0.0.1:{health}/metrics"
stop_timeout_secs = 20

[soak]
health_timeout_secs = 20
soak_secs = 12
min_judged = 5
max_error_ratio = 1.5

[http]
listen = "127.0.0.1:{agent_port}"

[[events]]
kind = "influxdb_v1"
url = "{influx}"
database = "{INFLUX_DB}"
"#,
            stable = self.stable,
            host = self.engine.host(),
            name = self.container,
            predict = predict_config.display(),
            health = self.health_port,
            agent_port = self.agent_port,
            influx = self.servers.influxdb_v1,
            device = self.device,
        );
        self.agent = Some(GridcastProcess::start("agent", self.dir.path(), &config, &[]));
    }

    fn agent(&mut self) -> &mut GridcastProcess {
        self.agent.as_mut().expect("the agent runs")
    }

    fn state(&self) -> Value {
        std::fs::read(self.path("agent-state/state.json"))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or(Value::Null)
    }

    /// The predictor's /health model version, while it answers 200.
    fn serving(&self) -> Option<String> {
        let url = format!("http://127.0.0.1:{}/health", self.health_port);
        let response = support::http::request("GET", &url, &[], b"").ok()?;
        (response.status == 200).then_some(())?;
        let body: Value = serde_json::from_slice(&response.body).ok()?;
        Some(body["model_version"].as_str()?.to_owned())
    }

    fn predictor_metric(&self, name: &str) -> f64 {
        support::http::gridcast_metrics(self.health_port).and_then(|m| m.get(name).copied()).unwrap_or(-1.0)
    }

    fn agent_metric(&self, name: &str) -> f64 {
        support::http::gridcast_metrics(self.agent_port).and_then(|m| m.get(name).copied()).unwrap_or(-1.0)
    }

    /// Waits until `digest` is known good, its predictor serves `version`
    /// and has predicted since; `timeout` for all of it.
    fn wait_known_good(&mut self, digest: &str, version: &str, what: &str) {
        let timeout = Duration::from_secs(120);
        self.agent_wait(timeout, what, |d| {
            let good = d.state()["known_good"].as_str() == Some(digest) && d.state()["trial"].is_null();
            (good && d.serving().as_deref() == Some(version) && d.predictor_metric("predictions_total") > 0.0)
                .then_some(())
        });
    }

    fn agent_wait<T>(&mut self, timeout: Duration, what: &str, mut attempt: impl FnMut(&Device) -> Option<T>) -> T {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            self.agent().assert_running();
            if let Some(value) = attempt(self) {
                return value;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "gave up after {timeout:?} waiting for {what}\nstate: {}\nagent log:\n{}\npredictor: {}",
                self.state(),
                self.agent.as_ref().unwrap().log(),
                self.engine_logs()
            );
            thread::sleep(Duration::from_millis(200));
        }
    }

    fn engine_logs(&self) -> String {
        let names = self.engine.docker_ok(&["ps", "-a", "--format", "{{.Names}} {{.Status}} {{.Image}}"]);
        let mut text = names.clone();
        if let Some(name) = names.lines().next().and_then(|l| l.split_whitespace().next()) {
            let logs = self.engine.docker(&["logs", "--tail", "20", name]);
            text.push_str(&String::from_utf8_lossy(&logs.stderr));
        }
        text
    }

    /// Target interval starts (ms) of the predictions in InfluxDB for `sensor`.
    fn predicted_intervals(&self, sensor: &str) -> BTreeSet<i64> {
        let q = format!("SELECT predicted FROM \"{}\" WHERE sensor = '{sensor}'", self.measurement);
        influxql_values(&self.servers.influxdb_v1, INFLUX_DB, &q).iter().filter_map(|row| row[0].as_i64()).collect()
    }
}

/// `binary` stripped into `dir` (the release build keeps line tables: five
/// times the size, all of it gzipped by `ship base`).
fn stripped(binary: &Path, dir: &Path) -> String {
    let out = dir.join("gridcast-static");
    let status = std::process::Command::new("strip").arg("--strip-all").arg("-o").arg(&out).arg(binary).status();
    if !status.is_ok_and(|s| s.success()) {
        std::fs::copy(binary, &out).unwrap();
    }
    out.display().to_string()
}

/// The shipped model with another `source` line: a new version that
/// predicts exactly as well.
fn relabelled_model(dir: &Path, name: &str) -> (PathBuf, String) {
    let mut model = gridcast_core::model::Model::from_bytes(&std::fs::read(shipped_model()).unwrap()).unwrap();
    model.meta.source = format!("{} ({name})", model.meta.source);
    let bytes = model.to_bytes();
    let path = dir.join(format!("{name}.gcm"));
    std::fs::write(&path, &bytes).unwrap();
    (path, model_version(&bytes))
}

/// The shipped model with 2 kW added to every prediction (its base score):
/// a valid model that serves and predicts, far worse than the shipped one.
/// (A "constant" model is no test here: our trees predict the change from
/// the last interval, so a near-constant one is persistence itself.)
fn biased_model(dir: &Path) -> (PathBuf, String) {
    let model = gridcast_core::model::Model::from_bytes(&std::fs::read(shipped_model()).unwrap()).unwrap();
    let mut meta = model.meta.clone();
    meta.base_score += 2000.0;
    let biased = gridcast_core::model::Model::new(meta, model.trees().to_vec()).unwrap();
    let bytes = biased.to_bytes();
    let path = dir.join("biased.gcm");
    std::fs::write(&path, &bytes).unwrap();
    (path, model_version(&bytes))
}

/// A file the base image builder takes for a Linux arm64 program (an ELF
/// header, e_machine 183): enough for an image of that platform.
fn arm64_elf(dir: &Path) -> String {
    let mut elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0\xb7\0".to_vec();
    elf.resize(64, 0);
    let path = dir.join("arm64-elf");
    std::fs::write(&path, elf).unwrap();
    path.to_str().unwrap().to_owned()
}

/// Pushes an image whose model file is garbage (what `gridcast ship model`
/// refuses to build): labelled like a real one, so only running it tells.
fn push_corrupt_model(device: &Device) -> String {
    let mut bytes = std::fs::read(shipped_model()).unwrap();
    let half = bytes.len() / 2;
    bytes.truncate(half);
    let prepared = gridcast_ship::push::PreparedModel {
        bytes,
        version: "badbadbadbad".into(),
        sha256: "bad".repeat(21) + "b",
        base: device.base.parse().unwrap(),
        target: device.stable.parse().unwrap(),
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(gridcast_ship::push::push_prepared(&prepared, false)).expect("pushed").digest
}

#[test]
fn the_agent_swaps_models_in_and_rolls_bad_ones_back() {
    let mut device = Device::new();
    let topic_prefix = unique("agent/raw");
    let predict_config = device.write_predict_config(&topic_prefix);

    // 1. The first model, shipped on the base; the agent starts it.
    let (model_a, version_a) = relabelled_model(device.dir.path(), "a");
    let digest_a = device.ship_model(&model_a, false);
    device.start_agent(&predict_config);
    let meter = Meter::start(&device.servers, &topic_prefix);
    device.wait_known_good(&digest_a, &version_a, "the first image to run and predict");

    // 2. A new model, daemonless: switched to and committed.
    let (model_b, version_b) = relabelled_model(device.dir.path(), "b");
    let digest_b = device.ship_model(&model_b, false);
    device.wait_known_good(&digest_b, &version_b, "the daemonless model to be switched to");
    // And one through the engine (bollard pushes it).
    let (model_c, version_c) = relabelled_model(device.dir.path(), "c");
    let digest_c = device.ship_model(&model_c, true);
    device.wait_known_good(&digest_c, &version_c, "the engine-built model to be switched to");
    let committed = device.state()["previous"].as_str().map(str::to_owned);
    assert_eq!(committed.as_deref(), Some(digest_b.as_str()), "previous is the one before");

    // 3. A corrupt model: rolled back, refused, not tried again.
    let corrupt = push_corrupt_model(&device);
    device.agent_wait(Duration::from_secs(120), "the corrupt image to be refused", |d| {
        d.state()["refused"].as_array()?.iter().any(|r| r[0] == corrupt.as_str()).then_some(())
    });
    device.wait_known_good(&digest_c, &version_c, "the previous model back after the corrupt one");
    let switches = device.agent_metric("agent_switches_total");
    let polls = device.agent_metric("agent_polls_total");
    device.agent_wait(Duration::from_secs(30), "five more polls", |d| {
        (d.agent_metric("agent_polls_total") >= polls + 5.0).then_some(())
    });
    assert_eq!(device.agent_metric("agent_switches_total"), switches, "the refused digest is not tried again");
    let refused = &device.state()["refused"];
    let reason = refused[0][1]["reason"].as_str().unwrap_or_default().to_owned();
    assert!(reason.contains("exited") || reason.contains("unhealthy"), "why: {refused}");

    // 4. A model 2 kW off: healthy, predicting, but worse: rolled back by the soak.
    let (biased, _) = biased_model(device.dir.path());
    let biased_digest = device.ship_model(&biased, false);
    device.agent_wait(Duration::from_secs(120), "the biased model to be refused", |d| {
        d.state()["refused"].as_array()?.iter().any(|r| r[0] == biased_digest.as_str()).then_some(())
    });
    let reason = device.state()["refused"][1][1]["reason"].as_str().unwrap_or_default().to_owned();
    assert!(reason.contains("predicts worse"), "rolled back by the soak: {reason}");
    device.wait_known_good(&digest_c, &version_c, "the previous model back after the biased one");

    // An image for another platform (an arm64 base): refused before anything
    // is stopped; the running predictor is left alone.
    let arm64_base = format!("{}/gridcast/predictor:base-arm64", device.registry.addr());
    let elf = arm64_elf(device.dir.path());
    shipped(&ship(&["base", "--binary", &elf, "--image", &arm64_base], &[], device.dir.path()));
    let (model_e, _) = relabelled_model(device.dir.path(), "e");
    let model_e = model_e.to_str().unwrap().to_owned();
    let args = ["model", "--model", &model_e, "--base", &arm64_base, "--image", &device.stable];
    let arm64_digest = shipped(&ship(&args, &[], device.dir.path())).0;
    let starts = device.agent_metric("agent_starts_total");
    device.agent_wait(Duration::from_secs(60), "the arm64 image to be refused", |d| {
        d.state()["refused"].as_array()?.iter().any(|r| r[0] == arm64_digest.as_str()).then_some(())
    });
    let reason = device.state()["refused"][2][1]["reason"].as_str().unwrap_or_default().to_owned();
    assert!(reason.contains("an image for linux/arm64, not linux/amd64"), "{reason}");
    assert_eq!(device.agent_metric("agent_starts_total"), starts, "nothing was stopped or started");
    device.wait_known_good(&digest_c, &version_c, "the model before the arm64 image still serving");

    // The registry down: polls fail (counted), the predictor is left alone.
    let failures = device.agent_metric("agent_poll_failures_total");
    device.registry.stop();
    device.agent_wait(Duration::from_secs(30), "three failed polls", |d| {
        (d.agent_metric("agent_poll_failures_total") >= failures + 3.0).then_some(())
    });
    assert_eq!(device.agent_metric("agent_starts_total"), starts, "the predictor was left alone");
    assert_eq!(device.serving().as_deref(), Some(version_c.as_str()));
    assert!(device.agent().log().contains("cannot read the tag's digest"));
    device.registry.restart();
    assert_eq!(device.agent_metric("agent_rollbacks_total"), 3.0, "corrupt, biased, arm64");

    // 5. SIGKILL mid-switch: restarted, the agent finishes the switch.
    let (model_d, version_d) = relabelled_model(device.dir.path(), "d");
    let digest_d = device.ship_model(&model_d, false);
    device.agent_wait(Duration::from_secs(60), "a switch to the fourth model", |d| {
        (d.state()["trial"]["digest"].as_str() == Some(digest_d.as_str())).then_some(())
    });
    device.agent().kill();
    // Leave the device as a kill between creating the new container and
    // starting it does (the engine reports that one stopped, exit code 0):
    // it never ran, so it is no reason to refuse the image.
    let image = format!("{}@{digest_d}", device.stable.rsplit_once(':').unwrap().0);
    let label = format!("io.gridcast.agent.digest={digest_d}");
    device.engine.docker_ok(&["rm", "-f", &device.container]);
    device.engine.docker_ok(&["create", "--name", &device.container, "--label", &label, "--network", "host", &image]);
    device.agent().restart();
    device.wait_known_good(&digest_d, &version_d, "the switch finished after the agent's restart");
    assert!(device.agent().log().contains("agent state loaded"));

    // No interval went unpredicted across the switches and rollbacks.
    let sensor = meter.sensor.clone();
    let intervals = device.predicted_intervals(&sensor);
    let (first, last) = (*intervals.first().unwrap(), *intervals.last().unwrap());
    let missing: Vec<i64> =
        (0..).map(|i| first + i * 60_000).take_while(|t| *t <= last).filter(|t| !intervals.contains(t)).collect();
    assert!(missing.is_empty(), "intervals without a prediction: {missing:?} (of {})", intervals.len());
    assert!(intervals.len() > 60, "{} intervals predicted", intervals.len());
    drop(meter);

    // Deploy events, for Grafana: the three rollbacks are in InfluxDB.
    let q = format!("SELECT reason FROM gridcast_deploy WHERE device = '{}' AND event = 'rollback'", device.device);
    let rollbacks = support::eventually(Duration::from_secs(30), "deploy events in InfluxDB", || {
        let rows = influxql_values(&device.servers.influxdb_v1, INFLUX_DB, &q);
        (rows.len() >= 3).then_some(rows)
    });
    assert_eq!(rollbacks.len(), 3, "{rollbacks:?}");
}
