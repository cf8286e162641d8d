//! `gridcast ingest` and `gridcast predict` as child processes, for the
//! tests that kill them: the binary cargo built for this test run, a config
//! file written here, and its log beside it. Drop kills the process (ours
//! only, by its handle). Also the predictor's test config and model helpers.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::SharedServers;

/// A `gridcast` subcommand (`ingest`, `predict`) as a child process.
pub struct GridcastProcess {
    subcommand: &'static str,
    config: PathBuf,
    log: PathBuf,
    env: Vec<(String, String)>,
    /// Run inside this network namespace (`ip netns exec`), if set.
    netns: Option<String>,
    child: Option<Child>,
}

impl GridcastProcess {
    /// Write `config_toml` under `dir` and start `gridcast <subcommand>` on
    /// it, with `env` added to its environment (object-store credentials).
    pub fn start(subcommand: &'static str, dir: &Path, config_toml: &str, env: &[(&str, &str)]) -> GridcastProcess {
        Self::start_in(None, subcommand, dir, config_toml, env)
    }

    /// As [`GridcastProcess::start`], inside network namespace `netns` if
    /// given (`ip netns exec`, which execs: the child is gridcast itself).
    pub fn start_in(
        netns: Option<&str>,
        subcommand: &'static str,
        dir: &Path,
        config_toml: &str,
        env: &[(&str, &str)],
    ) -> GridcastProcess {
        let config = dir.join(format!("{subcommand}.toml"));
        std::fs::write(&config, config_toml).expect("write the config");
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let log = dir.join(format!("{subcommand}.log"));
        let netns = netns.map(str::to_owned);
        let mut process = GridcastProcess { subcommand, config, log, env, netns, child: None };
        process.spawn();
        process
    }

    fn spawn(&mut self) {
        let log = OpenOptions::new().create(true).append(true).open(&self.log).expect("open the log");
        let mut command = match &self.netns {
            Some(netns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", netns.as_str(), env!("CARGO_BIN_EXE_gridcast")]);
                command
            }
            None => Command::new(env!("CARGO_BIN_EXE_gridcast")),
        };
        let child = command
            .arg(self.subcommand)
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start gridcast {}: {e}", self.subcommand));
        self.child = Some(child);
    }

    /// Wait until its log says the broker confirmed the subscriptions
    /// `times` times in all (once per start), so nothing published after
    /// this is missed.
    pub fn wait_subscribed(&mut self, times: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.log().matches(" subscribed").count() < times {
            self.assert_running();
            assert!(Instant::now() < deadline, "gridcast {} never subscribed:\n{}", self.subcommand, self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no flush, no goodbye, as a power cut.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start it again on the same config and spools.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Its log so far, for assertion messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics, with the log, if it exited on its own.
    pub fn assert_running(&mut self) {
        if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
            panic!("gridcast {} exited ({status}):\n{}", self.subcommand, self.log());
        }
    }

    /// Calls `attempt` every 100 ms until it returns `Some`, and returns
    /// that, like [`super::eventually`]; panics with the log if the
    /// process exits or `timeout` passes first.
    pub fn wait_for<T>(&mut self, timeout: Duration, what: &str, mut attempt: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            self.assert_running();
            if let Some(value) = attempt() {
                return value;
            }
            assert!(Instant::now() < deadline, "gave up after {timeout:?} waiting for {what}:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for GridcastProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The shipped model, `models/default.gcm`.
pub fn shipped_model() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/default.gcm")
}

/// A champion barely better than persistence (one small tree, trained on
/// the shipped sample), written to `path`: a retrain on that sample beats
/// it and ships. Returns its bytes.
pub fn weak_champion(path: &Path) -> Vec<u8> {
    use gridcast_core::features::{FeatureSpec, FeatureTable};
    use gridcast_trainer::{data, gbdt::TrainParams, pipeline};
    let series = data::load_intervals(&super::meter::sample_csv(), 60).unwrap();
    let spec = FeatureSpec::default();
    let table = FeatureTable::build(&spec, &series[..5000]).unwrap();
    let params =
        TrainParams { n_trees: 1, learning_rate: 0.01, early_stopping_rounds: 0, threads: 1, ..Default::default() };
    let (model, _) = pipeline::fit(&spec, &table, &table.labelled_rows(), &params, &mut |_, _| {}).unwrap();
    let bytes = model.to_bytes();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, &bytes).unwrap();
    bytes
}

/// A model file's version: the sha256 of its payload, from its header line.
pub fn model_version(bytes: &[u8]) -> String {
    let header = &bytes[..bytes.iter().position(|&b| b == b'\n').expect("a model header line")];
    let header: serde_json::Value = serde_json::from_slice(header).expect("a JSON model header");
    header["payload_sha256"].as_str().expect("payload_sha256 in the model header").to_string()
}

/// The `model` tag `gridcast predict` writes for the model file at `path`:
/// the first 16 hex digits of its version.
pub fn model_tag(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    model_version(&bytes)[..16].to_string()
}

/// A `gridcast predict` config for tests: readings from the shared
/// Mosquitto on `topic_filter`, the shipped model, predictions to the shared
/// InfluxDB 1.x database `database` (which must exist), the absolute rule at
/// 50 W (household minutes cross it often, so some predictions are
/// mispredicted), uploads retried every 200 ms to 2 s. The defaults of
/// [`PredictToml::new`] suit tests that need its InfluxDB output but no
/// particular blob store; tests change the fields before [`PredictToml::to_toml`].
pub struct PredictToml {
    pub mqtt: std::net::SocketAddr,
    pub client_id: String,
    pub topic_filter: String,
    /// A path or an object-store URL.
    pub model: String,
    pub model_poll_secs: u64,
    pub measurement: String,
    pub idle_close_secs: u64,
    pub spool: PathBuf,
    /// `[spool] max_bytes`: what may wait for the sinks and the store.
    pub spool_max_bytes: u64,
    /// `[http] listen`; empty: no HTTP server.
    pub http_listen: String,
    pub influx: String,
    pub database: String,
    /// The `[upload]` keys besides batching and retries (`url` and options last).
    pub upload: String,
}

impl PredictToml {
    /// The measurement `gridcast_prediction`, an interval closed after 2 s
    /// without readings, spools and a `file://` triplet store under `dir`,
    /// no HTTP server.
    pub fn new(servers: &SharedServers, dir: &Path, topic_filter: &str, database: &str) -> PredictToml {
        PredictToml {
            mqtt: servers.mqtt,
            client_id: super::unique("predict"),
            topic_filter: topic_filter.to_string(),
            model: shipped_model().display().to_string(),
            model_poll_secs: 5,
            measurement: "gridcast_prediction".into(),
            idle_close_secs: 2,
            spool: dir.join("predict-spool"),
            spool_max_bytes: 256 << 20,
            http_listen: String::new(),
            influx: servers.influxdb_v1.clone(),
            database: database.to_string(),
            upload: format!("url = \"file://{}\"\n", dir.join("triplets").display()),
        }
    }

    pub fn to_toml(&self) -> String {
        format!(
            r#"
[mqtt]
host = "{host}"
port = {port}
client_id = "{client_id}"
topics = ["{topic_filter}"]

[predict]
model = "{model}"
model_poll_secs = {model_poll_secs}
measurement = "{measurement}"
idle_close_secs = {idle_close_secs}
stats_interval_secs = 2

[judge]
rule = "absolute"
threshold_w = 50.0

[spool]
dir = "{spool}"
max_bytes = {spool_max_bytes}

[http]
listen = "{http_listen}"

[[sinks]]
kind = "influxdb_v1"
url = "{influx}"
database = "{database}"

[upload]
batch_interval_secs = 1
retry_min_ms = 200
retry_max_ms = 2000
{upload}"#,
            host = self.mqtt.ip(),
            port = self.mqtt.port(),
            client_id = self.client_id,
            topic_filter = self.topic_filter,
            model = self.model,
            model_poll_secs = self.model_poll_secs,
            measurement = self.measurement,
            idle_close_secs = self.idle_close_secs,
            spool = self.spool.display(),
            spool_max_bytes = self.spool_max_bytes,
            http_listen = self.http_listen,
            influx = self.influx,
            database = self.database,
            upload = self.upload,
        )
    }
}

/// `gridcast ingest`'s config for a test: the broker at `mqtt`, its own
/// client id, `topics`, windows to `measurement` closed after `idle_close_secs`
/// without readings, the spool under the test's folder, `/metrics` on a free
/// port, and the `[[sinks]]` tables in `sinks`. The `*_extra` fields add
/// TOML lines to a section, `sections` whole sections (`[decode]`, `[window]`).
pub struct IngestToml {
    pub mqtt: std::net::SocketAddr,
    pub client_id: String,
    pub topics: Vec<String>,
    pub mqtt_extra: String,
    pub sections: String,
    pub measurement: String,
    pub idle_close_secs: u64,
    pub pipeline_extra: String,
    pub spool: PathBuf,
    pub http_listen: String,
    pub sinks: String,
}

impl IngestToml {
    /// Reconnects within a second, windows closed after 2 s of silence, a
    /// summary line every 2 s, the spool in `dir/spool`; no sink yet.
    pub fn new(mqtt: std::net::SocketAddr, dir: &Path, topic: &str, measurement: &str) -> IngestToml {
        IngestToml {
            mqtt,
            client_id: super::unique("ingest"),
            topics: vec![topic.to_string()],
            mqtt_extra: "reconnect_max_ms = 1000\n".into(),
            sections: String::new(),
            measurement: measurement.to_string(),
            idle_close_secs: 2,
            pipeline_extra: "stats_interval_secs = 2\n".into(),
            spool: dir.join("spool"),
            http_listen: "127.0.0.1:0".into(),
            sinks: String::new(),
        }
    }

    /// An `influxdb_v1` sink table, `extra` lines added to it.
    pub fn influxdb_v1(url: &str, database: &str, extra: &str) -> String {
        format!("\n[[sinks]]\nkind = \"influxdb_v1\"\nurl = \"{url}\"\ndatabase = \"{database}\"\n{extra}")
    }

    pub fn to_toml(&self) -> String {
        let topics: Vec<String> = self.topics.iter().map(|t| format!("{t:?}")).collect();
        format!(
            "[mqtt]\nhost = \"{host}\"\nport = {port}\nclient_id = \"{client_id}\"\ntopics = [{topics}]\n{mqtt_extra}\n\
             {sections}\n[pipeline]\nidle_close_secs = {idle}\nmeasurement = \"{measurement}\"\n{pipeline_extra}\n\
             [spool]\ndir = \"{spool}\"\n\n[http]\nlisten = \"{listen}\"\n{sinks}",
            host = self.mqtt.ip(),
            port = self.mqtt.port(),
            client_id = self.client_id,
            topics = topics.join(", "),
            mqtt_extra = self.mqtt_extra,
            sections = self.sections,
            idle = self.idle_close_secs,
            measurement = self.measurement,
            pipeline_extra = self.pipeline_extra,
            spool = self.spool.display(),
            listen = self.http_listen,
            sinks = self.sinks,
        )
    }
}
