//! What `gridcast predict` costs while serving 100 sensors at 12 Hz (issue 4).
//!
//! `cargo bench -p gridcast-predictor --bench predict_serving` prints one
//! JSON document and writes it to `bench/results/predictor.json`:
//!
//! - a private Mosquitto (the ingest bench's settings) on a free port;
//! - the real `gridcast` binary (`cargo build --release --bin gridcast`,
//!   run by this bench first; `GRIDCAST_BENCH_NO_BUILD=1` skips that) as a
//!   child process: `gridcast predict --config <file>` with the shipped
//!   model, 60 s intervals (the model's), one async worker (the default),
//!   prediction lines to a file sink and triplets to a `file://` store;
//! - a publisher process (this bench, re-executed) that sends 100 simulated
//!   meters in real time, 12 readings per second each, one reading per
//!   message at QoS 1: 1200 messages/s;
//! - after a warm-up, until the publisher is done: the predictor's CPU
//!   (utime + stime from /proc/PID/stat), its RSS every second (VmRSS) and
//!   peak (VmHWM), Mosquitto's CPU, and the predictor's own counters from
//!   `/metrics`, the bytes it wrote to disk (`write_bytes` of /proc/PID/io);
//!   then a loss check (readings the predictor accepted == readings
//!   published).
//!
//! `GRIDCAST_BENCH_STRACE=1` also counts the predictor's fsync + fdatasync
//! calls in the window (strace attached to it: its CPU figures are then not
//! the baseline's).
//!
//! `GRIDCAST_BENCH_MINUTES` (default [`DEFAULT_MINUTES`]) sets how many minutes are published;
//! the measured window is that less the warm-up. Linux only; needs `mosquitto`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gridcast_simulator::{Generator, GeneratorConfig, PublishOptions, READINGS_PER_SECOND, Series, Start, publish};
use serde_json::json;
use support::{
    Mosquitto, SyncCounter, add_disk_io, disk_write_bytes, load_average, machine, process_cpu_secs, status_kib,
    system_busy_secs,
};

#[path = "../../bench/support/bench_support.rs"]
mod support;

const SENSORS: u32 = 100;
/// Minutes published unless `GRIDCAST_BENCH_MINUTES` says otherwise.
const DEFAULT_MINUTES: usize = 5;
const WARMUP_SECS: u64 = 10;
const INTERVAL_SECS: u32 = 60;
const MIB: f64 = 1024.0;
/// The predictor's batch linger, as an environment override of its config.
const LINGER_ENV: &str = "GRIDCAST_PREDICT__BATCH_LINGER_MS";

fn main() -> anyhow::Result<()> {
    // Re-executed as the publisher process (so its CPU is not the bench's).
    if let Ok(port) = std::env::var("GRIDCAST_BENCH_PUBLISH_PORT") {
        return run_publisher(port.parse()?);
    }
    if std::env::args().any(|a| a == "--list") {
        return Ok(()); // `cargo bench -- --list` asks harness-less benches for nothing
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize()?;
    let minutes_env = std::env::var("GRIDCAST_BENCH_MINUTES").ok();
    let minutes: usize = minutes_env.as_deref().map(str::parse).transpose()?.unwrap_or(DEFAULT_MINUTES);
    anyhow::ensure!(minutes as u64 * 60 > WARMUP_SECS + 10, "GRIDCAST_BENCH_MINUTES={minutes} leaves no window");
    let gridcast = gridcast_binary(&root)?;
    let dir = tempfile::tempdir()?;
    let mut mosquitto = Mosquitto::start(&dir.path().join("mosquitto"))?;
    let http = format!("127.0.0.1:{}", std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port());
    let config = write_config(dir.path(), &root, mosquitto.port, &http)?;
    let log_path = dir.path().join("predict.log");
    let mut predictor = ChildGuard(
        Command::new(&gridcast)
            .arg("predict")
            .arg("--config")
            .arg(&config)
            .current_dir(dir.path())
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path)?)
            .spawn()?,
    );
    let pid = predictor.0.id();
    wait_ready(&mut predictor.0, &log_path, &http)?;
    let rss_idle = status_kib(pid, "VmRSS").unwrap_or(0);
    eprintln!("bench: predictor pid {pid} subscribed, idle RSS {:.1} MiB", rss_idle as f64 / MIB);

    // Minute-aligned event time, so the predictor's intervals are the generator's minutes.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() as i64;
    let start = now - now.rem_euclid(60);
    let published_expected = SENSORS as u64 * minutes as u64 * 60 * READINGS_PER_SECOND as u64;
    eprintln!(
        "bench: publishing {SENSORS} sensors x {READINGS_PER_SECOND} Hz for {minutes} min in real time \
         ({published_expected} readings, one per message, QoS 1); warm-up {WARMUP_SECS} s"
    );
    let started = Instant::now();
    let mut publisher = ChildGuard(
        Command::new(std::env::current_exe()?)
            .env("GRIDCAST_BENCH_PUBLISH_PORT", mosquitto.port.to_string())
            .env("GRIDCAST_BENCH_START", start.to_string())
            .env("GRIDCAST_BENCH_MINUTES", minutes.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?,
    );
    while started.elapsed() < Duration::from_secs(WARMUP_SECS) {
        anyhow::ensure!(publisher.0.try_wait()?.is_none(), "the publisher stopped during the warm-up");
        std::thread::sleep(Duration::from_millis(50));
    }

    // The measured window: from the end of the warm-up until the publisher is done.
    let sync_counter = SyncCounter::attach_if_asked(pid, &dir.path().join("strace.txt"))?;
    let disk0 = disk_write_bytes(pid).unwrap_or(0);
    let load_start = load_average();
    let metrics0 = scrape(&http)?;
    let (cpu0, mosquitto_cpu0, busy0) = (process_cpu_secs(pid), process_cpu_secs(mosquitto.pid()), system_busy_secs());
    let window_start = Instant::now();
    let mut rss_samples: Vec<u64> = Vec::new();
    let mut next_sample = window_start;
    let mut next_log = window_start + Duration::from_secs(30);
    let publisher_status = loop {
        if let Some(status) = publisher.0.try_wait()? {
            break status;
        }
        anyhow::ensure!(predictor.0.try_wait()?.is_none(), "the predictor exited; see its log:\n{}", tail(&log_path));
        let now = Instant::now();
        if now >= next_sample {
            rss_samples.extend(status_kib(pid, "VmRSS"));
            next_sample += Duration::from_secs(1);
        }
        if now >= next_log {
            let m = scrape(&http).unwrap_or_default();
            eprintln!(
                "bench: {:>4.0} s: readings {} | predictions {} | judged {} | RSS {:.1} MiB | predictor CPU {:.1} s",
                started.elapsed().as_secs_f64(),
                m.get("readings_total"),
                m.get("predictions_total"),
                m.get("judged_total"),
                rss_samples.last().copied().unwrap_or(0) as f64 / MIB,
                process_cpu_secs(pid) - cpu0,
            );
            next_log += Duration::from_secs(30);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let seconds = window_start.elapsed().as_secs_f64();
    let cpu = process_cpu_secs(pid) - cpu0;
    let mosquitto_cpu = process_cpu_secs(mosquitto.pid()) - mosquitto_cpu0;
    let busy = system_busy_secs() - busy0;
    let disk = disk_write_bytes(pid).unwrap_or(0).saturating_sub(disk0);
    let fsyncs = sync_counter.map(SyncCounter::finish).transpose()?;
    let load_end = load_average();
    let metrics1 = scrape(&http)?;
    let publisher_out = publisher.wait_output()?;
    anyhow::ensure!(publisher_status.success(), "the publisher failed ({publisher_status})");
    let publisher_report: serde_json::Value = serde_json::from_slice(&publisher_out)?;
    let published = publisher_report["report"]["readings"].as_u64().unwrap_or(0);
    eprintln!("bench: publisher done after {:.1} s: {publisher_report}", started.elapsed().as_secs_f64());

    // Loss check: every published reading accepted into an interval.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut metrics_end = metrics1.clone();
    while metrics_end.get("readings_total") < published && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        metrics_end = scrape(&http)?;
    }
    let received = metrics_end.get("readings_total");
    let vmhwm = status_kib(pid, "VmHWM").unwrap_or(0);
    let mosquitto_hwm = status_kib(mosquitto.pid(), "VmHWM").unwrap_or(0);
    let predictor_exit = predictor.terminate(Duration::from_secs(30));
    mosquitto.stop();

    let rss_mean = rss_samples.iter().sum::<u64>() as f64 / rss_samples.len().max(1) as f64;
    let rss_max = rss_samples.iter().copied().max().unwrap_or(0);
    let delta = |name: &str| metrics1.get(name) - metrics0.get(name);
    let readings_in_window = delta("readings_total");
    let setup = json!({
        "git_head": git(&root, &["rev-parse", "HEAD"]),
        "uncommitted_source_changes": git(&root, &["status", "--porcelain", "--", "core/src", "ingest/src", "predictor/src", "src"]),
        "predictor": format!(
            "{} predict (1 async worker, the default)",
            gridcast.strip_prefix(&root).unwrap_or(&gridcast).display()
        ),
        "model": "models/default.gcm",
        "interval_secs": INTERVAL_SECS,
        "readings_per_message": 1,
        "qos": 1,
        "speedup": 1.0,
        "minutes_published": minutes,
        "warmup_secs": WARMUP_SECS,
    });
    let in_window = json!({
        "readings": readings_in_window,
        "intervals": delta("intervals_total"),
        "predictions": delta("predictions_total"),
        "judged": delta("judged_total"),
        "cpu_us_per_reading": 1e6 * cpu / readings_in_window.max(1) as f64,
        "rss_samples": rss_samples.len(),
        "rss_mib_every_10_s": rss_samples.iter().step_by(10).map(|k| (*k as f64 / MIB * 10.0).round() / 10.0).collect::<Vec<_>>(),
        "machine_busy_cores": busy / seconds,
        "load_average_1_5_15_start": load_start,
        "load_average_1_5_15_end": load_end,
    });
    let mut report = json!({
        "benchmark": "predict_serving",
        "command": format!(
            "{}{}{}cargo bench -p gridcast-predictor --bench predict_serving",
            minutes_env.map(|m| format!("GRIDCAST_BENCH_MINUTES={m} ")).unwrap_or_default(),
            if fsyncs.is_some() { "GRIDCAST_BENCH_STRACE=1 " } else { "" },
            // The predictor inherits the environment: its config overrides show here.
            std::env::var(LINGER_ENV).map(|v| format!("{LINGER_ENV}={v} ")).unwrap_or_default(),
        ),
        "machine": machine(),
        "setup": setup,
        "sensors": SENSORS,
        "hz": READINGS_PER_SECOND,
        "seconds": seconds,
        "readings_published": published,
        "readings_received": received,
        "lost": published as i64 - received as i64,
        "readings_per_sec_in_window": readings_in_window as f64 / seconds,
        "predictor_cpu_seconds": cpu,
        "cores_used": cpu / seconds,
        "percent_of_one_core": 100.0 * cpu / seconds,
        "rss_idle_mib": rss_idle as f64 / MIB,
        "rss_mean_mib": rss_mean / MIB,
        "rss_max_mib": rss_max as f64 / MIB,
        "vmhwm_mib": vmhwm as f64 / MIB,
        "predictions": metrics_end.get("predictions_total"),
        "judged": metrics_end.get("judged_total"),
        "mispredictions": metrics_end.get("mispredictions_total"),
        "in_window": in_window,
        "mosquitto_cpu_seconds": mosquitto_cpu,
        "mosquitto_cores_used": mosquitto_cpu / seconds,
        "mosquitto_vmhwm_mib": mosquitto_hwm as f64 / MIB,
        "publisher": publisher_report,
        "predictor_stopped_cleanly": predictor_exit,
    });
    // Batches (spool commits) in the window, from the edge runtime's counter.
    let batches = delta("stage_batches_committed_total");
    report["spool_commits_in_window"] = json!(batches);
    add_disk_io(&mut report, disk, readings_in_window, fsyncs, Some(batches));
    let text = serde_json::to_string_pretty(&report)?;
    println!("{text}");
    anyhow::ensure!(received == published, "lost readings: published {published}, received {received}");
    let out = root.join("bench/results/predictor.json");
    std::fs::create_dir_all(out.parent().unwrap())?;
    std::fs::write(&out, text + "\n")?;
    eprintln!("bench: written to {}", out.display());
    Ok(())
}

/// Build `gridcast` (release) next to this bench and return its path.
fn gridcast_binary(root: &Path) -> anyhow::Result<PathBuf> {
    // This bench is target/<profile>/deps/predict_serving-<hash>.
    let exe = std::env::current_exe()?;
    let profile_dir = exe.parent().and_then(Path::parent).ok_or_else(|| anyhow::anyhow!("where is target/?"))?;
    let bin = profile_dir.join("gridcast");
    if std::env::var_os("GRIDCAST_BENCH_NO_BUILD").is_none() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        eprintln!("bench: cargo build --release -p gridcast --bin gridcast");
        let status = Command::new(cargo)
            .args(["build", "--release", "-p", "gridcast", "--bin", "gridcast"])
            .current_dir(root)
            .status()?;
        anyhow::ensure!(status.success(), "cargo build --release --bin gridcast failed");
    }
    anyhow::ensure!(bin.exists(), "{} not found: cargo build --release --bin gridcast", bin.display());
    Ok(bin)
}

/// `git <args>` in `root`, trimmed; empty when git is missing.
fn git(root: &Path, args: &[&str]) -> String {
    Command::new("git")
        .args(args)
        .current_dir(root)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn write_config(dir: &Path, root: &Path, mqtt_port: u16, http: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join("predict.toml");
    let text = format!(
        r#"[mqtt]
port = {mqtt_port}
client_id = "bench-predict"
topics = ["bench/#"]

[predict]
model = "{model}"
interval_secs = {INTERVAL_SECS}
stats_interval_secs = 30

# A low absolute threshold, so the triplet spool and uploader do real work
# (the default adaptive rule flags nothing before 30 judgements per sensor).
[judge]
rule = "absolute"
threshold_w = 50.0

[spool]
dir = "{spool}"

[upload]
url = "file://{triplets}"
batch_interval_secs = 5

[http]
listen = "{http}"

[[sinks]]
kind = "file"
dir = "{predictions}"
"#,
        model = root.join("models/default.gcm").display(),
        spool = dir.join("spool").display(),
        triplets = dir.join("triplets").display(),
        predictions = dir.join("predictions").display(),
    );
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Wait until the predictor logged its MQTT subscription and `/health` says ok.
fn wait_ready(child: &mut Child, log: &Path, http: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("gridcast predict exited ({status}):\n{}", tail(log));
        }
        let subscribed = std::fs::read_to_string(log).is_ok_and(|l| l.contains("subscribed"));
        if subscribed && http_get(http, "/health").is_ok_and(|(status, _)| status == 200) {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "gridcast predict not ready after 60 s:\n{}", tail(log));
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// The predictor's counters, by name without the `gridcast_` prefix.
#[derive(Debug, Clone, Default)]
struct Counters(std::collections::HashMap<String, u64>);

impl Counters {
    fn get(&self, name: &str) -> u64 {
        self.0.get(name).copied().unwrap_or(0)
    }
}

fn scrape(http: &str) -> anyhow::Result<Counters> {
    let (status, body) = http_get(http, "/metrics")?;
    anyhow::ensure!(status == 200, "GET /metrics: HTTP {status}");
    let counters = body
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.split_once(' ')?;
            Some((name.strip_prefix("gridcast_")?.to_string(), value.trim().parse().ok()?))
        })
        .collect();
    Ok(Counters(counters))
}

/// A one-shot HTTP/1.1 GET (`Connection: close`): status and body.
fn http_get(addr: &str, path: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").ok_or_else(|| anyhow::anyhow!("bad HTTP response"))?;
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Ok((status, body.to_string()))
}

/// A child process killed when dropped (an error half-way leaves none behind).
struct ChildGuard(Child);

impl ChildGuard {
    /// SIGTERM, then wait up to `grace`; SIGKILL after that. True if it exited 0.
    fn terminate(&mut self, grace: Duration) -> bool {
        let _ = Command::new("kill").arg("-TERM").arg(self.0.id().to_string()).status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.0.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
        false
    }

    /// What the (finished) child wrote to its piped stdout.
    fn wait_output(&mut self) -> anyhow::Result<Vec<u8>> {
        let mut out = Vec::new();
        if let Some(mut stdout) = self.0.stdout.take() {
            stdout.read_to_end(&mut out)?;
        }
        self.0.wait()?;
        Ok(out)
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Publisher process: `minutes` of 100 meters, in real time, one reading per
/// message at QoS 1. Prints its report and its own CPU seconds as JSON.
fn run_publisher(port: u16) -> anyhow::Result<()> {
    let start: i64 = std::env::var("GRIDCAST_BENCH_START")?.parse()?;
    let minutes: usize = std::env::var("GRIDCAST_BENCH_MINUTES")?.parse()?;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let series = Series::load(&root.join("samples/uci_household_2007-01_14d.csv"))?;
    let generator = Generator::new(
        &series,
        GeneratorConfig {
            sensors: SENSORS,
            minutes: Some(minutes),
            start: Start::At(start),
            ..GeneratorConfig::default()
        },
    )?;
    let options = PublishOptions {
        port,
        client_id: "bench-meter".into(),
        topic_prefix: "bench/raw".into(),
        speedup: 1.0,
        readings_per_message: 1,
        ..PublishOptions::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let report = runtime.block_on(publish(&options, generator.readings(), |_| {}))?;
    let cpu = process_cpu_secs(std::process::id());
    println!("{}", json!({ "report": report, "cpu_seconds": cpu, "cores_used": cpu / report.elapsed_secs }));
    Ok(())
}
