//! Bad input from the network, against the real `gridcast ingest` on real
//! Mosquitto and InfluxDB: a payload over `[decode] max_payload_bytes`, a
//! JSON array over `max_readings_per_message`, and a flood of sensor ids
//! (a new one per message) over `[window] max_keys`. Each is refused and
//! counted by kind on `/metrics`, the oversized payload is kept (truncated)
//! in the rejected log, ingest keeps running, and the known meters' windows
//! are all in InfluxDB with the exact mean: nothing of theirs lost.
//!
//! Needs the shared test servers: run `scripts/test`, or
//! `scripts/test-servers start && source target/test-servers/env`.

mod support;

use std::time::Duration;

use gridcast_simulator::{PublishOptions, publish};

use support::gridcast::{GridcastProcess, IngestToml};
use support::http::gridcast_metrics;
use support::meter::{check_influx_rows, expected_minutes, influx_rows, simulated_readings};
use support::mqtt::publish_all;
use support::{INFLUX_DB, free_port, shared_servers, unique};

const SENSORS: u32 = 3;
const MINUTES: usize = 2;
/// The meters' 3 keys (raw source) and room for 7 more.
const MAX_KEYS: usize = 10;
const FLOOD: usize = 1_000;
const MAX_READINGS: usize = 1_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oversized_payloads_huge_arrays_and_a_sensor_flood_are_refused_counted_and_lose_nothing_else() {
    let servers = shared_servers();
    let dir = tempfile::tempdir().unwrap();
    let topic_prefix = unique("bounds");
    let measurement = unique("bounds_meter");
    let port = free_port();
    let mut config = IngestToml::new(servers.mqtt, dir.path(), &format!("{topic_prefix}/#"), &measurement);
    config.sections =
        format!("[decode]\nmax_readings_per_message = {MAX_READINGS}\n\n[window]\nmax_keys = {MAX_KEYS}\n");
    config.http_listen = format!("127.0.0.1:{port}");
    config.sinks = IngestToml::influxdb_v1(&servers.influxdb_v1, INFLUX_DB, "");
    let config = config.to_toml();
    let mut ingest = tokio::task::block_in_place(|| {
        let mut ingest = GridcastProcess::start("ingest", dir.path(), &config, &[]);
        ingest.wait_subscribed(1);
        ingest
    });

    // The meters first, so their keys are known before the flood.
    let readings = simulated_readings(SENSORS, MINUTES);
    let expected = expected_minutes(&readings);
    let first_ts = readings[0].ts_secs;
    let options = PublishOptions {
        host: servers.mqtt.ip().to_string(),
        port: servers.mqtt.port(),
        client_id: unique("bounds-meter"),
        topic_prefix: format!("{topic_prefix}/raw"),
        speedup: 0.0,
        ..PublishOptions::default()
    };
    let report = publish(&options, readings, |_| {}).await.unwrap();

    // Then the bad input, at QoS 1 like everything else.
    let oversized = vec![b'['; 2 << 20];
    let array: String = {
        let one = format!(r#"{{"ts":{first_ts},"sensor":"array","p_l1":1}}"#);
        format!("[{}]", vec![one; 5 * MAX_READINGS].join(","))
    };
    let flood: Vec<Vec<u8>> =
        (0..FLOOD).map(|i| format!(r#"{{"ts":{first_ts},"sensor":"flood-{i}","p_l1":1}}"#).into_bytes()).collect();
    let mut messages = vec![oversized, array.into_bytes()];
    messages.extend(flood);
    let topic = format!("{topic_prefix}/bad");
    publish_all(servers.mqtt, messages.into_iter().map(|m| (topic.clone(), m)).collect()).await;

    let metrics = tokio::task::block_in_place(|| {
        ingest.wait_for(Duration::from_secs(60), "every bad message counted", || {
            let m = gridcast_metrics(port)?;
            let counted = m.get(r#"decode_errors_total{kind="too_large"}"#) == Some(&1.0)
                && m.get(r#"decode_errors_total{kind="too_many_readings"}"#) == Some(&1.0)
                && m.get("stage_key_limit_readings_total") == Some(&((FLOOD - (MAX_KEYS - SENSORS as usize)) as f64));
            counted.then_some(m)
        })
    });
    let taken = report.messages_published as usize + 2 + FLOOD;
    assert_eq!(metrics["stage_messages_total"], taken as f64, "every message taken (and so acknowledged)");

    // The meters' windows: every one, exact.
    let url = servers.influxdb_v1.clone();
    let rows = tokio::task::block_in_place(|| {
        ingest.wait_for(Duration::from_secs(60), "the meters' windows in InfluxDB", || {
            let rows: Vec<_> = influx_rows(&url, &measurement)
                .into_iter()
                .filter(|r| !r[1].as_str().unwrap_or_default().starts_with("flood-"))
                .collect();
            (rows.len() == expected.len()).then_some(rows)
        })
    });
    check_influx_rows(&rows, &expected);

    // The oversized payload is kept, by its start.
    let rejected = std::fs::read_to_string(dir.path().join("spool/rejected/messages.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = rejected.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let big = records.iter().find(|r| r["payload_bytes"] == 2 << 20).expect("the oversized payload kept");
    assert_eq!(big["payload_truncated"], true);
    assert_eq!(big["payload_hex"].as_str().unwrap().len(), 2 * (64 << 10));
    assert!(big["error"].as_str().unwrap().contains("over the limit of 1048576"), "{big}");
    assert!(records.iter().any(|r| r["error"].as_str().unwrap().contains("more than 1000 readings")));
    let log = ingest.log();
    assert!(log.contains("max_keys sensors are kept already"), "the flood is logged:\n{log}");
    ingest.assert_running();
}
