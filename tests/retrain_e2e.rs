//! The loop closed, on real servers (Mosquitto, InfluxDB 1.x, moto S3):
//!
//! 1. A weak champion is the model in the bucket, at the key the predictor
//!    polls (`{prefix}/site/models/current.gcm`).
//! 2. Simulated meters publish 12 Hz readings; `gridcast ingest` writes
//!    their minute windows to InfluxDB, `gridcast predict` predicts every
//!    minute with the champion and uploads its mispredictions to S3.
//!    The rest of two weeks of history is backfilled into InfluxDB as ingest
//!    writes it (the sample's minutes: 20 000 minutes of 12 Hz readings would
//!    take hours to publish).
//! 3. `gridcast retrain` (the binary) reads the history from InfluxDB, the
//!    triplets from S3, beats the champion on the holdout, and publishes the
//!    challenger to the bucket.
//! 4. The running predictor, polling the key, serves the challenger: its
//!    version is in `/health` and in the prediction lines of the minutes
//!    after the swap, and no prediction is dropped across it.
//!
//! Needs the shared test servers: run `scripts/test`, or
//! `scripts/test-servers start && source target/test-servers/env`.

mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use gridcast_core::features::{FeatureSpec, FeatureTable};
use gridcast_simulator::{
    Generator, GeneratorConfig, PublishOptions, PublishReport, Series, SimReading, Start, sensor_hex, sensor_id,
};
use gridcast_trainer::gbdt::TrainParams;
use gridcast_trainer::{data, pipeline};

use support::blob::{BUCKET, Blob};
use support::gridcast::{GridcastProcess, PredictToml, model_version};
use support::meter::{publish_in_background, sample_csv};
use support::{INFLUX_DB, SharedServers, free_port, influx_write, influxql_values, shared_servers, unique};

const SENSORS: u32 = 2;
/// The live minutes start at this minute of the sample (an evening: loads
/// change, so the champion mispredicts some minutes).
const LIVE_FROM: usize = 18 * 60;
/// Minutes published before the retrain, and after it.
const BEFORE: usize = 10;
const AFTER: usize = 6;

/// A champion barely better than persistence: one small tree.
fn weak_champion() -> Vec<u8> {
    let series = data::load_intervals(&sample_csv(), 60).unwrap();
    let spec = FeatureSpec::default();
    let table = FeatureTable::build(&spec, &series[..5000]).unwrap();
    let params =
        TrainParams { n_trees: 1, learning_rate: 0.01, early_stopping_rounds: 0, threads: 1, ..Default::default() };
    let (model, _) = pipeline::fit(&spec, &table, &table.labelled_rows(), &params, &mut |_, _| {}).unwrap();
    model.to_bytes()
}

/// Readings of minutes `from..to` of the sample (sensor i from row i x 1 day).
fn readings(from: usize, to: usize) -> Vec<SimReading> {
    let series = Series::load(&sample_csv()).unwrap();
    let config =
        GeneratorConfig { sensors: SENSORS, minutes: Some(to), start: Start::Csv, seed: 7, ..Default::default() };
    let start = series.rows()[0].ts_secs + 60 * from as i64;
    Generator::new(&series, config).unwrap().readings().filter(|r| r.ts_secs >= start as f64).collect()
}

/// Sensor 0's windows of the sample but minutes `live`, as ingest writes
/// them (sensor 0 replays the sample from its first row).
fn backfill(servers: &SharedServers, measurement: &str, live: std::ops::Range<usize>) {
    let series = Series::load(&sample_csv()).unwrap();
    let sensor = sensor_hex(&sensor_id(0));
    let lines: Vec<String> = series.rows()[..live.start]
        .iter()
        .chain(&series.rows()[live.end..])
        .map(|r| {
            format!(
                "{measurement},sensor={sensor},source=raw p_l1_mean={},p_l2_mean={},p_l3_mean={} {}",
                r.p_w[0],
                r.p_w[1],
                r.p_w[2],
                r.ts_secs * 1000
            )
        })
        .collect();
    for chunk in lines.chunks(5000) {
        influx_write(&servers.influxdb_v1, INFLUX_DB, &chunk.join("\n"));
    }
}

/// Publishes `readings` as fast as the broker takes them; waits for the report.
fn publish_all(servers: &SharedServers, topic_prefix: &str, readings: Vec<SimReading>) -> PublishReport {
    let options = PublishOptions {
        host: "127.0.0.1".into(),
        port: servers.mqtt.port(),
        client_id: unique("retrain-meter"),
        topic_prefix: topic_prefix.to_string(),
        speedup: 0.0,
        ..PublishOptions::default()
    };
    publish_in_background(options, readings).join().unwrap()
}

fn metrics(port: u16) -> BTreeMap<String, f64> {
    support::http::gridcast_metrics(port).unwrap_or_default()
}

#[test]
fn mispredictions_in_s3_and_history_in_influxdb_retrain_a_model_the_running_predictor_swaps_in() {
    let servers = shared_servers();
    let blob = Blob::shared_s3();
    let Blob::S3 { endpoint } = &blob else { unreachable!() };
    let dir = tempfile::tempdir().unwrap();
    let topic_prefix = unique("retrain/raw");
    let windows = unique("retrain_window");
    let predictions = unique("retrain_prediction");
    let models_prefix = unique("retrain-models");
    let triplets_prefix = unique("retrain-triplets");
    let env = [
        ("AWS_ENDPOINT", endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
    ];

    // 1. The champion, where the predictor polls.
    let champion = weak_champion();
    let current_key = format!("{models_prefix}/site/models/current.gcm");
    blob.put(&current_key, &champion);
    let champion_version = model_version(&champion);

    // 2. Ingest and predict on the same readings.
    let ingest_toml = format!(
        "[mqtt]\nhost = \"127.0.0.1\"\nport = {}\nclient_id = \"{}\"\ntopics = [\"{topic_prefix}/#\"]\n\
         [pipeline]\nmeasurement = \"{windows}\"\nidle_close_secs = 2\n[spool]\ndir = \"{}\"\n[http]\nlisten = \"\"\n\
         [[sinks]]\nkind = \"influxdb_v1\"\nurl = \"{}\"\ndatabase = \"{INFLUX_DB}\"\n",
        servers.mqtt.port(),
        unique("retrain-ingest"),
        dir.path().join("ingest-spool").display(),
        servers.influxdb_v1
    );
    let mut ingest = GridcastProcess::start("ingest", dir.path(), &ingest_toml, &[]);
    let http_port = free_port();
    let mut predict_config = PredictToml::new(&servers, dir.path(), &format!("{topic_prefix}/#"), INFLUX_DB);
    predict_config.model = format!("s3://{BUCKET}/{current_key}");
    predict_config.model_poll_secs = 1;
    predict_config.measurement = predictions.clone();
    predict_config.http_listen = format!("127.0.0.1:{http_port}");
    predict_config.upload =
        format!("prefix = \"{triplets_prefix}\"\ndevice = \"pi\"\nbatch_max = 10\n{}", blob.upload_toml());
    // A 20 W threshold: household minutes cross it often.
    let predict_toml = predict_config.to_toml().replace("threshold_w = 50.0", "threshold_w = 20.0");
    let mut predict = GridcastProcess::start("predict", dir.path(), &predict_toml, &env);
    ingest.wait_subscribed(1);
    predict.wait_subscribed(1);

    let report = publish_all(&servers, &topic_prefix, readings(LIVE_FROM, LIVE_FROM + BEFORE));
    assert_eq!(report.messages_acked, report.messages_published);
    let judged_before = SENSORS as f64 * (BEFORE as f64 - 1.0);
    let settled = predict.wait_for(Duration::from_secs(120), "the first minutes judged and uploaded", || {
        let m = metrics(http_port);
        let g = |k: &str| m.get(k).copied().unwrap_or(-1.0);
        (g("judged_total") == judged_before
            && g("triplet_spool_depth") == 0.0
            && g("uploaded_triplets_total") == g("mispredictions_total"))
        .then_some(m)
    });
    assert!(settled["mispredictions_total"] > 0.0, "a 20 W threshold flags some household minutes");
    let sensor = sensor_hex(&sensor_id(0));
    ingest.wait_for(Duration::from_secs(60), "ingest's windows of the first minutes in InfluxDB", || {
        let q = format!("SELECT count(\"p_l1_mean\") FROM \"{windows}\" WHERE \"sensor\" = '{sensor}'");
        let rows = influxql_values(&servers.influxdb_v1, INFLUX_DB, &q);
        (rows.first().and_then(|r| r[1].as_u64()) == Some(BEFORE as u64)).then_some(())
    });
    backfill(&servers, &windows, LIVE_FROM..LIVE_FROM + BEFORE + AFTER);

    // 3. The retrain, as a data person or a CronJob runs it.
    let retrain_toml = format!(
        "[history]\nsensor = \"{sensor}\"\nmeasurement = \"{windows}\"\n[history.influx]\nurl = \"{}\"\n\
         database = \"{INFLUX_DB}\"\nchunk_size = 2000\n[champion]\nmodel = \"s3://{BUCKET}/{current_key}\"\n\
         [holdout]\ndays = 2.0\n[gate]\nmargin = 0.02\n[train]\ntrees = 60\nlearning_rate = 0.1\nthreads = 2\n\
         [triplets]\nstore = \"s3://{BUCKET}\"\nprefix = \"{triplets_prefix}\"\nweight = 3.0\n\
         [publish]\nstore = \"s3://{BUCKET}\"\nprefix = \"{models_prefix}\"\nsite = \"site\"\n",
        servers.influxdb_v1
    );
    let retrain_config = dir.path().join("retrain.toml");
    std::fs::write(&retrain_config, retrain_toml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gridcast"))
        .args(["retrain", "--config"])
        .arg(&retrain_config)
        .envs(env)
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "retrain did not ship:\n{stdout}\n{stderr}");
    assert!(stdout.contains("verdict: ship"), "{stdout}");
    let weighted: u64 = stderr
        .split_once(" weighted training rows")
        .and_then(|(before, _)| before.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no triplet tally in the retrain's log:\n{stderr}"));
    assert!(weighted > 0, "the champion's mispredictions weigh in:\n{stderr}");

    let published = blob.objects(&format!("{models_prefix}/site/models/"));
    let current = published.iter().find(|(k, _)| k.ends_with("/current.gcm")).expect("current.gcm").1.clone();
    let challenger_version = model_version(&current);
    assert_ne!(challenger_version, champion_version);
    assert!(
        published.iter().any(|(k, b)| k.ends_with(&format!("/{challenger_version}.gcm")) && *b == current),
        "the version object holds the same bytes as current.gcm"
    );

    // 4. The predictor swaps it in and keeps predicting every minute.
    let health = || support::http::get(&format!("http://127.0.0.1:{http_port}/health")).text();
    predict.wait_for(Duration::from_secs(60), "the predictor serving the challenger", || {
        health().contains(&challenger_version).then_some(())
    });
    let report = publish_all(&servers, &topic_prefix, readings(LIVE_FROM + BEFORE, LIVE_FROM + BEFORE + AFTER));
    assert_eq!(report.messages_acked, report.messages_published);
    let minutes = (BEFORE + AFTER) as f64;
    let judged = SENSORS as f64 * (minutes - 1.0);
    let m = predict.wait_for(Duration::from_secs(120), "every minute judged after the swap", || {
        let m = metrics(http_port);
        (m.get("judged_total") == Some(&judged)).then_some(m)
    });
    assert_eq!(m["predictions_total"], SENSORS as f64 * minutes, "a prediction was dropped across the swap");
    assert_eq!(m["unjudged_total"], 0.0);
    assert_eq!(m["model_reloads_total"], 1.0);

    let rows = predict.wait_for(Duration::from_secs(30), "every judged prediction in InfluxDB", || {
        let q = format!("SELECT \"model\", \"predicted\" FROM \"{predictions}\"");
        let rows = influxql_values(&servers.influxdb_v1, INFLUX_DB, &q);
        (rows.len() as f64 == judged).then_some(rows)
    });
    let after_swap = rows.iter().filter(|r| r[1].as_str() == Some(&challenger_version[..16])).count();
    let before_swap = rows.iter().filter(|r| r[1].as_str() == Some(&champion_version[..16])).count();
    assert_eq!(before_swap + after_swap, rows.len(), "every prediction line names one of the two models");
    assert!(after_swap >= SENSORS as usize * (AFTER - 1), "{after_swap} predictions by the challenger");
}
