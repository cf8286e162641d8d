//! Two `gridcast ingest` replicas in one `$share` group on real Mosquitto,
//! which dispatches a shared subscription round-robin: each replica gets
//! about half of every meter's minute. Each writes its part of a window
//! under its own `part` tag, and a minute is the sum of its parts. 3 sensors
//! at 12 Hz for 10 simulated minutes: every minute of every sensor must add
//! up, in InfluxDB, to exactly the 720 published readings and the mean
//! computed here from the published values (1e-9 relative), with both
//! replicas having written parts of it; and the same with one replica
//! SIGKILLed mid-run and restarted (nothing lost, nothing doubled).
//!
//! Needs the shared test servers: run `scripts/test`, or
//! `scripts/test-servers start && source target/test-servers/env`.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use gridcast_simulator::{PublishOptions, publish};
use serde_json::Value;

use support::gridcast::{GridcastProcess, IngestToml};
use support::meter::{Expected, close, expected_minutes, simulated_readings};
use support::{INFLUX_DB, SharedServers, eventually, influxql_query, shared_servers, unique};

const SENSORS: u32 = 3;
const MINUTES: usize = 10;
/// 10 simulated minutes in 20 s.
const SPEEDUP: f64 = 30.0;
const TOLERANCE: f64 = 1e-9;

#[test]
fn two_replicas_on_one_shared_subscription_write_every_minute_exactly() {
    run(false);
}

#[test]
fn a_replica_killed_mid_run_and_restarted_loses_and_doubles_nothing() {
    run(true);
}

/// One ingest replica: its own folder (config, spool, log) and client id.
struct Replica {
    process: GridcastProcess,
    _dir: tempfile::TempDir,
}

impl Replica {
    fn start(servers: &SharedServers, name: &str, topic: &str, measurement: &str) -> Replica {
        let dir = tempfile::tempdir().unwrap();
        let mut config = IngestToml::new(servers.mqtt, dir.path(), topic, measurement);
        config.client_id = name.to_string();
        config.idle_close_secs = 3;
        config.sinks = IngestToml::influxdb_v1(&servers.influxdb_v1, INFLUX_DB, "");
        let config = config.to_toml();
        let mut process = GridcastProcess::start("ingest", dir.path(), &config, &[]);
        process.wait_subscribed(1);
        Replica { process, _dir: dir }
    }
}

fn run(kill_one: bool) {
    let servers = shared_servers();
    let measurement = unique("share_meter");
    let topic_prefix = unique("share/raw");
    let topic = format!("$share/{}/{topic_prefix}/#", unique("ingest"));
    let names = [unique("share-ingest-a"), unique("share-ingest-b")];
    let mut replicas: Vec<Replica> =
        names.iter().map(|name| Replica::start(&servers, name, &topic, &measurement)).collect();
    assert!(replicas[0].process.log().contains("written as partial windows"), "{}", replicas[0].process.log());

    let readings = simulated_readings(SENSORS, MINUTES);
    let expected = expected_minutes(&readings);
    assert_eq!(expected.len(), SENSORS as usize * MINUTES);
    let total = readings.len() as u64;

    // Publish in the background, at QoS 1, as the meters' gateway would,
    // sharing how far it got so the kill happens mid-run by that measure.
    let sent = Arc::new(AtomicU64::new(0));
    let options = PublishOptions {
        host: servers.mqtt.ip().to_string(),
        port: servers.mqtt.port(),
        client_id: unique("share-meter"),
        topic_prefix,
        speedup: SPEEDUP,
        progress_interval: Duration::from_millis(50),
        ..PublishOptions::default()
    };
    let publisher = {
        let sent = sent.clone();
        thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime
                .block_on(publish(&options, readings, |p| sent.store(p.readings, Ordering::Relaxed)))
                .expect("every message acknowledged")
        })
    };
    if kill_one {
        let sent_at_least = |share: u64| {
            eventually(Duration::from_secs(60), "the meters to publish", || {
                (sent.load(Ordering::Relaxed) >= total * share / 10).then_some(())
            })
        };
        sent_at_least(3);
        replicas[0].process.kill();
        sent_at_least(6);
        replicas[0].process.restart();
        replicas[0].process.wait_subscribed(2);
    }
    let report = publisher.join().unwrap();
    assert_eq!(report.messages_acked, report.messages_published);
    assert_eq!(report.readings, total);

    let (first, last) = (expected.keys().map(|k| k.1).min().unwrap(), expected.keys().map(|k| k.1).max().unwrap());
    let url = servers.influxdb_v1.clone();
    // InfluxDB 1.x stores a point's fields one by one: a query racing a
    // write can see its `readings` and not yet its sums. So wait until the
    // answer is right (every minute, every field), and only on a timeout
    // fail with what is wrong.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        for replica in replicas.iter_mut() {
            replica.process.assert_running();
        }
        let minutes = combined_minutes(&url, &measurement, first, last + 60_000);
        match check(&minutes, &expected) {
            Ok(()) => break,
            Err(wrong) if std::time::Instant::now() > deadline => panic!("after 90 s: {wrong}"),
            Err(_) => thread::sleep(Duration::from_millis(200)),
        }
    }

    // Both replicas wrote parts, and every minute was split between them.
    let parts = parts_per_minute(&url, &measurement);
    let tags: BTreeSet<&String> = parts.values().flatten().collect();
    assert_eq!(tags, names.iter().collect(), "the part tags are the replicas' client ids");
    let split = parts.values().filter(|p| p.len() == 2).count();
    assert!(split >= expected.len() / 2, "only {split} of {} minutes came from both replicas", expected.len());
    if kill_one {
        let log = replicas[0].process.log();
        assert!(log.contains("replayed the spool journal"), "the killed replica replayed its journal:\n{log}");
    }
}

/// One minute of one sensor, its parts added up.
#[derive(Debug)]
struct Minute {
    readings: u64,
    /// p_l1, p_l2, p_l3, p_sum, q_l1: sum of the parts' sums / sum of their counts.
    means: [f64; 5],
}

/// The dashboards' way: sums over the parts of each minute, by sensor.
fn combined_minutes(url: &str, measurement: &str, from_ms: i64, to_ms: i64) -> BTreeMap<(String, i64), Minute> {
    let means = ["p_l1", "p_l2", "p_l3", "p_sum", "q_l1"]
        .map(|f| format!(r#"sum("{f}_sum") / sum("{f}_count") AS "{f}""#))
        .join(", ");
    let query = format!(
        r#"SELECT sum("readings") AS "readings", {means} FROM "{measurement}" WHERE "source" = 'raw' AND time >= {from_ms}ms AND time < {to_ms}ms GROUP BY time(1m), "sensor" fill(none)"#
    );
    let answer = influxql_query(url, INFLUX_DB, &query);
    let mut minutes = BTreeMap::new();
    for series in answer["results"][0]["series"].as_array().into_iter().flatten() {
        let sensor = series["tags"]["sensor"].as_str().unwrap().to_string();
        for row in series["values"].as_array().unwrap() {
            let row = row.as_array().unwrap();
            let number = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
            let means = [number(&row[2]), number(&row[3]), number(&row[4]), number(&row[5]), number(&row[6])];
            // Null while a point's fields are still being stored: not complete yet.
            let readings = row[1].as_u64().unwrap_or(0);
            minutes.insert((sensor.clone(), row[0].as_i64().unwrap()), Minute { readings, means });
        }
    }
    minutes
}

/// Every expected minute and no other, with all its readings and the
/// published means; the first difference otherwise.
fn check(minutes: &BTreeMap<(String, i64), Minute>, expected: &Expected) -> Result<(), String> {
    if !minutes.keys().eq(expected.keys()) {
        return Err(format!("{} minutes in InfluxDB, {} expected", minutes.len(), expected.len()));
    }
    for (key, want) in expected {
        let got = &minutes[key];
        if got.readings != want.readings {
            return Err(format!("{key:?}: {} readings, the parts added up; {} expected", got.readings, want.readings));
        }
        let want_means = [want.p_mean[0], want.p_mean[1], want.p_mean[2], want.p_sum_mean, want.q_mean[0]];
        for (name, (g, w)) in ["p_l1", "p_l2", "p_l3", "p_sum", "q_l1"].iter().zip(got.means.iter().zip(want_means)) {
            if !close(*g, w, TOLERANCE) {
                return Err(format!("{key:?} {name}: got {g}, expected {w}"));
            }
        }
    }
    Ok(())
}

/// The `part` tags that wrote each (sensor, minute).
fn parts_per_minute(url: &str, measurement: &str) -> BTreeMap<(String, i64), Vec<String>> {
    let query = format!(r#"SELECT "readings" FROM "{measurement}" WHERE "source" = 'raw' GROUP BY "sensor", "part""#);
    let answer = influxql_query(url, INFLUX_DB, &query);
    let mut parts: BTreeMap<(String, i64), Vec<String>> = BTreeMap::new();
    for series in answer["results"][0]["series"].as_array().into_iter().flatten() {
        let sensor = series["tags"]["sensor"].as_str().unwrap();
        let part = series["tags"]["part"].as_str().unwrap();
        for row in series["values"].as_array().unwrap() {
            parts.entry((sensor.to_string(), row[0].as_i64().unwrap())).or_default().push(part.to_string());
        }
    }
    parts
}
