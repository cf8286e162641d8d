//! The test servers themselves, before any gridcast code is involved: a
//! private InfluxDB and VictoriaMetrics each take a write and give it back,
//! and a private Mosquitto keeps a persistent session's queued message
//! across a restart. When these fail, the black-box tests that use the same
//! servers cannot pass: fix the servers first.

mod support;

use std::time::{Duration, Instant};

use rumqttc::{Client, Connection, Event, MqttOptions, Packet, QoS};
use serde_json::json;

use support::{
    INFLUX_DB, Influxd, Mosquitto, Victoria, eventually, influx_write, influxql_values, unique, victoria_export,
    victoria_flush, victoria_write,
};

/// 2006-12-16 17:24 UTC, the first minute of the sample data.
const SAMPLE_START_MS: i64 = 1_166_289_840_000;

fn now_ms() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    i64::try_from(now.as_millis()).unwrap() / 60_000 * 60_000
}

#[test]
fn influxd_returns_points_from_2006_and_from_now_and_keeps_them_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut influxd = Influxd::start(dir.path());
    let now = now_ms();
    influx_write(
        &influxd.url(),
        INFLUX_DB,
        &format!(
            "smoke_power,phase=1 active=1.5,reactive=0.25 {SAMPLE_START_MS}\n\
             smoke_power,phase=1 active=2.5,reactive=0.5 {now}\n"
        ),
    );
    let query = "SELECT active, reactive FROM smoke_power WHERE phase = '1'";
    let expected =
        vec![vec![json!(SAMPLE_START_MS), json!(1.5), json!(0.25)], vec![json!(now), json!(2.5), json!(0.5)]];
    assert_eq!(influxql_values(&influxd.url(), INFLUX_DB, query), expected);

    influxd.restart();
    assert_eq!(influxql_values(&influxd.url(), INFLUX_DB, query), expected);
}

#[test]
fn victoria_exports_points_from_2006_and_from_now_named_measurement_underscore_field() {
    let dir = tempfile::tempdir().unwrap();
    let mut victoria = Victoria::start(dir.path());
    let now = now_ms();
    // The second write repeats the first point: deduplication keeps one.
    for _ in 0..2 {
        victoria_write(
            &victoria.url(),
            &format!(
                "smoke_power,phase=1 active=1.5,reactive=0.25 {SAMPLE_START_MS}\n\
                 smoke_power,phase=1 active=2.5 {now}\n"
            ),
        );
    }
    victoria_flush(&victoria.url());
    let active = r#"smoke_power_active{phase="1"}"#;
    let series = eventually(Duration::from_secs(10), "smoke_power_active in the export", || {
        let series = victoria_export(&victoria.url(), active);
        (series.first().is_some_and(|s| s["values"].as_array().is_some_and(|v| v.len() == 2))).then_some(series)
    });
    assert_eq!(series.len(), 1, "{series:?}");
    assert_eq!(series[0]["metric"], json!({"__name__": "smoke_power_active", "phase": "1"}));
    assert_eq!(series[0]["values"], json!([1.5, 2.5]));
    assert_eq!(series[0]["timestamps"], json!([SAMPLE_START_MS, now]));
    let reactive = victoria_export(&victoria.url(), "smoke_power_reactive");
    assert_eq!(reactive.len(), 1, "{reactive:?}");
    assert_eq!(reactive[0]["values"], json!([0.25]));

    victoria.restart();
    let series = victoria_export(&victoria.url(), active);
    assert_eq!(series[0]["values"], json!([1.5, 2.5]), "after restart: {series:?}");
}

#[test]
fn mosquitto_delivers_a_message_queued_for_a_persistent_session_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut mosquitto = Mosquitto::start(dir.path());
    let topic = unique("smoke/readings");
    let subscriber_id = unique("smoke-subscriber");

    // A persistent session subscribes at QoS 1, then goes away.
    let (subscriber, mut connection) = connect(&mosquitto, &subscriber_id, false);
    subscriber.subscribe(&topic, QoS::AtLeastOnce).unwrap();
    next_packet(&mut connection, "SUBACK", |p| matches!(p, Packet::SubAck(_)));
    drop((subscriber, connection));

    // A reading arrives while it is away; the broker queues it.
    let (publisher, mut connection) = connect(&mosquitto, &unique("smoke-publisher"), true);
    publisher.publish(&topic, QoS::AtLeastOnce, false, b"queued".to_vec()).unwrap();
    next_packet(&mut connection, "PUBACK", |p| matches!(p, Packet::PubAck(_)));
    drop((publisher, connection));

    // The broker restarts (SIGTERM saves the queue, start reloads it) ...
    mosquitto.restart();

    // ... and the session gets the reading without subscribing again.
    let (_subscriber, mut connection) = connect(&mosquitto, &subscriber_id, false);
    let publish = next_packet(&mut connection, "the queued PUBLISH", |p| matches!(p, Packet::Publish(_)));
    let Packet::Publish(publish) = publish else { unreachable!() };
    assert_eq!(publish.topic, topic);
    assert_eq!(&publish.payload[..], b"queued");
}

fn connect(mosquitto: &Mosquitto, id: &str, clean_session: bool) -> (Client, Connection) {
    let mut options = MqttOptions::new(id, "127.0.0.1", mosquitto.port());
    options.set_clean_session(clean_session).set_keep_alive(Duration::from_secs(10));
    let (client, mut connection) = Client::new(options, 10);
    next_packet(&mut connection, "CONNACK", |p| matches!(p, Packet::ConnAck(_)));
    (client, connection)
}

/// Drives the connection until an incoming packet matches, within 10 s.
fn next_packet(connection: &mut Connection, what: &str, wanted: impl Fn(&Packet) -> bool) -> Packet {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match connection.recv_timeout(left) {
            Ok(Ok(Event::Incoming(packet))) if wanted(&packet) => return packet,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("MQTT connection failed while waiting for {what}: {e}"),
            Err(e) => panic!("no {what} within 10 s: {e:?}"),
        }
    }
}
