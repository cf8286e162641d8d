//! `gridcast predict` end to end, on real servers: simulated meters publish
//! 12 Hz readings through Mosquitto; the predictor (the real binary, as a
//! child process) predicts every minute with the shipped model and a low
//! misprediction threshold, writes prediction/actual/error to InfluxDB 1.x,
//! and uploads its triplets to S3 (moto) or Azure Blob (Azurite).
//!
//! Proves: every judged prediction is in InfluxDB; every triplet the
//! predictor counted is in the bucket exactly once, decodable, with the right
//! fields; with the store down for the first part of the run and the
//! predictor SIGKILLed and restarted, no triplet is lost or duplicated; a
//! model swap under load drops no prediction and a corrupt model is refused.
//!
//! Needs the shared test servers: run `scripts/test`, or
//! `scripts/test-servers start && source target/test-servers/env`.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::thread;
use std::time::Duration;

use gridcast_core::model::Model;
use gridcast_predictor::triplet::{Compression, Triplet, decode_batch};
use gridcast_simulator::{PublishOptions, PublishReport, SimReading};

use support::blob::{Blob, LateMoto};
use support::gridcast::{GridcastProcess, PredictToml, model_version, shipped_model};
use support::meter::{Expected, expected_minutes, publish_in_background, simulated_readings};
use support::{INFLUX_DB, SharedServers, eventually, free_port, influxql_values, shared_servers, unique};

const SENSORS: u32 = 3;
const DEVICE: &str = "test-device";

/// One predictor run: its config, process, and the names it writes under.
struct Run {
    dir: tempfile::TempDir,
    servers: SharedServers,
    predict: GridcastProcess,
    http_port: u16,
    topic_prefix: String,
    measurement: String,
    prefix: String,
    blob: Blob,
    compression: Compression,
}

impl Run {
    fn start(blob: Blob, model: &Path, compression: Compression) -> Run {
        Run::start_with(blob, &model.display().to_string(), compression, &[])
    }

    /// `model` is a path or an object-store URL; `env` is added to the predictor's.
    fn start_with(blob: Blob, model: &str, compression: Compression, env: &[(&str, &str)]) -> Run {
        Run::start_bounded(blob, model, compression, env, 256 << 20)
    }

    /// As [`Run::start_with`], with the spool bound at `spool_max_bytes`.
    fn start_bounded(
        blob: Blob,
        model: &str,
        compression: Compression,
        env: &[(&str, &str)],
        spool_max_bytes: u64,
    ) -> Run {
        let servers = shared_servers();
        let dir = tempfile::tempdir().unwrap();
        let http_port = free_port();
        let topic_prefix = unique("predict/raw");
        let measurement = unique("prediction");
        let prefix = unique("triplets");
        let compression_name = match compression {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        };
        let mut config = PredictToml::new(&servers, dir.path(), &format!("{topic_prefix}/#"), INFLUX_DB);
        config.model = model.to_string();
        config.model_poll_secs = 1;
        config.measurement = measurement.clone();
        config.idle_close_secs = 5;
        config.spool = dir.path().join("spool");
        config.spool_max_bytes = spool_max_bytes;
        config.http_listen = format!("127.0.0.1:{http_port}");
        config.upload = format!(
            "prefix = \"{prefix}\"\ndevice = \"{DEVICE}\"\nbatch_max = 10\ncompression = \"{compression_name}\"\n{}",
            blob.upload_toml()
        );
        let config = config.to_toml();
        let mut predict = GridcastProcess::start("predict", dir.path(), &config, env);
        predict.wait_subscribed(1);
        Run { dir, servers, predict, http_port, topic_prefix, measurement, prefix, blob, compression }
    }

    /// Publish in the background at QoS 1, as the meters' gateway would.
    fn publish(&self, readings: Vec<SimReading>, speedup: f64) -> thread::JoinHandle<PublishReport> {
        let options = PublishOptions {
            host: "127.0.0.1".into(),
            port: self.servers.mqtt.port(),
            client_id: unique("predict-meter"),
            topic_prefix: self.topic_prefix.clone(),
            speedup,
            ..PublishOptions::default()
        };
        publish_in_background(options, readings)
    }

    /// The predictor's `/metrics`, as name -> value (None while it is down).
    fn metrics(&self) -> Option<BTreeMap<String, f64>> {
        support::http::gridcast_metrics(self.http_port)
    }

    fn metric(&self, name: &str) -> f64 {
        self.metrics().and_then(|m| m.get(name).copied()).unwrap_or(-1.0)
    }

    /// Wait until the predictor has judged `judged` predictions and uploaded
    /// every triplet it made.
    fn wait_settled(&mut self, judged: u64) {
        let what = format!("{judged} judged predictions and an empty triplet spool");
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            self.predict.assert_running();
            if let Some(m) = self.metrics() {
                let g = |k: &str| m.get(k).copied().unwrap_or(-1.0) as i64;
                if g("judged_total") == judged as i64
                    && g("triplet_spool_depth") == 0
                    && g("uploaded_triplets_total") == g("mispredictions_total")
                {
                    return;
                }
            }
            assert!(std::time::Instant::now() < deadline, "gave up waiting for {what}:\n{}", self.predict.log());
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every triplet in the bucket under this run's prefix, with its object key.
    fn triplets(&self) -> Vec<(String, Triplet)> {
        let mut out = Vec::new();
        for (key, bytes) in self.blob.objects(&self.prefix) {
            let rest = key.strip_prefix(&format!("{}/device={DEVICE}/date=", self.prefix)).unwrap_or_else(|| {
                panic!("object {key} is not under {}/device={DEVICE}/date=", self.prefix);
            });
            let extension = format!(".{}", self.compression.extension());
            assert!(rest.ends_with(&extension), "{key}: not a {extension} object");
            let name = rest.split('/').nth(1).unwrap().trim_end_matches(&extension);
            let parts: Vec<&str> = name.split('-').collect();
            assert_eq!(parts.len(), 3, "{key}: not <spool>-<first>-<last>");
            let (first, last): (u64, u64) = (parts[1].parse().unwrap(), parts[2].parse().unwrap());
            let triplets = decode_batch(&bytes, self.compression).unwrap_or_else(|e| panic!("{key}: {e}"));
            assert!(!triplets.is_empty(), "{key} is empty");
            assert_eq!(triplets.first().unwrap().seq, first, "{key}: first seq");
            assert_eq!(triplets.last().unwrap().seq, last, "{key}: last seq");
            out.extend(triplets.into_iter().map(|t| (key.clone(), t)));
        }
        out
    }

    /// `[time, sensor, model, predicted, actual, error, mispredicted]` rows.
    fn influx_rows(&self) -> Vec<Vec<serde_json::Value>> {
        influxql_values(
            &self.servers.influxdb_v1,
            INFLUX_DB,
            &format!(
                r#"SELECT "sensor", "model", "predicted", "actual", "error", "mispredicted" FROM "{}""#,
                self.measurement
            ),
        )
    }

    /// (sensor, target interval start) of every triplet the log reports spooled.
    fn logged_triplets(&self) -> Vec<(String, i64)> {
        self.predict
            .log()
            .lines()
            .filter(|l| l.contains("mispredicted: triplet spooled"))
            .map(|l| {
                let field = |name: &str| {
                    l.split_whitespace()
                        .find_map(|w| w.strip_prefix(&format!("{name}=")))
                        .unwrap_or_else(|| panic!("no {name} in {l}"))
                        .to_string()
                };
                (field("sensor"), field("interval_start_ms").parse().unwrap())
            })
            .collect()
    }
}

/// Checks each triplet's fields against the published data.
fn check_triplet(t: &Triplet, expected: &Expected, version: &str) {
    let here = format!("triplet {} {} {}", t.seq, t.sensor, t.interval_start_ms);
    let want =
        expected.get(&(t.sensor.clone(), t.interval_start_ms)).unwrap_or_else(|| panic!("{here}: no such minute"));
    assert!(
        (t.actual - want.p_sum_mean).abs() <= 1e-4 * want.p_sum_mean.abs().max(1.0),
        "{here}: actual {} vs published {}",
        t.actual,
        want.p_sum_mean
    );
    assert!((t.error - (t.predicted - t.actual)).abs() < 1e-6, "{here}: error");
    assert!(t.error.abs() > 50.0, "{here}: flagged with |error| {} under the 50 W threshold", t.error);
    assert_eq!(t.interval_end_ms - t.interval_start_ms, 60_000, "{here}");
    assert_eq!(t.features_start_ms, t.interval_start_ms - 60_000, "{here}");
    assert_eq!(t.horizon, 1, "{here}");
    assert_eq!(t.model_version, version, "{here}");
    assert_eq!(t.rule, "absolute", "{here}");
    assert_eq!(t.features.len(), t.feature_names.len(), "{here}");
    // The features describe the minute before: its per-phase means.
    let before = &expected[&(t.sensor.clone(), t.features_start_ms)];
    for (i, name) in ["p_l1", "p_l2", "p_l3"].iter().enumerate() {
        let pos = t.feature_names.iter().position(|n| n == name).unwrap();
        let got = t.features[pos].unwrap() as f64;
        assert!((got - before.p_mean[i]).abs() <= 1e-3 * before.p_mean[i].abs().max(1.0), "{here}: {name} {got}");
    }
}

fn predictions_and_triplets_reach_influxdb_and(blob: Blob, compression: Compression) {
    const MINUTES: usize = 20;
    let mut run = Run::start(blob, &shipped_model(), compression);
    let readings = simulated_readings(SENSORS, MINUTES);
    let expected = expected_minutes(&readings);
    let report = run.publish(readings, 0.0).join().unwrap();
    assert_eq!(report.messages_acked, report.messages_published);

    // 20 minutes per sensor: 20 predictions, 19 of which have their minute.
    let judged = SENSORS as u64 * (MINUTES as u64 - 1);
    run.wait_settled(judged);
    let mispredicted = run.metric("mispredictions_total") as usize;
    assert!(mispredicted > 0, "a 50 W threshold flags some minutes of household data");
    assert_eq!(run.metric("predictions_total") as u64, SENSORS as u64 * MINUTES as u64);

    let triplets = run.triplets();
    assert_eq!(triplets.len(), mispredicted, "every counted triplet is in the bucket, none twice");
    let keys: BTreeSet<(String, i64)> = triplets.iter().map(|(_, t)| (t.sensor.clone(), t.interval_start_ms)).collect();
    assert_eq!(keys.len(), triplets.len(), "a (sensor, minute) triplet appears twice");
    let seqs: BTreeSet<u64> = triplets.iter().map(|(_, t)| t.seq).collect();
    assert_eq!(seqs.len(), triplets.len(), "a sequence number appears twice");
    let version = model_version(&std::fs::read(shipped_model()).unwrap());
    for (_, t) in &triplets {
        check_triplet(t, &expected, &version);
    }
    let logged: BTreeSet<(String, i64)> = run.logged_triplets().into_iter().collect();
    assert_eq!(logged, keys, "the triplets the predictor logged are the ones in the bucket");

    let rows = eventually(Duration::from_secs(30), "every judged prediction in InfluxDB", || {
        let rows = run.influx_rows();
        (rows.len() as u64 == judged).then_some(rows)
    });
    let flagged = rows.iter().filter(|r| r[6].as_bool().unwrap()).count();
    assert_eq!(flagged, mispredicted);
    for r in &rows {
        let (time, sensor) = (r[0].as_i64().unwrap(), r[1].as_str().unwrap().to_string());
        assert_eq!(r[2].as_str().unwrap(), &version[..16]);
        let (predicted, actual, error) = (r[3].as_f64().unwrap(), r[4].as_f64().unwrap(), r[5].as_f64().unwrap());
        let want = expected[&(sensor, time)].p_sum_mean;
        assert!((actual - want).abs() <= 1e-4 * want.abs().max(1.0), "InfluxDB actual {actual} vs {want}");
        assert!((error - (predicted - actual)).abs() < 1e-6);
    }

    let health = support::http::get(&format!("http://127.0.0.1:{}/health", run.http_port));
    assert_eq!(health.status, 200, "{}", health.text());
    assert!(health.text().contains(&version), "{}", health.text());
    drop(run.dir);
}

#[test]
fn predictions_reach_influxdb_and_every_triplet_is_in_s3_exactly_once() {
    predictions_and_triplets_reach_influxdb_and(Blob::shared_s3(), Compression::Gzip);
}

#[test]
fn predictions_reach_influxdb_and_every_triplet_is_in_azurite_exactly_once_zstd() {
    predictions_and_triplets_reach_influxdb_and(Blob::shared_azurite(), Compression::Zstd);
}

/// Write `bytes` to `path` the way a deployment should: a temp file renamed over it.
fn replace_file(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn a_model_swap_under_load_drops_no_prediction_and_a_corrupt_model_is_refused() {
    const MINUTES: usize = 24;
    let dir = tempfile::tempdir().unwrap();
    let model_path = dir.path().join("model.gcm");
    let original = std::fs::read(shipped_model()).unwrap();
    std::fs::write(&model_path, &original).unwrap();
    // A second valid model: the same trees, a different base score.
    let mut challenger = Model::from_bytes(&original).unwrap();
    let mut meta = challenger.meta.clone();
    meta.base_score += 25.0;
    challenger = Model::new(meta, challenger.trees().to_vec()).unwrap();
    let challenger = challenger.to_bytes();

    let mut run = Run::start(Blob::shared_s3(), &model_path, Compression::Gzip);
    // Two halves: the corrupt model arrives between them, the good one while
    // the second half streams in (12 minutes in about 18 s, against a 1 s
    // model poll).
    let readings = simulated_readings(SENSORS, MINUTES);
    let start = readings.iter().map(|r| r.ts_secs).fold(f64::INFINITY, f64::min);
    let half = start + (MINUTES / 2) as f64 * 60.0;
    let (first, second): (Vec<SimReading>, Vec<SimReading>) = readings.into_iter().partition(|r| r.ts_secs < half);
    let report = run.publish(first, 0.0).join().unwrap();
    assert_eq!(report.messages_acked, report.messages_published);
    eventually(Duration::from_secs(60), "a few judged predictions", || {
        (run.metric("judged_total") >= 9.0).then_some(())
    });
    let mut corrupt = original.clone();
    let n = corrupt.len();
    corrupt[n / 2] ^= 0x20;
    replace_file(&model_path, &corrupt);
    eventually(Duration::from_secs(30), "the corrupt model refused", || {
        (run.metric("model_rejects_total") >= 1.0).then_some(())
    });
    assert_eq!(run.metric("model_reloads_total"), 0.0);
    assert!(run.predict.log().contains("new model refused"), "{}", run.predict.log());

    let second_readings = second.len() as f64;
    let readings_before = run.metric("readings_total");
    let publisher = run.publish(second, 40.0);
    replace_file(&model_path, &challenger);
    eventually(Duration::from_secs(30), "the new model swapped in", || {
        (run.metric("model_reloads_total") >= 1.0).then_some(())
    });
    let read_at_swap = run.metric("readings_total") - readings_before;
    assert!(read_at_swap < second_readings, "the swap came after the second half ({read_at_swap} readings)");
    let report = publisher.join().unwrap();
    assert_eq!(report.messages_acked, report.messages_published);

    let judged = SENSORS as u64 * (MINUTES as u64 - 1);
    run.wait_settled(judged);
    assert_eq!(run.metric("unjudged_total"), 0.0, "a prediction was dropped");
    assert_eq!(run.metric("predictions_total") as u64, SENSORS as u64 * MINUTES as u64);
    let rows = eventually(Duration::from_secs(30), "every judged prediction in InfluxDB", || {
        let rows = run.influx_rows();
        (rows.len() as u64 == judged).then_some(rows)
    });
    let models: BTreeSet<String> = rows.iter().map(|r| r[2].as_str().unwrap().to_string()).collect();
    let (old, new) = (model_version(&original), model_version(&challenger));
    assert_eq!(models, BTreeSet::from([old[..16].to_string(), new[..16].to_string()]));
    let triplet_models: BTreeSet<String> = run.triplets().into_iter().map(|(_, t)| t.model_version).collect();
    assert!(triplet_models.is_subset(&BTreeSet::from([old, new])));
}

#[test]
fn with_the_store_down_and_the_predictor_killed_no_triplet_is_lost_or_duplicated() {
    const MINUTES: usize = 30;
    let store_dir = tempfile::tempdir().unwrap();
    let mut moto = LateMoto::new(store_dir.path());
    let mut run = Run::start(Blob::S3 { endpoint: moto.endpoint() }, &shipped_model(), Compression::Gzip);
    let readings = simulated_readings(SENSORS, MINUTES);
    let expected = expected_minutes(&readings);
    // 30 minutes in about 20 s.
    let publisher = run.publish(readings, 90.0);

    eventually(Duration::from_secs(60), "triplets spooled while the store is down", || {
        (run.logged_triplets().len() >= 6).then_some(())
    });
    eventually(Duration::from_secs(30), "failed uploads counted while the store is down", || {
        (run.metric("upload_failures_total") >= 1.0).then_some(())
    });
    run.predict.kill();
    thread::sleep(Duration::from_millis(500));
    run.predict.restart();
    run.predict.wait_subscribed(2);
    thread::sleep(Duration::from_secs(3));
    moto.start();
    let report = publisher.join().unwrap();
    assert_eq!(report.messages_acked, report.messages_published);

    let judged_rows = SENSORS as usize * (MINUTES - 1);
    let rows = eventually(Duration::from_secs(90), "every judged prediction in InfluxDB", || {
        let rows = run.influx_rows();
        (rows.len() == judged_rows).then_some(rows)
    });
    // The minutes InfluxDB has flagged are the triplets made: every one must
    // be in the bucket once. (The log can miss a triplet's line: a SIGKILL
    // may land between its commit and its log line.)
    let flagged: BTreeSet<(String, i64)> = rows
        .iter()
        .filter(|r| r[6].as_bool().unwrap())
        .map(|r| (r[1].as_str().unwrap().to_string(), r[0].as_i64().unwrap()))
        .collect();
    let triplets = eventually(Duration::from_secs(60), "every flagged minute's triplet in the bucket", || {
        let t = run.triplets();
        (t.len() >= flagged.len()).then_some(t)
    });
    let keys: Vec<(String, i64)> = triplets.iter().map(|(_, t)| (t.sensor.clone(), t.interval_start_ms)).collect();
    let key_set: BTreeSet<(String, i64)> = keys.iter().cloned().collect();
    assert_eq!(key_set.len(), keys.len(), "a triplet is in the bucket twice");
    assert_eq!(key_set, flagged, "the bucket and InfluxDB's flagged minutes disagree");
    let logged: Vec<(String, i64)> = run.logged_triplets();
    let logged_set: BTreeSet<(String, i64)> = logged.iter().cloned().collect();
    assert_eq!(logged_set.len(), logged.len(), "the predictor spooled a triplet twice across the restart");
    assert!(logged_set.is_subset(&key_set), "a logged triplet is not in the bucket");
    assert!(logged_set.len() + 3 >= key_set.len(), "only a triplet cut off by the SIGKILL may miss its log line");
    let version = model_version(&std::fs::read(shipped_model()).unwrap());
    for (_, t) in &triplets {
        check_triplet(t, &expected, &version);
    }
}

#[test]
fn a_model_in_s3_is_served_swapped_and_a_corrupt_one_refused() {
    const MINUTES: usize = 8;
    let blob = Blob::shared_s3();
    let Blob::S3 { endpoint } = &blob else { unreachable!() };
    let key = format!("{}/model.gcm", unique("models"));
    let original = std::fs::read(shipped_model()).unwrap();
    let mut challenger = Model::from_bytes(&original).unwrap();
    let mut meta = challenger.meta.clone();
    meta.base_score -= 10.0;
    challenger = Model::new(meta, challenger.trees().to_vec()).unwrap();
    let challenger = challenger.to_bytes();
    blob.put(&key, &original);

    // The model source takes its credentials from the environment.
    let env = [
        ("AWS_ENDPOINT", endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
    ];
    let url = format!("s3://{}/{key}", support::blob::BUCKET);
    let mut run = Run::start_with(blob.clone(), &url, Compression::Gzip, &env);
    let version = |bytes: &[u8]| model_version(bytes);
    let health = || support::http::get(&format!("http://127.0.0.1:{}/health", run.http_port)).text();
    assert!(health().contains(&version(&original)), "{}", health());

    let report = run.publish(simulated_readings(SENSORS, MINUTES), 0.0).join().unwrap();
    assert_eq!(report.messages_acked, report.messages_published);
    let mut corrupt = challenger.clone();
    let n = corrupt.len();
    corrupt[n - 10] ^= 0x01;
    blob.put(&key, &corrupt);
    eventually(Duration::from_secs(30), "the corrupt model in S3 refused", || {
        (run.metric("model_rejects_total") >= 1.0).then_some(())
    });
    assert_eq!(run.metric("model_reloads_total"), 0.0);
    assert!(health().contains(&version(&original)), "the old model keeps serving: {}", health());
    blob.put(&key, &challenger);
    eventually(Duration::from_secs(30), "the new model in S3 swapped in", || {
        (run.metric("model_reloads_total") >= 1.0).then_some(())
    });
    assert!(health().contains(&version(&challenger)), "{}", health());
    run.wait_settled(SENSORS as u64 * (MINUTES as u64 - 1));
    assert_eq!(run.metric("unjudged_total"), 0.0);
}

/// The spool bound: with the store down, triplets fill a small spool; the
/// predictor then stops taking (and acknowledging) messages, so the broker
/// keeps them. When the store comes back and the triplets are uploaded,
/// space returns and every reading, prediction and triplet arrives: nothing
/// lost, nothing twice.
#[test]
fn a_full_spool_holds_messages_at_the_broker_and_nothing_is_lost_when_space_returns() {
    const MINUTES: usize = 30;
    let store_dir = tempfile::tempdir().unwrap();
    let mut moto = LateMoto::new(store_dir.path());
    let model = shipped_model().display().to_string();
    // A few triplets' worth (each is about 1 kB of JSON).
    const BOUND: u64 = 2048;
    let blob = Blob::S3 { endpoint: moto.endpoint() };
    let mut run = Run::start_bounded(blob, &model, Compression::Gzip, &[], BOUND);
    let readings = simulated_readings(SENSORS, MINUTES);
    let total_readings = readings.len() as f64;
    let expected = expected_minutes(&readings);
    let report = run.publish(readings, 0.0).join().unwrap();
    assert_eq!(report.messages_acked, report.messages_published);

    // Prediction lines leave for InfluxDB, triplets cannot: the spool stays
    // at its bound once the triplets alone reach it.
    eventually(Duration::from_secs(60), "the spool held at its bound by triplets, and saying so", || {
        let stalled = run.metric("spool_waiting_bytes") >= BOUND as f64 && run.metric("spool_full_waits_total") >= 1.0;
        stalled.then_some(())
    });
    let read_while_full = run.metric("readings_total");
    assert!(read_while_full < total_readings, "the broker still holds messages: {read_while_full} of {total_readings}");
    assert!(run.predict.log().contains("spool is full: not acknowledging MQTT messages"));

    moto.start();
    let judged = SENSORS as u64 * (MINUTES as u64 - 1);
    run.wait_settled(judged);
    assert_eq!(run.metric("readings_total"), total_readings, "every reading taken once");
    assert_eq!(run.metric("predictions_total") as u64, SENSORS as u64 * MINUTES as u64);
    let rows = eventually(Duration::from_secs(30), "every judged prediction in InfluxDB", || {
        let rows = run.influx_rows();
        (rows.len() as u64 == judged).then_some(rows)
    });
    let flagged: BTreeSet<(String, i64)> = rows
        .iter()
        .filter(|r| r[6].as_bool().unwrap())
        .map(|r| (r[1].as_str().unwrap().to_string(), r[0].as_i64().unwrap()))
        .collect();
    let triplets = run.triplets();
    let keys: BTreeSet<(String, i64)> = triplets.iter().map(|(_, t)| (t.sensor.clone(), t.interval_start_ms)).collect();
    assert_eq!(keys.len(), triplets.len(), "a triplet is in the bucket twice");
    assert_eq!(keys, flagged, "the bucket and InfluxDB's flagged minutes disagree");
    let version = model_version(&std::fs::read(shipped_model()).unwrap());
    for (_, t) in &triplets {
        check_triplet(t, &expected, &version);
    }
}
