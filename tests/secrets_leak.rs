//! Secrets never leak: every service run at `RUST_LOG=debug` (its own logs
//! and every library's) with known secrets in its config and environment:
//! MQTT and InfluxDB passwords, an InfluxDB token, S3 keys, a registry
//! password, a password in the agent's container environment, a model
//! signing key (retrain and ship load it, then fail). All output
//! (logs, errors, `--print-config`) is searched for each secret, whether the
//! run works (ingest and predict on the real servers) or fails (a registry,
//! an InfluxDB or an engine that is not there). `--print-config` shows `***`.
//!
//! Needs the shared test servers: run `scripts/test`, or
//! `scripts/test-servers start && source target/test-servers/env`.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use gridcast_simulator::{PublishOptions, publish};

use support::blob::{BUCKET, Blob};
use support::gridcast::{GridcastProcess, IngestToml, PredictToml, shipped_model};
use support::{INFLUX_DB, SharedServers, free_port, influx_create_database, influxql_values, shared_servers, unique};

const MQTT_PASSWORD: &str = "mqtt-pw-LEAKCHECK1";
const INFLUX_PASSWORD: &str = "influx-pw-LEAKCHECK2";
const INFLUX_TOKEN: &str = "influx-token-LEAKCHECK3";
const S3_SECRET: &str = "s3-secret-LEAKCHECK4";
const REGISTRY_PASSWORD: &str = "registry-pw-LEAKCHECK5";
const CONTAINER_PASSWORD: &str = "container-pw-LEAKCHECK6";
/// A model signing key (`GRIDCAST_SIGNING_KEY`): 64 hex digits, so it loads.
const SIGNING_KEY: &str = "1eac4ec7000000000000000000000000000000000000000000000000000000a7";
const SECRETS: [&str; 7] =
    [MQTT_PASSWORD, INFLUX_PASSWORD, INFLUX_TOKEN, S3_SECRET, REGISTRY_PASSWORD, CONTAINER_PASSWORD, SIGNING_KEY];

fn assert_no_secret(what: &str, text: &str) {
    assert!(!text.is_empty(), "{what}: no output to check");
    for secret in SECRETS {
        assert!(!text.contains(secret), "{what} shows the secret {secret}:\n{text}");
    }
    eprintln!("{what}: {} lines, {} bytes, no secret", text.lines().count(), text.len());
}

/// `gridcast <args>` to its end, at debug level, with `env`; all its output.
fn run(args: &[&str], env: &[(&str, &str)]) -> String {
    run_until(args, env, |_| false)
}

/// `gridcast <args>` at debug level until it ends, or until its output so
/// far satisfies `enough` (then it is killed; a service retrying a server
/// that is not there runs for ever); all its output.
fn run_until(args: &[&str], env: &[(&str, &str)], enough: impl Fn(&str) -> bool) -> String {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("out.log");
    let file = std::fs::File::create(&log).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gridcast"))
        .args(args)
        .env("RUST_LOG", "debug")
        .env("NO_COLOR", "1")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .expect("run gridcast");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let done = child.try_wait().unwrap().is_some();
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if done || enough(&text) {
            let _ = child.kill();
            let _ = child.wait();
            return std::fs::read_to_string(&log).unwrap_or_default();
        }
        assert!(std::time::Instant::now() < deadline, "gridcast {args:?} neither ended nor showed enough:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn ingest_toml(servers: &SharedServers, dir: &Path, topic_prefix: &str, measurement: &str, influx: &str) -> String {
    let mut config = IngestToml::new(servers.mqtt, dir, &format!("{topic_prefix}/#"), measurement);
    config.mqtt_extra = format!("username = \"gridcast\"\npassword = \"{MQTT_PASSWORD}\"\n");
    config.sinks = IngestToml::influxdb_v1(
        influx,
        INFLUX_DB,
        &format!("username = \"gridcast\"\npassword = \"{INFLUX_PASSWORD}\"\n"),
    ) + &format!(
        "\n[[sinks]]\nkind = \"influxdb_v2\"\nurl = \"{}\"\norg = \"gridcast\"\nbucket = \"gridcast\"\ntoken = \"{INFLUX_TOKEN}\"\n",
        servers.victoria
    );
    config.to_toml()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_service_prints_a_secret_at_debug_level_working_or_failing() {
    let servers = shared_servers();
    let dir = tempfile::tempdir().unwrap();
    let topic_prefix = unique("leak");
    let measurement = unique("leak_meter");
    let database = unique("leak_predictions");
    influx_create_database(&servers.influxdb_v1, &database);

    // Ingest and predict, working, on the real servers.
    let ingest_config = ingest_toml(&servers, dir.path(), &topic_prefix, &measurement, &servers.influxdb_v1);
    let ingest_dir = dir.path().join("ingest");
    std::fs::create_dir_all(&ingest_dir).unwrap();
    let debug = [("RUST_LOG", "debug")];
    let mut ingest = tokio::task::block_in_place(|| {
        let mut ingest = GridcastProcess::start("ingest", &ingest_dir, &ingest_config, &debug);
        ingest.wait_subscribed(1);
        ingest
    });
    let mut predict_toml = PredictToml::new(&servers, dir.path(), &format!("{topic_prefix}/raw/#"), &database);
    let s3 = Blob::shared_s3()
        .upload_toml()
        .replace("aws_secret_access_key = \"test\"", &format!("aws_secret_access_key = \"{S3_SECRET}\""));
    assert!(s3.contains(S3_SECRET));
    predict_toml.upload = s3;
    let predict_config = predict_toml.to_toml();
    let predict_env =
        [("RUST_LOG", "debug"), ("GRIDCAST_MQTT__USERNAME", "gridcast"), ("GRIDCAST_MQTT__PASSWORD", MQTT_PASSWORD)];
    let mut predict = tokio::task::block_in_place(|| {
        let mut predict = GridcastProcess::start("predict", dir.path(), &predict_config, &predict_env);
        predict.wait_subscribed(1);
        predict
    });
    let options = PublishOptions {
        host: servers.mqtt.ip().to_string(),
        port: servers.mqtt.port(),
        client_id: unique("leak-meter"),
        topic_prefix: format!("{topic_prefix}/raw"),
        speedup: 0.0,
        ..PublishOptions::default()
    };
    publish(&options, support::meter::simulated_readings(2, 4), |_| {}).await.unwrap();
    let (url, m, db) = (servers.influxdb_v1.clone(), measurement.clone(), database.clone());
    tokio::task::block_in_place(|| {
        ingest.wait_for(Duration::from_secs(60), "windows in InfluxDB", || {
            (influxql_values(&url, INFLUX_DB, &format!(r#"SELECT count("readings") FROM "{m}""#)).len() == 1)
                .then_some(())
        });
        predict.wait_for(Duration::from_secs(60), "predictions in InfluxDB", || {
            let q = r#"SELECT count("predicted") FROM "gridcast_prediction""#;
            (influxql_values(&url, &db, q).len() == 1).then_some(())
        });
    });
    drop(ingest);
    drop(predict);
    let ingest_log = std::fs::read_to_string(ingest_dir.join("ingest.log")).unwrap();
    assert!(ingest_log.contains("DEBUG"), "debug logging is on:\n{ingest_log}");
    assert_no_secret("ingest's log at debug level", &ingest_log);
    let predict_log = std::fs::read_to_string(dir.path().join("predict.log")).unwrap();
    assert!(predict_log.contains(BUCKET) || predict_log.contains("upload"), "{predict_log}");
    assert_no_secret("predict's log at debug level", &predict_log);

    // --print-config: the secrets as ***.
    let config = ingest_dir.join("ingest.toml");
    let printed = run(&["ingest", "--config", config.to_str().unwrap(), "--print-config"], &[]);
    assert!(printed.contains(r#"password = "***""#) && printed.contains(r#"token = "***""#), "{printed}");
    assert_no_secret("ingest --print-config", &printed);
    let predict_file = dir.path().join("predict.toml");
    let printed = run(&["predict", "--config", predict_file.to_str().unwrap(), "--print-config"], &predict_env);
    assert!(printed.contains(r#"aws_secret_access_key = "***""#), "{printed}");
    assert_no_secret("predict --print-config", &printed);

    // Ingest failing at start: its InfluxDB is not there.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let failing = dir.path().join("failing-ingest.toml");
    std::fs::write(&failing, ingest_toml(&servers, &dir.path().join("failing"), &topic_prefix, &measurement, &dead))
        .unwrap();
    let sink = dead.trim_start_matches("http://").to_string();
    let output = tokio::task::block_in_place(|| {
        run_until(&["ingest", "--config", failing.to_str().unwrap()], &[], |text| text.matches(&sink).count() >= 2)
    });
    assert_no_secret("ingest failing to reach InfluxDB", &output);

    // Retrain failing: history from an InfluxDB that is not there, S3 keys.
    let retrain = dir.path().join("retrain.toml");
    std::fs::write(
        &retrain,
        format!(
            "[history]\nsensor = \"s\"\n[history.influx]\nurl = \"{dead}\"\nusername = \"u\"\npassword = \"{INFLUX_PASSWORD}\"\n\
             [champion]\nmodel = \"{}\"\n[publish]\nstore = \"s3://{BUCKET}\"\n\
             [publish.options]\naws_secret_access_key = \"{S3_SECRET}\"\n",
            shipped_model().display()
        ),
    )
    .unwrap();
    let printed = run(&["retrain", "--config", retrain.to_str().unwrap(), "--print-config"], &[]);
    assert!(printed.contains(r#"password = "***""#), "{printed}");
    assert_no_secret("retrain --print-config", &printed);
    let signing = [("GRIDCAST_SIGNING_KEY", SIGNING_KEY)];
    let output = tokio::task::block_in_place(|| run(&["retrain", "--config", retrain.to_str().unwrap()], &signing));
    assert!(output.contains("127.0.0.1"), "it failed, naming InfluxDB:\n{output}");
    assert!(output.contains("signed with key"), "the signing key was loaded:\n{output}");
    assert_no_secret("retrain failing to reach InfluxDB", &output);

    // Ship failing: a registry that is not there, with credentials.
    let registry_env = [
        ("GRIDCAST_REGISTRY_USERNAME", "gridcast"),
        ("GRIDCAST_REGISTRY_PASSWORD", REGISTRY_PASSWORD),
        ("GRIDCAST_SIGNING_KEY", SIGNING_KEY),
    ];
    let registry = format!("127.0.0.1:{}", free_port());
    let model = shipped_model();
    let output = tokio::task::block_in_place(|| {
        run(
            &[
                "ship",
                "model",
                "--model",
                model.to_str().unwrap(),
                "--base",
                &format!("{registry}/gridcast/predictor:base"),
                "--image",
                &format!("{registry}/gridcast/predictor:stable"),
            ],
            &registry_env,
        )
    });
    assert!(output.contains(&registry), "it failed, naming the registry:\n{output}");
    assert_no_secret("ship failing to reach its registry", &output);

    // The agent: its registry and engine are not there; a password in the
    // predictor container's environment; a token for its events sink.
    let agent = dir.path().join("agent.toml");
    std::fs::write(
        &agent,
        format!(
            "[agent]\nimage = \"{registry}/gridcast/predictor:stable\"\npoll_secs = 1\nstate_dir = \"{}\"\n\
             docker_host = \"unix://{}\"\n[container]\nenv = [\"GRIDCAST_MQTT__PASSWORD={CONTAINER_PASSWORD}\"]\n\
             [http]\nlisten = \"127.0.0.1:0\"\n\
             [[events]]\nkind = \"influxdb_v2\"\nurl = \"{dead}\"\norg = \"o\"\nbucket = \"b\"\ntoken = \"{INFLUX_TOKEN}\"\n",
            dir.path().join("agent-state").display(),
            dir.path().join("no-engine.sock").display(),
        ),
    )
    .unwrap();
    let printed = run(&["agent", "--config", agent.to_str().unwrap(), "--print-config"], &registry_env);
    assert_no_secret("agent --print-config", &printed);
    // It fails (no engine) or keeps polling a registry that is not there:
    // either way, until it has said so twice.
    let output = tokio::task::block_in_place(|| {
        run_until(&["agent", "--config", agent.to_str().unwrap()], &registry_env, |text| {
            text.matches(&registry).count() >= 2
        })
    });
    assert!(output.contains("DEBUG") || output.contains("gridcast:"), "{output}");
    assert_no_secret("the agent without registry or engine", &output);
}
