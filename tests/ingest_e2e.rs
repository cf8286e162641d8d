//! The edge data path end to end, on real servers: 10 simulated minutes of
//! 12 Hz binary readings from 3 sensors go through Mosquitto (QoS 1) into
//! `gridcast ingest`, which writes minute windows to InfluxDB 1.x (`/write`)
//! and to VictoriaMetrics (`/api/v2/write`). Every minute mean read back
//! (InfluxQL; VictoriaMetrics' export API) must equal the mean computed here
//! from the published values, to 1e-9 relative.
//!
//! Needs the shared test servers: run `scripts/test`, or
//! `scripts/test-servers start && source target/test-servers/env`.

mod support;

use std::path::Path;
use std::time::Duration;

use gridcast_edge::sinks::{HttpOptions, SinkConfig};
use gridcast_ingest::IngestConfig;
use gridcast_simulator::{PublishOptions, publish};
use serde_json::Value;

use support::meter::{Expected, check_influx_rows, close, expected_minutes, influx_rows, simulated_readings};
use support::{INFLUX_DB, SharedServers, eventually, shared_servers, unique, victoria_export, victoria_flush};

const SENSORS: u32 = 3;
const MINUTES: usize = 10;
const TOLERANCE: f64 = 1e-9;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_minute_mean_in_influxdb_and_victoriametrics_equals_the_published_mean() {
    let servers = shared_servers();
    let dir = tempfile::tempdir().unwrap();
    let topic_prefix = unique("e2e/raw");
    let measurement = unique("e2e_meter");

    let mut config = ingest_config(&servers, dir.path(), &topic_prefix);
    config.pipeline.measurement = measurement.clone();
    config.pipeline.idle_close_secs = 2;
    config.sinks = vec![
        SinkConfig::InfluxdbV1 {
            url: servers.influxdb_v1.clone(),
            database: INFLUX_DB.into(),
            retention_policy: None,
            username: None,
            password: None,
            password_file: None,
            http: HttpOptions::default(),
        },
        SinkConfig::InfluxdbV2 {
            url: servers.victoria.clone(),
            org: "gridcast".into(),
            bucket: "gridcast".into(),
            token: None,
            token_file: None,
            http: HttpOptions::default(),
        },
    ];
    let ingest = gridcast_ingest::Ingest::start(config).await.expect("ingest starts");
    ingest.subscribed(Duration::from_secs(10)).await.expect("ingest subscribed");

    let readings = simulated_readings(SENSORS, MINUTES);
    let expected = expected_minutes(&readings);
    assert_eq!(expected.len(), SENSORS as usize * MINUTES);
    let options = PublishOptions {
        host: servers.mqtt.ip().to_string(),
        port: servers.mqtt.port(),
        client_id: unique("e2e-meter"),
        topic_prefix,
        speedup: 0.0,
        ..PublishOptions::default()
    };
    let report = publish(&options, readings, |_| {}).await.expect("publish");
    assert_eq!(report.messages_acked, report.messages_published);

    let influx = servers.influxdb_v1.clone();
    let m = measurement.clone();
    let rows = tokio::task::spawn_blocking(move || {
        eventually(Duration::from_secs(60), "every window in InfluxDB", || {
            let rows = influx_rows(&influx, &m);
            (rows.len() == SENSORS as usize * MINUTES).then_some(rows)
        })
    })
    .await
    .unwrap();
    check_influx_rows(&rows, &expected);

    let vm = servers.victoria.clone();
    let m = measurement.clone();
    let series = tokio::task::spawn_blocking(move || {
        eventually(Duration::from_secs(30), "every window in VictoriaMetrics", || {
            victoria_flush(&vm);
            let series = victoria_export(&vm, &format!(r#"{{__name__=~"{m}_(p_l[123]|p_sum)_mean|{m}_readings"}}"#));
            let complete = series.len() == 5 * SENSORS as usize
                && series.iter().all(|s| s["values"].as_array().is_some_and(|v| v.len() == MINUTES));
            complete.then_some(series)
        })
    })
    .await
    .unwrap();
    check_victoria_series(&series, &measurement, &expected);

    let stats = ingest.stats.snapshot();
    assert_eq!(stats.readings, SENSORS as u64 * MINUTES as u64 * 720);
    assert_eq!(stats.decode_errors_total(), 0);
    assert_eq!(stats.late_readings, 0);

    // Ingest's own /metrics and /health show the same counters.
    let addr = ingest.http_addr.expect("ingest serves /metrics");
    let (metrics, health) = tokio::task::spawn_blocking(move || {
        (support::http::get(&format!("http://{addr}/metrics")), support::http::get(&format!("http://{addr}/health")))
    })
    .await
    .unwrap();
    let text = metrics.text();
    assert!(text.contains(&format!("\ngridcast_stage_readings_total {}\n", stats.readings)), "{text}");
    assert!(text.contains(&format!("\ngridcast_stage_windows_closed_total {}\n", stats.windows_closed)), "{text}");
    assert!(text.contains("gridcast_sink_lines_written_total{sink=\"influxdb_v1 "), "{text}");
    assert_eq!(health.status, 200, "{}", health.text());
    ingest.stop().await.unwrap();
}

/// Ingest on the shared broker, reading `{topic_prefix}/#` with its own
/// client id, its spool under `dir`, `/metrics` on a free port.
fn ingest_config(servers: &SharedServers, dir: &Path, topic_prefix: &str) -> IngestConfig {
    let mut config = IngestConfig::default();
    config.mqtt.host = servers.mqtt.ip().to_string();
    config.mqtt.port = servers.mqtt.port();
    config.mqtt.client_id = unique("e2e-ingest");
    config.mqtt.topics = vec![format!("{topic_prefix}/#")];
    config.spool.dir = dir.join("spool");
    config.http.listen = "127.0.0.1:0".into();
    config
}

fn check_victoria_series(series: &[Value], measurement: &str, expected: &Expected) {
    for s in series {
        let name = s["metric"]["__name__"].as_str().unwrap();
        let sensor = s["metric"]["sensor"].as_str().unwrap().to_string();
        assert_eq!(s["metric"]["source"], "raw");
        let field = name.strip_prefix(&format!("{measurement}_")).unwrap();
        let times = s["timestamps"].as_array().unwrap();
        let values = s["values"].as_array().unwrap();
        for (t, v) in times.iter().zip(values) {
            let time = t.as_i64().unwrap();
            let got = v.as_f64().unwrap();
            let want = &expected[&(sensor.clone(), time)];
            let w = match field {
                "p_l1_mean" => want.p_mean[0],
                "p_l2_mean" => want.p_mean[1],
                "p_l3_mean" => want.p_mean[2],
                "p_sum_mean" => want.p_sum_mean,
                "readings" => want.readings as f64,
                other => panic!("unexpected series {other}"),
            };
            assert!(
                close(got, w, TOLERANCE),
                "VictoriaMetrics {sensor} minute {time} {field}: got {got}, expected {w}"
            );
        }
    }
}

/// The sinks' start-up check names a wrong database before any data flows,
/// and ingest does not start on it.
#[tokio::test]
async fn a_sink_with_a_missing_database_stops_ingest_at_start_up_naming_it() {
    let servers = shared_servers();
    let dir = tempfile::tempdir().unwrap();
    let mut config = ingest_config(&servers, dir.path(), &unique("e2e/bad-db"));
    config.sinks = vec![SinkConfig::InfluxdbV1 {
        url: servers.influxdb_v1.clone(),
        database: "no_such_database".into(),
        retention_policy: None,
        username: None,
        password: None,
        password_file: None,
        http: HttpOptions::default(),
    }];
    let error = match gridcast_ingest::Ingest::start(config).await {
        Ok(_) => panic!("ingest started with a sink whose database does not exist"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains("no_such_database") && error.contains("404"), "{error}");
}

/// Dropping a running ingest stops every task it started (source, driver,
/// sinks, HTTP server): the spool, which one opener at a time may hold, can
/// be opened again.
#[tokio::test]
async fn dropping_a_running_ingest_stops_every_task_it_started() {
    let servers = shared_servers();
    let dir = tempfile::tempdir().unwrap();
    let mut config = ingest_config(&servers, dir.path(), &unique("e2e/drop"));
    config.sinks = vec![SinkConfig::File { dir: dir.path().join("lines") }];
    let ingest = gridcast_ingest::Ingest::start(config).await.expect("ingest starts");
    ingest.subscribed(Duration::from_secs(10)).await.expect("ingest subscribed");
    let spool_dir = dir.path().join("spool");
    assert!(gridcast_edge::Spool::open(&spool_dir, 1, &[]).is_err(), "a running ingest holds its spool");
    drop(ingest);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while let Err(e) = gridcast_edge::Spool::open(&spool_dir, 1, &[]) {
        assert!(std::time::Instant::now() < deadline, "the spool is still held 10 s after the drop: {e}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
