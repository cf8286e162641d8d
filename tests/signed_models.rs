//! Signed models end to end, on real servers (Mosquitto, InfluxDB 1.x): the
//! real `gridcast` binary makes two key pairs and signs models
//! (`gridcast model keygen|sign`); a running `gridcast predict` that trusts
//! one public key (`[predict] trusted_keys_file`) serves a model signed by
//! it, refuses an unsigned model, one signed by the other key and one whose
//! payload was changed after signing (each counted on `/metrics` under its
//! reason and logged), keeps serving the old model all the while (`/health`
//! unchanged, predictions go on), then swaps in a new correctly signed one.
//! A predictor that trusts the key also starts on the shipped default model,
//! and refuses to start on an unsigned one. And `gridcast agent` with the
//! same trusted key, on a real registry and Docker engine, refuses images
//! whose model (`gridcast ship model`, signed with `--signing-key-file` or
//! `GRIDCAST_SIGNING_KEY_FILE`) is unsigned or signed by the other key before
//! it pulls or stops anything, and goes on to pull the correctly signed one.
//!
//! Every wait is for a condition, never a fixed sleep.
//!
//! Needs the shared test servers: run `scripts/test`, or
//! `scripts/test-servers start && source target/test-servers/env`.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use gridcast_core::model::Model;
use gridcast_simulator::{PublishOptions, PublishReport, SimReading};
use sha2::Digest;

use support::dockerd::Dockerd;
use support::gridcast::{GridcastProcess, PredictToml, model_version, shipped_model};
use support::image::{ship, shipped, tiny_elf};
use support::meter::{publish_in_background, simulated_readings};
use support::registry::Registry;
use support::{
    INFLUX_DB, SharedServers, command_output, eventually, free_port, influxql_values, shared_servers, unique,
};

const SENSORS: u32 = 2;
const MINUTES: usize = 20;

/// `gridcast ARGS`, which must succeed; its stdout.
fn gridcast(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_gridcast")).args(args).output().unwrap();
    assert!(out.status.success(), "gridcast {args:?}: {}", command_output(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// A key pair under `dir`: (private key file, public key file).
fn keygen(dir: &Path) -> (PathBuf, PathBuf) {
    let printed = gridcast(&["model", "keygen", "--out", &dir.display().to_string()]);
    let public = dir.join("signing.pub");
    assert_eq!(printed.trim(), std::fs::read_to_string(&public).unwrap().trim());
    (dir.join("signing.key"), public)
}

/// The shipped model with its base score moved by `watts`: a valid model
/// of another version.
fn variant(watts: f32) -> Vec<u8> {
    let shipped = Model::from_bytes(&std::fs::read(shipped_model()).unwrap()).unwrap();
    let mut meta = shipped.meta.clone();
    meta.base_score += watts;
    Model::new(meta, shipped.trees().to_vec()).unwrap().to_bytes()
}

/// `bytes` signed with the private key `key` by `gridcast model sign`.
fn signed(bytes: &[u8], key: &Path, dir: &Path) -> Vec<u8> {
    let path = dir.join(format!("{}.gcm", unique("to-sign")));
    std::fs::write(&path, bytes).unwrap();
    gridcast(&["model", "sign", "--key-file", &key.display().to_string(), &path.display().to_string()]);
    std::fs::read(&path).unwrap()
}

/// A signed file whose payload was edited after signing, its length and
/// checksum fixed up to match: only the signature can tell.
fn tampered(signed: &[u8]) -> Vec<u8> {
    let text = String::from_utf8(signed.to_vec()).unwrap();
    let (header, payload) = text.split_once('\n').unwrap();
    let payload = payload.replacen("\"base_score\":", "\"base_score\":1", 1);
    let mut header: serde_json::Value = serde_json::from_str(header).unwrap();
    header["payload_len"] = payload.len().into();
    header["payload_sha256"] = hex::encode(sha2::Sha256::digest(payload.as_bytes())).into();
    let file = format!("{header}\n{payload}").into_bytes();
    Model::from_bytes(&file).expect("the tampered file is a valid model by its checksum");
    file
}

fn replace_file(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

struct Predictor {
    servers: SharedServers,
    process: GridcastProcess,
    http_port: u16,
    topic_prefix: String,
    measurement: String,
}

impl Predictor {
    /// Write the config and start `gridcast predict` on `model`, trusting the
    /// keys in `trusted_keys_file` (through the environment, as a container would).
    fn start(dir: &Path, model: &Path, trusted_keys_file: &Path) -> Predictor {
        let servers = shared_servers();
        let http_port = free_port();
        let topic_prefix = unique("signed/raw");
        let measurement = unique("signed_prediction");
        let mut config = PredictToml::new(&servers, dir, &format!("{topic_prefix}/#"), INFLUX_DB);
        config.model = model.display().to_string();
        config.model_poll_secs = 1;
        config.measurement = measurement.clone();
        config.http_listen = format!("127.0.0.1:{http_port}");
        let keys = trusted_keys_file.display().to_string();
        let process = GridcastProcess::start(
            "predict",
            dir,
            &config.to_toml(),
            &[("GRIDCAST_PREDICT__TRUSTED_KEYS_FILE", keys.as_str())],
        );
        Predictor { servers, process, http_port, topic_prefix, measurement }
    }

    /// Calls `attempt` every 100 ms until it returns `Some`; panics with the
    /// log if the predictor exits or `timeout` passes first.
    fn wait_for<T>(&mut self, timeout: Duration, what: &str, mut attempt: impl FnMut(&Predictor) -> Option<T>) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            self.process.assert_running();
            if let Some(value) = attempt(self) {
                return value;
            }
            assert!(Instant::now() < deadline, "gave up after {timeout:?} waiting for {what}:\n{}", self.process.log());
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn metrics(&self) -> BTreeMap<String, f64> {
        support::http::gridcast_metrics(self.http_port).unwrap_or_default()
    }

    fn metric(&self, name: &str) -> f64 {
        self.metrics().get(name).copied().unwrap_or(-1.0)
    }

    fn signature_rejects(&self, reason: &str) -> f64 {
        self.metric(&format!("model_signature_rejects_total{{reason=\"{reason}\"}}"))
    }

    /// `/health`'s body (Null while it is not up).
    fn health(&self) -> serde_json::Value {
        support::http::request("GET", &format!("http://127.0.0.1:{}/health", self.http_port), &[], b"")
            .ok()
            .and_then(|r| serde_json::from_slice(&r.body).ok())
            .unwrap_or(serde_json::Value::Null)
    }

    fn serving(&self) -> String {
        self.health()["model_version"].as_str().unwrap_or_default().to_string()
    }

    fn publish(&self, readings: Vec<SimReading>, speedup: f64) -> thread::JoinHandle<PublishReport> {
        let options = PublishOptions {
            host: "127.0.0.1".into(),
            port: self.servers.mqtt.port(),
            client_id: unique("signed-meter"),
            topic_prefix: self.topic_prefix.clone(),
            speedup,
            ..PublishOptions::default()
        };
        publish_in_background(options, readings)
    }

    /// The `model` tag of every prediction row.
    fn row_models(&self) -> Vec<String> {
        influxql_values(
            &self.servers.influxdb_v1,
            INFLUX_DB,
            &format!(r#"SELECT "model", "predicted" FROM "{}""#, self.measurement),
        )
        .into_iter()
        .map(|row| row[1].as_str().unwrap().to_string())
        .collect()
    }
}

#[test]
fn a_predictor_with_a_trusted_key_refuses_unsigned_and_wrongly_signed_models_and_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (ours, ours_public) = keygen(&dir.path().join("ours"));
    let (theirs, _) = keygen(&dir.path().join("theirs"));
    let first = signed(&variant(5.0), &ours, dir.path());
    let model_path = dir.path().join("current.gcm");
    std::fs::write(&model_path, &first).unwrap();

    let mut p = Predictor::start(dir.path(), &model_path, &ours_public);
    p.process.wait_subscribed(1);
    let first_version = model_version(&first);
    let health = p.health();
    assert_eq!(health["model_version"], first_version.as_str(), "{health}");
    let key_id = &std::fs::read_to_string(&ours_public).unwrap()[..16];
    assert_eq!(health["model_provenance"], format!("signed by {key_id}").as_str(), "{health}");

    // The first half of the readings, as fast as they go: predictions with the first model.
    let readings = simulated_readings(SENSORS, MINUTES);
    let start = readings.iter().map(|r| r.ts_secs).fold(f64::INFINITY, f64::min);
    let half = start + (MINUTES / 2) as f64 * 60.0;
    let (first_half, second_half): (Vec<SimReading>, Vec<SimReading>) =
        readings.into_iter().partition(|r| r.ts_secs < half);
    let report = p.publish(first_half, 0.0).join().unwrap();
    assert_eq!(report.messages_acked, report.messages_published);
    p.wait_for(Duration::from_secs(60), "predictions with the first model", |p| {
        (p.metric("predictions_total") >= 2.0 * SENSORS as f64).then_some(())
    });

    // Three models the predictor must refuse, each for its own reason.
    let unsigned = variant(10.0);
    let by_another_key = signed(&variant(15.0), &theirs, dir.path());
    let changed_after_signing = tampered(&signed(&variant(20.0), &ours, dir.path()));
    for (bytes, reason, logged) in [
        (&unsigned, "unsigned", "the model is not signed"),
        (&by_another_key, "untrusted_key", "which is not one of the trusted keys"),
        (&changed_after_signing, "bad_signature", "does not verify"),
    ] {
        replace_file(&model_path, bytes);
        p.wait_for(Duration::from_secs(30), &format!("a model refused as {reason}"), |p| {
            (p.signature_rejects(reason) == 1.0).then_some(())
        });
        assert_eq!(p.serving(), first_version, "the first model keeps serving");
        let log = p.process.log();
        assert!(log.contains(logged) && log.contains(&format!("reason=\"{reason}\"")), "{log}");
    }
    assert_eq!(p.metric("model_rejects_total"), 3.0);
    assert_eq!(p.metric("model_reloads_total"), 0.0);
    assert!(p.process.log().contains("not signed by a trusted key"), "{}", p.process.log());

    // Predictions go on with the first model after the refusals.
    let predicted = p.metric("predictions_total");
    let publisher = p.publish(second_half, 40.0);
    p.wait_for(Duration::from_secs(60), "predictions after the refusals", |p| {
        (p.metric("predictions_total") > predicted).then_some(())
    });
    assert_eq!(p.serving(), first_version);

    // A new model signed by the trusted key is swapped in.
    let next = signed(&variant(-5.0), &ours, dir.path());
    replace_file(&model_path, &next);
    p.wait_for(Duration::from_secs(30), "the correctly signed model swapped in", |p| {
        (p.serving() == model_version(&next)).then_some(())
    });
    assert_eq!(p.metric("model_reloads_total"), 1.0);
    assert_eq!(p.metric("model_rejects_total"), 3.0, "nothing else refused");
    let report = publisher.join().unwrap();
    assert_eq!(report.messages_acked, report.messages_published);

    // Every interval was predicted, by the first model or the last, never by a refused one.
    let all = SENSORS as f64 * MINUTES as f64;
    p.wait_for(Duration::from_secs(60), "a prediction for every interval", |p| {
        (p.metric("predictions_total") == all).then_some(())
    });
    let judged = SENSORS as usize * (MINUTES - 1);
    let models = eventually(Duration::from_secs(30), "every judged prediction in InfluxDB", || {
        let rows = p.row_models();
        (rows.len() == judged).then_some(rows)
    });
    let models: BTreeSet<String> = models.into_iter().collect();
    let expected = BTreeSet::from([first_version[..16].to_string(), model_version(&next)[..16].to_string()]);
    assert!(models.is_subset(&expected) && models.contains(&first_version[..16]), "{models:?}");
    assert_eq!(p.metric("unjudged_total"), 0.0, "a prediction was dropped");
}

#[test]
fn with_a_trusted_key_the_shipped_default_starts_and_an_unsigned_model_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let (_, public) = keygen(&dir.path().join("keys"));

    let default_dir = dir.path().join("default");
    std::fs::create_dir_all(&default_dir).unwrap();
    let mut p = Predictor::start(&default_dir, &shipped_model(), &public);
    p.wait_for(Duration::from_secs(30), "the shipped default served", |p| {
        let health = p.health();
        (health["model_provenance"] == "the shipped default").then_some(())
    });
    drop(p);

    let unsigned_dir = dir.path().join("unsigned");
    std::fs::create_dir_all(&unsigned_dir).unwrap();
    let model = unsigned_dir.join("model.gcm");
    std::fs::write(&model, variant(3.0)).unwrap();
    let servers = shared_servers();
    let mut config = PredictToml::new(&servers, &unsigned_dir, &format!("{}/#", unique("signed/none")), INFLUX_DB);
    config.model = model.display().to_string();
    let config_path = unsigned_dir.join("predict.toml");
    std::fs::write(&config_path, config.to_toml()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gridcast"))
        .args(["predict", "--config"])
        .arg(&config_path)
        .env("GRIDCAST_PREDICT__TRUSTED_KEYS_FILE", &public)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", command_output(&out));
    assert!(stderr.contains("refused") && stderr.contains("the model is not signed"), "{stderr}");
}

#[test]
fn the_agent_refuses_an_image_whose_model_is_not_signed_by_its_keys_before_pulling_it() {
    // Short: dockerd's and containerd's sockets live under it.
    let dir = tempfile::Builder::new().prefix("gcs").tempdir_in("/tmp").unwrap();
    let registry = Registry::start(dir.path().join("registry"));
    let engine_dir = dir.path().join("d");
    std::fs::create_dir(&engine_dir).unwrap();
    let engine = Dockerd::start(&engine_dir);
    let base = format!("{}/gridcast/predictor:base", registry.addr());
    let stable = format!("{}/gridcast/predictor:stable", registry.addr());
    // A base that is an image, not a program: the signed image is pulled and
    // then fails to run, which is all this test needs to see.
    shipped(&ship(&["base", "--binary", &tiny_elf(dir.path()), "--image", &base], &[], dir.path()));
    let (ours, ours_public) = keygen(&dir.path().join("ours"));
    let (theirs, _) = keygen(&dir.path().join("theirs"));
    let ship_model = |name: &str, extra: &[&str], env: &[(&str, &str)]| {
        let model = dir.path().join(format!("{name}.gcm"));
        std::fs::write(&model, variant(name.len() as f32)).unwrap();
        let model = model.display().to_string();
        let mut args = vec!["model", "--model", model.as_str(), "--base", base.as_str(), "--image", stable.as_str()];
        args.extend(extra);
        shipped(&ship(&args, env, dir.path())).0
    };

    let unsigned = ship_model("unsigned", &[], &[]);
    let config = format!(
        r#"
[agent]
image = "{stable}"
poll_secs = 1
state_dir = "{dir}/agent-state"
docker_host = "{host}"
trusted_keys_file = "{keys}"

[container]
name = "{name}"
binds = []

[soak]
health_timeout_secs = 5

[http]
listen = ""
"#,
        dir = dir.path().display(),
        host = engine.host(),
        keys = ours_public.display(),
        name = unique("gridcast-predict"),
    );
    let mut agent = GridcastProcess::start("agent", dir.path(), &config, &[]);
    let state_file = dir.path().join("agent-state/state.json");
    let refusal = |digest: &str| -> Option<String> {
        let state: serde_json::Value = serde_json::from_slice(&std::fs::read(&state_file).ok()?).ok()?;
        let refused = state["refused"].as_array()?;
        let entry = refused.iter().find(|r| r[0] == digest)?;
        Some(entry[1]["reason"].as_str()?.to_owned())
    };
    let reason = agent.wait_for(Duration::from_secs(60), "the unsigned image refused", || refusal(&unsigned));
    assert!(reason.contains("its model is refused: the model is not signed"), "{reason}");

    let theirs_arg = theirs.display().to_string();
    let by_another_key = ship_model("by another key", &["--signing-key-file", &theirs_arg], &[]);
    let reason =
        agent.wait_for(Duration::from_secs(60), "the image signed by another key refused", || refusal(&by_another_key));
    assert!(reason.contains("which is not one of the trusted keys"), "{reason}");
    assert!(!agent.log().contains("pulling and starting"), "nothing pulled:\n{}", agent.log());

    let ours_env = ours.display().to_string();
    let signed = ship_model("signed", &[], &[("GRIDCAST_SIGNING_KEY_FILE", ours_env.as_str())]);
    let agent_log = dir.path().join("agent.log");
    agent.wait_for(Duration::from_secs(60), "the correctly signed image pulled", || {
        let log = std::fs::read_to_string(&agent_log).unwrap_or_default();
        (log.contains("the image's model is trusted") && log.contains(&format!("@{signed}"))).then_some(())
    });
    let log = agent.log();
    assert!(log.contains("pulling and starting"), "{log}");
    if let Some(reason) = refusal(&signed) {
        assert!(!reason.contains("signed") && !reason.contains("signature"), "not for its signature: {reason}");
    }
}
