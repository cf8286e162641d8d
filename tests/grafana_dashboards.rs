//! The Grafana dashboards, checked the only way possible without a Grafana
//! server: every panel's InfluxQL query, and every template variable's, is
//! run against a real InfluxDB 1.x holding windows that `gridcast ingest`
//! wrote from simulated meters (raw 12 Hz readings and the meter's own
//! one-minute feature 17), with Grafana's macros expanded as Grafana would.
//! Each must succeed and return data.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use gridcast_core::payload::encode_one_minute;
use gridcast_ingest::IngestConfig;
use gridcast_ingest::simulate::{PublishOptions, publish, sensor_hex};
use gridcast_ingest::sinks::{HttpOptions, SinkConfig};
use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde_json::Value;

use support::http::{post, query_string};
use support::meter::simulated_readings;
use support::{eventually, influxql_query, shared_servers, unique};

/// The measurement the dashboards read (the ingest default).
const MEASUREMENT: &str = "meter_window";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_panel_query_returns_data_from_real_influxdb() {
    let servers = shared_servers();
    let database = unique("dashboards");
    let created = post(
        &format!("{}/query?{}", servers.influxdb_v1, query_string(&[("q", &format!("CREATE DATABASE {database}"))])),
        b"",
    );
    assert_eq!(created.status, 200, "{}", created.text());

    let dir = tempfile::tempdir().unwrap();
    let topic_prefix = unique("dash");
    let mut config = IngestConfig::default();
    config.mqtt.host = servers.mqtt.ip().to_string();
    config.mqtt.port = servers.mqtt.port();
    config.mqtt.client_id = unique("dash-ingest");
    config.mqtt.topics = vec![format!("{topic_prefix}/#")];
    config.spool.dir = dir.path().join("spool");
    config.pipeline.idle_close_secs = 2;
    config.sinks = vec![SinkConfig::InfluxdbV1 {
        url: servers.influxdb_v1.clone(),
        database: database.clone(),
        retention_policy: None,
        username: None,
        password: None,
        http: HttpOptions::default(),
    }];
    let ingest = gridcast_ingest::Ingest::start(config).await.unwrap();
    ingest.subscribed(Duration::from_secs(10)).await.unwrap();

    // 5 minutes of raw readings from 2 meters, and the meters' own one-minute records.
    let readings = simulated_readings(2, 5);
    let sensors: Vec<[u8; 12]> = {
        let mut s: Vec<[u8; 12]> = readings.iter().map(|r| r.sensor).collect();
        s.sort();
        s.dedup();
        s
    };
    let first_minute = (readings[0].ts_secs / 60.0).floor() * 60.0;
    let options = PublishOptions {
        host: servers.mqtt.ip().to_string(),
        port: servers.mqtt.port(),
        client_id: unique("dash-meter"),
        topic_prefix: format!("{topic_prefix}/raw"),
        speedup: 0.0,
        ..PublishOptions::default()
    };
    publish(&options, readings, |_| {}).await.unwrap();
    publish_one_minute_records(&servers.mqtt.to_string(), &topic_prefix, &sensors, first_minute).await;

    let influx = servers.influxdb_v1.clone();
    let db = database.clone();
    tokio::task::spawn_blocking(move || {
        eventually(Duration::from_secs(60), "raw and one-minute windows", || {
            let answer = influxql_query(
                &influx,
                &db,
                &format!(r#"SELECT count("readings") FROM "{MEASUREMENT}" GROUP BY "source""#),
            );
            let series = answer["results"][0]["series"].as_array().map_or(0, Vec::len);
            (series == 2).then_some(())
        })
    })
    .await
    .unwrap();
    ingest.stop().await.unwrap();

    let sensor_regex = sensors.iter().map(sensor_hex).collect::<Vec<_>>().join("|");
    let time_filter =
        format!("time >= {}ms AND time < {}ms", first_minute as i64 * 1000, (first_minute as i64 + 600) * 1000);
    let mut checked = 0;
    for (dashboard, queries) in dashboard_queries() {
        for (what, query) in queries {
            let query = query
                .replace("$timeFilter", &time_filter)
                .replace("$__interval", "1m")
                .replace("/^$sensor$/", &format!("/^({sensor_regex})$/"));
            let answer = influxql_query(&servers.influxdb_v1, &database, &query);
            let series = answer["results"][0]["series"].as_array().cloned().unwrap_or_default();
            let has_values = series.iter().any(|s| {
                s["values"].as_array().is_some_and(|v| {
                    v.iter().any(|row| row.as_array().is_some_and(|r| r[1..].iter().any(|x| !x.is_null())))
                })
            });
            assert!(has_values, "{dashboard}: {what}: no data from {query:?}: {answer}");
            checked += 1;
        }
    }
    assert!(checked >= 7, "only {checked} queries found in the dashboards");
}

/// Every panel target's and template variable's query, by dashboard file.
fn dashboard_queries() -> Vec<(String, Vec<(String, String)>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("grafana/dashboards");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let mut queries = Vec::new();
        for panel in dashboard["panels"].as_array().into_iter().flatten() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let query = target["query"].as_str().unwrap_or_else(|| {
                    panic!("{}: panel {} has a target without a raw query", path.display(), panel["title"])
                });
                queries.push((format!("panel {:?}", panel["title"].as_str().unwrap_or("")), query.to_string()));
            }
        }
        for variable in dashboard["templating"]["list"].as_array().into_iter().flatten() {
            if let Some(query) = variable["query"].as_str() {
                queries.push((format!("variable ${}", variable["name"].as_str().unwrap_or("")), query.to_string()));
            }
        }
        out.push((path.file_name().unwrap().to_string_lossy().into_owned(), queries));
    }
    assert!(!out.is_empty(), "no dashboards in {}", dir.display());
    out
}

/// The meters' own one-minute records (feature 17) for five minutes.
async fn publish_one_minute_records(broker: &str, topic_prefix: &str, sensors: &[[u8; 12]], first_minute: f64) {
    let (host, port) = broker.rsplit_once(':').unwrap();
    let mut options = MqttOptions::new(unique("dash-minute"), host, port.parse().unwrap());
    options.set_keep_alive(Duration::from_secs(10));
    let (client, mut eventloop) = AsyncClient::new(options, 100);
    let expected_acks = sensors.len() * 5;
    let driver = tokio::spawn(async move {
        let mut acks = 0;
        while acks < expected_acks {
            if let rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)) = eventloop.poll().await.unwrap() {
                acks += 1;
            }
        }
    });
    for minute in 0..5 {
        for sensor in sensors {
            // v i s p q pf phi per phase, in thousandths.
            let phase = [230_000, 2_000, 460_000, 420_000, 150_000, 913, 24_000];
            let payload = encode_one_minute(first_minute + 60.0 * minute as f64, sensor, 0, [phase; 3], [1_000; 3]);
            client
                .publish(
                    format!("{topic_prefix}/one-minute/{}", sensor_hex(sensor)),
                    QoS::AtLeastOnce,
                    false,
                    payload.to_vec(),
                )
                .await
                .unwrap();
        }
    }
    tokio::time::timeout(Duration::from_secs(20), driver).await.expect("one-minute records acknowledged").unwrap();
}
