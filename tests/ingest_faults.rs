//! Faults on the edge data path, against real servers: InfluxDB stopped
//! for part of the run, Mosquitto restarted mid-stream, and `gridcast
//! ingest` killed with SIGKILL and restarted. In each, every minute window
//! of the simulated meters must end up in InfluxDB exactly once, with all
//! 720 readings and the exact mean: none lost, none doubled.
//!
//! Each test runs its own Mosquitto and InfluxDB (they are stopped and
//! restarted) from the binaries `scripts/install-deps` installs, and the
//! `gridcast` binary cargo built, as a child process.

mod support;

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use gridcast_simulator::{PublishOptions, PublishReport, SimReading, publish};

use support::gridcast::{GridcastProcess, IngestToml};
use support::meter::{Expected, check_influx_rows, expected_minutes, influx_rows, simulated_readings};
use support::{INFLUX_DB, Influxd, Mosquitto, unique};

const SENSORS: u32 = 3;
const MINUTES: usize = 12;
/// 12 simulated minutes in 18 s: long enough to break things in the middle.
const SPEEDUP: f64 = 40.0;

struct Scenario {
    _dir: tempfile::TempDir,
    mosquitto: Mosquitto,
    influxd: Influxd,
    ingest: GridcastProcess,
    measurement: String,
    topic_prefix: String,
}

impl Scenario {
    fn start() -> Scenario {
        let dir = tempfile::tempdir().unwrap();
        let mosquitto = Mosquitto::start(dir.path().join("mosquitto"));
        let influxd = Influxd::start(dir.path().join("influxd"));
        let measurement = unique("fault_meter");
        let topic_prefix = unique("fault/raw");
        let config = ingest_config(dir.path(), &mosquitto, &influxd, &measurement, &topic_prefix);
        let mut ingest = GridcastProcess::start("ingest", dir.path(), &config, &[]);
        ingest.wait_subscribed(1);
        Scenario { _dir: dir, mosquitto, influxd, ingest, measurement, topic_prefix }
    }

    /// Publish in the background, at QoS 1, as the meters' gateway would.
    fn publish(&self, readings: Vec<SimReading>) -> thread::JoinHandle<PublishReport> {
        let options = PublishOptions {
            port: self.mosquitto.port(),
            client_id: unique("fault-meter"),
            topic_prefix: self.topic_prefix.clone(),
            speedup: SPEEDUP,
            ..PublishOptions::default()
        };
        thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(publish(&options, readings, |_| {})).expect("every message acknowledged")
        })
    }

    /// Wait until InfluxDB holds as many windows as expected, then check
    /// each one: exactly the expected windows, 720 readings, exact means.
    fn assert_every_window_exactly_once(&mut self, expected: &Expected) {
        let url = self.influxd.url();
        let measurement = self.measurement.clone();
        let deadline = Instant::now() + Duration::from_secs(90);
        let rows = loop {
            let rows = influx_rows(&url, &measurement);
            if rows.len() >= expected.len() {
                break rows;
            }
            if Instant::now() > deadline {
                let log = self.ingest.log();
                let tail: Vec<&str> = log.lines().rev().take(60).collect::<Vec<_>>().into_iter().rev().collect();
                panic!(
                    "{} of {} windows in InfluxDB after 90 s; ingest log tail:\n{}",
                    rows.len(),
                    expected.len(),
                    tail.join("\n")
                );
            }
            thread::sleep(Duration::from_millis(200));
        };
        self.ingest.assert_running();
        assert_eq!(rows.len(), expected.len(), "windows in InfluxDB vs published minutes");
        check_influx_rows(&rows, expected);
    }
}

fn ingest_config(dir: &Path, mosquitto: &Mosquitto, influxd: &Influxd, measurement: &str, topics: &str) -> String {
    let broker = format!("127.0.0.1:{}", mosquitto.port()).parse().unwrap();
    let mut config = IngestToml::new(broker, dir, &format!("{topics}/#"), measurement);
    config.client_id = unique("fault-ingest");
    config.idle_close_secs = 3;
    config.sinks = IngestToml::influxdb_v1(&influxd.url(), INFLUX_DB, "\n[sinks.http]\nretry_max_ms = 1000\n");
    config.to_toml()
}

fn readings() -> (Vec<SimReading>, Expected) {
    let readings = simulated_readings(SENSORS, MINUTES);
    let expected = expected_minutes(&readings);
    assert_eq!(expected.len(), SENSORS as usize * MINUTES);
    (readings, expected)
}

#[test]
fn influxdb_down_for_part_of_the_run_loses_no_window() {
    let mut s = Scenario::start();
    let (readings, expected) = readings();
    let publisher = s.publish(readings);
    thread::sleep(Duration::from_secs(4));
    s.influxd.stop();
    thread::sleep(Duration::from_secs(8));
    s.influxd.restart();
    publisher.join().unwrap();
    s.assert_every_window_exactly_once(&expected);
    assert!(s.ingest.log().contains("windows wait in the spool"), "the outage was seen:\n{}", s.ingest.log());
}

#[test]
fn mosquitto_restarted_mid_stream_loses_no_window() {
    let mut s = Scenario::start();
    let (readings, expected) = readings();
    let publisher = s.publish(readings);
    thread::sleep(Duration::from_secs(6));
    s.mosquitto.restart();
    thread::sleep(Duration::from_secs(4));
    s.mosquitto.restart();
    let report = publisher.join().unwrap();
    assert!(report.reconnects >= 1, "the publisher saw the broker go: {report:?}");
    s.assert_every_window_exactly_once(&expected);
    assert!(s.ingest.log().contains("MQTT connection lost"), "ingest saw the broker go:\n{}", s.ingest.log());
}

#[test]
fn ingest_killed_with_sigkill_and_restarted_loses_no_window() {
    let mut s = Scenario::start();
    let (readings, expected) = readings();
    let publisher = s.publish(readings);
    thread::sleep(Duration::from_secs(5));
    s.ingest.kill();
    thread::sleep(Duration::from_secs(2));
    s.ingest.restart();
    thread::sleep(Duration::from_secs(5));
    // Killed again, restarted at once: a crash loop must not lose or double either.
    s.ingest.restart();
    publisher.join().unwrap();
    s.assert_every_window_exactly_once(&expected);
    assert!(s.ingest.log().contains("replayed the spool journal"), "the journal was replayed:\n{}", s.ingest.log());
}
