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

use gridcast_simulator::{PublishOptions, PublishReport, SimReading};

use crate::netns::Netns;
use crate::report::FaultRecord;
use crate::support::gridcast::{GridcastProcess, IngestToml};
use crate::support::meter::{Expected, close, influx_rows, publish_in_background};
use crate::support::{INFLUX_DB, Influxd, Mosquitto, unique};

/// Meters publish this many times faster than real time.
pub const SPEEDUP: f64 = 40.0;
pub const SENSORS: u32 = 3;
/// `[window] lateness_secs` (ingest's default).
const LATENESS_MS: i64 = 5_000;

pub struct Scenario {
    pub dir: tempfile::TempDir,
    pub mosquitto: Mosquitto,
    /// InfluxDB, unless ingest runs behind a link to cut (its namespace
    /// reaches only the broker): then the file sink is what is checked.
    influxd: Option<Influxd>,
    /// The namespace and link ingest runs behind, if it does.
    pub link: Option<Netns>,
    /// The small disk ingest's spool is on, if it is.
    pub disk: Option<Tmpfs>,
    pub ingest: GridcastProcess,
    pub measurement: String,
    pub topic_prefix: String,
    /// The newest reading time (ms) handed to a publisher so far.
    pub newest_sent_ms: Arc<AtomicI64>,
}

impl Scenario {
    /// Ingest on loopback, writing to InfluxDB and to a file sink.
    pub fn start() -> Scenario {
        let dir = tempfile::tempdir().unwrap();
        let mosquitto = Mosquitto::start(dir.path().join("mosquitto"));
        let influxd = Influxd::start(dir.path().join("influxd"));
        let broker = format!("127.0.0.1:{}", mosquitto.port()).parse().unwrap();
        let sinks = IngestToml::influxdb_v1(&influxd.url(), INFLUX_DB, "\n[sinks.http]\nretry_max_ms = 1000\n");
        Self::launch(dir, mosquitto, Some(influxd), None, broker, sinks)
    }

    /// Ingest on loopback as [`Scenario::start`], its spool on a tmpfs of
    /// `mib` MiB of its own (mounted here, unmounted on drop), to fill.
    pub fn start_on_small_disk(mib: u32) -> Scenario {
        let dir = tempfile::tempdir().unwrap();
        let disk = Tmpfs::mount(&dir.path().join("disk"), mib);
        let mosquitto = Mosquitto::start(dir.path().join("mosquitto"));
        let influxd = Influxd::start(dir.path().join("influxd"));
        let broker = format!("127.0.0.1:{}", mosquitto.port()).parse().unwrap();
        let sinks = IngestToml::influxdb_v1(&influxd.url(), INFLUX_DB, "\n[sinks.http]\nretry_max_ms = 1000\n");
        let mut s =
            Self::launch_with(dir, mosquitto, Some(influxd), None, broker, sinks, Some(disk.path.join("spool")));
        s.disk = Some(disk);
        s
    }

    /// Ingest in a network namespace of its own, reaching the broker over a
    /// veth link the test can cut, writing to a file sink only.
    pub fn start_behind_link() -> Scenario {
        let dir = tempfile::tempdir().unwrap();
        let link = Netns::create();
        let host = link.host_addr.clone();
        let mosquitto = Mosquitto::start_with_listener(dir.path().join("mosquitto"), |port| {
            format!("listener {port} {host}\nallow_anonymous true\n")
        });
        let port = mosquitto.second_port().expect("the listener on the link");
        let broker = format!("{host}:{port}").parse().unwrap();
        Self::launch(dir, mosquitto, None, Some(link), broker, String::new())
    }

    fn launch(
        dir: tempfile::TempDir,
        mosquitto: Mosquitto,
        influxd: Option<Influxd>,
        link: Option<Netns>,
        broker: std::net::SocketAddr,
        sinks: String,
    ) -> Scenario {
        Self::launch_with(dir, mosquitto, influxd, link, broker, sinks, None)
    }

    fn launch_with(
        dir: tempfile::TempDir,
        mosquitto: Mosquitto,
        influxd: Option<Influxd>,
        link: Option<Netns>,
        broker: std::net::SocketAddr,
        sinks: String,
        spool: Option<PathBuf>,
    ) -> Scenario {
        let measurement = unique("fault_meter");
        let topic_prefix = unique("fault/raw");
        let mut config = IngestToml::new(broker, dir.path(), &format!("{topic_prefix}/#"), &measurement);
        config.client_id = unique("fault-ingest");
        // A cut link sends no FIN: the keep-alive notices it, after about
        // two of them; until then the silence looks like quiet meters, so
        // windows idle-close only after three (ingest warns below that).
        config.mqtt_extra += "keep_alive_secs = 5\n";
        config.idle_close_secs = 15;
        if let Some(spool) = spool {
            config.spool = spool;
        }
        let lines = dir.path().join("lines");
        config.sinks = sinks + &format!("\n[[sinks]]\nkind = \"file\"\ndir = {:?}\n", lines.display().to_string());
        let netns = link.as_ref().map(|l| l.name.as_str());
        let mut ingest = GridcastProcess::start_in(netns, "ingest", dir.path(), &config.to_toml(), &[]);
        ingest.wait_subscribed(1);
        let newest_sent_ms = Arc::new(AtomicI64::new(i64::MIN));
        Scenario { dir, mosquitto, influxd, link, disk: None, ingest, measurement, topic_prefix, newest_sent_ms }
    }

    pub fn influxd(&mut self) -> &mut Influxd {
        self.influxd.as_mut().expect("this scenario runs InfluxDB")
    }

    /// The raw windows stored, as [`influx_rows`] gives them: from InfluxDB,
    /// or from the file sink when there is none.
    fn rows(&self) -> Vec<Vec<serde_json::Value>> {
        match &self.influxd {
            Some(influxd) => influx_rows(&influxd.url(), &self.measurement),
            None => file_rows(&self.dir.path().join("lines"), &self.measurement),
        }
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
            // The meters' gateway waits out the broker's outage (its
            // default gives up after a minute without acknowledgements).
            ack_timeout: outage() + Duration::from_secs(120),
            ..PublishOptions::default()
        };
        let readings = readings.into_iter().inspect(move |r| {
            newest.fetch_max((r.ts_secs * 1000.0) as i64, Ordering::Relaxed);
        });
        publish_in_background(options, readings)
    }

    /// Waits until meters have published up to `ts_ms` (event time).
    pub fn wait_sent_until(&self, ts_ms: i64) {
        crate::support::eventually(Duration::from_secs(120), "the meters to get that far", || {
            (self.newest_sent_ms.load(Ordering::Relaxed) >= ts_ms).then_some(())
        });
    }

    /// Waits until `windows` windows are stored: the path works before the
    /// fault.
    pub fn wait_windows(&mut self, windows: usize) {
        let stored = |s: &Scenario| (s.rows().len() >= windows).then_some(());
        let this = &*self;
        crate::support::eventually(Duration::from_secs(120), "windows stored before the fault", || stored(this));
    }

    /// Seconds from `restored` until ingest is connected to the broker
    /// again (its log says so after its last lost connection) and every
    /// expected window that the readings sent before `restored` complete is
    /// stored (each window ends a lateness before the newest reading then).
    pub fn recovery_secs(&mut self, restored: Instant, sent_ms_at_restore: i64, expected: &Expected) -> f64 {
        let due: BTreeSet<(String, i64)> =
            expected.keys().filter(|(_, minute)| minute + 60_000 + LATENESS_MS < sent_ms_at_restore).cloned().collect();
        let this = &*self;
        let deadline = Instant::now() + outage() + Duration::from_secs(120);
        let caught_up = || {
            let log = this.ingest.log();
            let connected = log.rfind("connected to MQTT broker") > log.rfind("MQTT connection lost")
                && log.rfind("connected to MQTT broker") > log.rfind("cannot connect to the MQTT broker");
            let stored: BTreeSet<(String, i64)> = this
                .rows()
                .iter()
                .map(|row| (row[1].as_str().unwrap_or_default().to_owned(), row[0].as_i64().unwrap_or_default()))
                .collect();
            connected && due.is_subset(&stored)
        };
        while !caught_up() {
            if Instant::now() > deadline {
                let log = this.ingest.log();
                let tail: Vec<&str> = log.lines().rev().take(60).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                let broker =
                    std::fs::read_to_string(this.dir.path().join("mosquitto/mosquitto.log")).unwrap_or_default();
                let broker_tail: Vec<&str> = broker.lines().rev().take(30).collect();
                panic!(
                    "ingest did not catch up within {:?} of the restore; ingest log tail:\n{}\nbroker log tail:\n{}",
                    outage() + Duration::from_secs(120),
                    tail.join("\n"),
                    broker_tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            thread::sleep(Duration::from_millis(200));
        }
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
        let deadline = Instant::now() + Duration::from_secs(120);
        let rows = loop {
            let rows = self.rows();
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
        let spool = self.disk.as_ref().map_or_else(|| self.dir.path().join("spool"), |d| d.path.join("spool"));
        record.readings_kept_aside = kept_aside_readings(&spool.join("rejected/messages.jsonl"));
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

/// The file sink's raw windows of `measurement`, as [`influx_rows`] gives
/// them (`[time, sensor, readings, p_l1_mean, p_l2_mean, p_l3_mean,
/// p_sum_mean, q_l1_mean]`), the last line of a window winning as in
/// InfluxDB.
fn file_rows(dir: &Path, measurement: &str) -> Vec<Vec<serde_json::Value>> {
    let mut windows: BTreeMap<(String, i64), Vec<serde_json::Value>> = BTreeMap::new();
    for line in file_sink_lines(dir, measurement) {
        let mut parts = line.split(' ');
        let (Some(series), Some(fields), Some(time)) = (parts.next(), parts.next(), parts.next()) else { continue };
        let tags: BTreeMap<&str, &str> = series.split(',').skip(1).filter_map(|t| t.split_once('=')).collect();
        if tags.get("source") != Some(&"raw") {
            continue;
        }
        let (Some(sensor), Ok(time)) = (tags.get("sensor"), time.parse::<i64>()) else { continue };
        let fields: BTreeMap<&str, &str> = fields.split(',').filter_map(|f| f.split_once('=')).collect();
        let number = |name: &str| -> serde_json::Value {
            match fields.get(name) {
                Some(v) if v.ends_with('i') => {
                    v.trim_end_matches('i').parse::<u64>().map_or(serde_json::Value::Null, Into::into)
                }
                Some(v) => v.parse::<f64>().map_or(serde_json::Value::Null, Into::into),
                None => serde_json::Value::Null,
            }
        };
        let row = vec![
            time.into(),
            (*sensor).into(),
            number("readings"),
            number("p_l1_mean"),
            number("p_l2_mean"),
            number("p_l3_mean"),
            number("p_sum_mean"),
            number("q_l1_mean"),
        ];
        windows.insert(((*sensor).to_owned(), time), row);
    }
    windows.into_values().collect()
}

/// The file sink's lines of `measurement`.
fn file_sink_lines(dir: &Path, measurement: &str) -> Vec<String> {
    let files: Vec<PathBuf> =
        std::fs::read_dir(dir).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    let prefix = format!("{measurement},");
    files
        .iter()
        .flat_map(|file| {
            std::fs::read_to_string(file).unwrap_or_default().lines().map(str::to_owned).collect::<Vec<_>>()
        })
        .filter(|line| line.starts_with(&prefix))
        .collect()
}

/// In the file sink's line-protocol files: windows (series and time) written
/// with two or more different contents, and lines written again identical.
fn file_sink_repeats(dir: &Path, measurement: &str) -> (usize, usize) {
    let mut by_window: BTreeMap<(String, String), BTreeMap<String, usize>> = BTreeMap::new();
    for line in file_sink_lines(dir, measurement) {
        let (Some((series, _)), Some((_, time))) = (line.split_once(' '), line.rsplit_once(' ')) else { continue };
        let window = (series.to_owned(), time.to_owned());
        *by_window.entry(window).or_default().entry(line.clone()).or_default() += 1;
    }
    let doubled = by_window.values().filter(|contents| contents.len() > 1).count();
    let redelivered = by_window.values().flat_map(|contents| contents.values()).map(|n| n - 1).sum();
    (doubled, redelivered)
}

/// A tmpfs of a few MiB, mounted for one scenario: a disk to fill.
pub struct Tmpfs {
    pub path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, mib: u32) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(path)
            .status()
            .expect("run mount");
        assert!(status.success(), "mount a tmpfs on {} (the disk-full fault needs root)", path.display());
        Tmpfs { path: path.to_path_buf() }
    }

    /// Writes a file until the disk is full; returns its path.
    pub fn fill(&self) -> PathBuf {
        use std::io::Write;
        let filler = self.path.join("filler");
        let mut file = std::fs::File::create(&filler).expect("create the filler");
        let block = vec![0u8; 64 << 10];
        while file.write_all(&block).is_ok() {}
        let _ = file.sync_all();
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.path).status();
    }
}
