//! One fault scenario: a private Mosquitto and InfluxDB, `gridcast ingest`
//! writing to InfluxDB and to a file sink (the file keeps every write, so a
//! window written twice shows), simulated meters publishing at QoS 1, and
//! the numbers of the report read back from what was stored.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use gridcast_simulator::{PublishOptions, PublishReport, SimReading, publish};

use crate::report::FaultRecord;
use crate::support::gridcast::{GridcastProcess, IngestToml};
use crate::support::meter::{Expected, close, influx_rows};
use crate::support::{INFLUX_DB, Influxd, Mosquitto, free_port, unique};

/// Meters publish this many times faster than real time.
pub const SPEEDUP: f64 = 40.0;
pub const SENSORS: u32 = 3;
/// `[window] lateness_secs` (ingest's default).
const LATENESS_MS: i64 = 5_000;

pub struct Scenario {
    pub dir: tempfile::TempDir,
    pub mosquitto: Mosquitto,
    pub influxd: Influxd,
    pub ingest: GridcastProcess,
    pub measurement: String,
    pub topic_prefix: String,
    /// The newest reading time (ms) handed to a publisher so far.
    pub newest_sent_ms: Arc<AtomicI64>,
    metrics_port: u16,
}

impl Scenario {
    /// The port of ingest's `/metrics`.
    fn metrics_port(&self) -> u16 {
        self.metrics_port
    }

    pub fn start() -> Scenario {
        let dir = tempfile::tempdir().unwrap();
        let mosquitto = Mosquitto::start(dir.path().join("mosquitto"));
        let influxd = Influxd::start(dir.path().join("influxd"));
        let measurement = unique("fault_meter");
        let topic_prefix = unique("fault/raw");
        let broker = format!("127.0.0.1:{}", mosquitto.port()).parse().unwrap();
        let mut config = IngestToml::new(broker, dir.path(), &format!("{topic_prefix}/#"), &measurement);
        config.client_id = unique("fault-ingest");
        config.idle_close_secs = 3;
        let metrics_port = free_port();
        config.http_listen = format!("127.0.0.1:{metrics_port}");
        let lines = dir.path().join("lines");
        config.sinks = IngestToml::influxdb_v1(&influxd.url(), INFLUX_DB, "\n[sinks.http]\nretry_max_ms = 1000\n")
            + &format!("\n[[sinks]]\nkind = \"file\"\ndir = {:?}\n", lines.display().to_string());
        let mut ingest = GridcastProcess::start("ingest", dir.path(), &config.to_toml(), &[]);
        ingest.wait_subscribed(1);
        let newest_sent_ms = Arc::new(AtomicI64::new(i64::MIN));
        Scenario { dir, mosquitto, influxd, ingest, measurement, topic_prefix, newest_sent_ms, metrics_port }
    }

    /// Publishes `readings` in the background at QoS 1, as the meters'
    /// gateway would, keeping [`Scenario::newest_sent_ms`] up to date.
    pub fn publish(&self, readings: Vec<SimReading>) -> thread::JoinHandle<PublishReport> {
        self.publish_with(readings, self.newest_sent_ms.clone())
    }

    /// Publishes `readings` like [`Scenario::publish`], but leaves
    /// [`Scenario::newest_sent_ms`] to the main publisher.
    pub fn publish_untracked(&self, readings: Vec<SimReading>) -> thread::JoinHandle<PublishReport> {
        self.publish_with(readings, Arc::new(AtomicI64::new(i64::MIN)))
    }

    fn publish_with(&self, readings: Vec<SimReading>, newest: Arc<AtomicI64>) -> thread::JoinHandle<PublishReport> {
        let options = PublishOptions {
            port: self.mosquitto.port(),
            client_id: unique("fault-meter"),
            topic_prefix: self.topic_prefix.clone(),
            speedup: SPEEDUP,
            ..PublishOptions::default()
        };
        thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            let readings = readings.into_iter().inspect(move |r| {
                newest.fetch_max((r.ts_secs * 1000.0) as i64, Ordering::Relaxed);
            });
            runtime.block_on(publish(&options, readings, |_| {})).expect("every message acknowledged")
        })
    }

    /// Waits until meters have published up to `ts_ms` (event time).
    pub fn wait_sent_until(&self, ts_ms: i64) {
        crate::support::eventually(Duration::from_secs(120), "the meters to get that far", || {
            (self.newest_sent_ms.load(Ordering::Relaxed) >= ts_ms).then_some(())
        });
    }

    /// Waits until InfluxDB holds `windows` windows: the path works before
    /// the fault.
    pub fn wait_windows(&mut self, windows: usize) {
        let (url, measurement) = (self.influxd.url(), self.measurement.clone());
        self.ingest.wait_for(Duration::from_secs(120), "windows in InfluxDB before the fault", || {
            (influx_rows(&url, &measurement).len() >= windows).then_some(())
        });
    }

    /// Seconds from `restored` until ingest is connected to the broker
    /// again and InfluxDB holds every expected window that the readings
    /// sent before `restored` complete (each window ends a lateness before
    /// the newest reading then).
    pub fn recovery_secs(&mut self, restored: Instant, sent_ms_at_restore: i64, expected: &Expected) -> f64 {
        let port = self.metrics_port();
        self.ingest.wait_for(Duration::from_secs(120), "ingest connected to the broker again", || {
            let connected = crate::support::http::gridcast_metrics(port)?.get("mqtt_connected").copied();
            (connected == Some(1.0)).then_some(())
        });
        let due: BTreeSet<(String, i64)> =
            expected.keys().filter(|(_, minute)| minute + 60_000 + LATENESS_MS < sent_ms_at_restore).cloned().collect();
        let (url, measurement) = (self.influxd.url(), self.measurement.clone());
        self.ingest.wait_for(outage() + Duration::from_secs(120), "the windows due at the restore", || {
            let stored: BTreeSet<(String, i64)> = influx_rows(&url, &measurement)
                .iter()
                .map(|row| (row[1].as_str().unwrap_or_default().to_owned(), row[0].as_i64().unwrap_or_default()))
                .collect();
            due.is_subset(&stored).then_some(())
        });
        restored.elapsed().as_secs_f64()
    }

    /// Waits for the meters, then for every expected window in InfluxDB (or
    /// the timeout), and counts what was stored, kept aside, lost and
    /// doubled into `record`. Asserts nothing: the caller does, after the
    /// record is written.
    pub fn measure(
        &mut self,
        publishers: Vec<thread::JoinHandle<PublishReport>>,
        expected: &Expected,
        record: &mut FaultRecord,
    ) {
        for publisher in publishers {
            record.readings_sent += publisher.join().expect("the publisher finished").readings;
        }
        let (url, measurement) = (self.influxd.url(), self.measurement.clone());
        let deadline = Instant::now() + Duration::from_secs(120);
        let rows = loop {
            let rows = influx_rows(&url, &measurement);
            if compare(&rows, expected).exact == expected.len() || Instant::now() > deadline {
                break rows;
            }
            self.ingest.assert_running();
            thread::sleep(Duration::from_millis(200));
        };
        let counts = compare(&rows, expected);
        record.sensors = SENSORS;
        record.speedup = SPEEDUP;
        record.windows_expected = expected.len();
        record.windows_exact = counts.exact;
        record.windows_wrong = counts.wrong;
        record.windows_missing = expected.len() - counts.exact - counts.wrong;
        record.readings_in_windows = rows.iter().map(|row| row[2].as_u64().unwrap_or_default()).sum();
        record.readings_kept_aside = kept_aside_readings(&self.dir.path().join("spool/rejected/messages.jsonl"));
        record.readings_lost =
            record.readings_sent.saturating_sub(record.readings_in_windows + record.readings_kept_aside);
        let (doubled, redelivered) = file_sink_repeats(&self.dir.path().join("lines"), &self.measurement);
        record.windows_doubled = doubled;
        record.lines_redelivered = redelivered;
    }
}

/// How long each outage lasts: `GRIDCAST_FAULT_OUTAGE_SECS` (8 s by
/// default, as CI runs it; the README's report comes from a 600 s run).
pub fn outage() -> Duration {
    crate::outage()
}

/// Minutes of readings that keep the meters publishing through the fault:
/// a few seconds before it, the outage, and some after.
pub fn minutes_for(outage: Duration) -> usize {
    let real_secs = outage.as_secs_f64() + 16.0;
    ((real_secs * SPEEDUP / 60.0).ceil() as usize).max(12)
}

#[derive(Debug, Default)]
struct Compared {
    exact: usize,
    wrong: usize,
}

/// Windows in `rows` equal to their expected minute (every reading, means
/// to 1e-9), and those present but different.
fn compare(rows: &[Vec<serde_json::Value>], expected: &Expected) -> Compared {
    let mut compared = Compared::default();
    for row in rows {
        let (Some(time), Some(sensor)) = (row[0].as_i64(), row[1].as_str()) else { continue };
        let Some(want) = expected.get(&(sensor.to_owned(), time)) else {
            compared.wrong += 1;
            continue;
        };
        let got: Vec<f64> = row[3..8].iter().map(|v| v.as_f64().unwrap_or(f64::NAN)).collect();
        let want_values = [want.p_mean[0], want.p_mean[1], want.p_mean[2], want.p_sum_mean, want.q_mean[0]];
        let exact =
            row[2].as_u64() == Some(want.readings) && got.iter().zip(want_values).all(|(g, w)| close(*g, w, 1e-9));
        if exact {
            compared.exact += 1;
        } else {
            compared.wrong += 1;
        }
    }
    compared
}

/// Readings ingest kept aside (late or clock-jumped), from its rejected
/// log: each record's reason starts "L late and J clock-jumped of its N
/// readings".
fn kept_aside_readings(log: &Path) -> u64 {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|record| {
            let error = record["error"].as_str()?.to_owned();
            let words: Vec<&str> = error.split_whitespace().collect();
            match words.as_slice() {
                [late, "late", "and", jumped, "clock-jumped", ..] => {
                    Some(late.parse::<u64>().ok()? + jumped.parse::<u64>().ok()?)
                }
                _ => None,
            }
        })
        .sum()
}

/// In the file sink's line-protocol files: windows (series and time) written
/// with two or more different contents, and lines written again identical.
fn file_sink_repeats(dir: &Path, measurement: &str) -> (usize, usize) {
    let mut by_window: BTreeMap<(String, String), BTreeMap<String, usize>> = BTreeMap::new();
    let files: Vec<PathBuf> =
        std::fs::read_dir(dir).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    for file in files {
        for line in std::fs::read_to_string(&file).unwrap_or_default().lines() {
            let Some(rest) = line.strip_prefix(measurement).filter(|r| r.starts_with(',')) else { continue };
            let (Some((series, _)), Some((_, time))) = (rest.split_once(' '), rest.rsplit_once(' ')) else {
                continue;
            };
            *by_window.entry((series.to_owned(), time.to_owned())).or_default().entry(line.to_owned()).or_default() +=
                1;
        }
    }
    let doubled = by_window.values().filter(|contents| contents.len() > 1).count();
    let redelivered = by_window.values().flat_map(|contents| contents.values()).map(|n| n - 1).sum();
    (doubled, redelivered)
}
