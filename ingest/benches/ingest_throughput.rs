//! Ingest throughput, measured, side by side with the prototype's decoder.
//!
//! `cargo bench -p gridcast-ingest --bench ingest_throughput` (or
//! `bench/ingest/run`) prints one JSON document and writes it to
//! `bench/results/ingest.json`:
//!
//! 1. in-process: decode + window of simulated raw 12 Hz payloads on one
//!    thread (gridcast-core), and the prototype's Python decoder
//!    (`struct.unpack`, bench/prototype/decode_bench.py) on the same bytes;
//! 2. end to end: a publisher process sends the same readings at QoS 1
//!    through a private Mosquitto (deploy/mosquitto settings) to an
//!    in-process `gridcast ingest` (spool with fsync per batch, file sink);
//!    readings/s from the first publish until every reading is committed,
//!    with the CPU seconds ingest and Mosquitto used, the bytes this process
//!    wrote to disk (/proc/self/io) and a loss check. With
//!    `GRIDCAST_BENCH_STRACE=1`, also its fsync + fdatasync calls per spool
//!    commit (strace attached to this process, publisher included: the CPU
//!    and throughput figures of such a run are not the baseline's).
//!
//! Linux only (CPU time from /proc). Needs `mosquitto` and `python3`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use gridcast_core::payload::Decoder;
use gridcast_core::window::{Push, Windows};
use gridcast_ingest::{Ingest, IngestConfig};
use gridcast_simulator::{Generator, GeneratorConfig, PublishOptions, Series, Start, encode_batch, publish};
use serde_json::json;
use support::{Mosquitto, SyncCounter, add_disk_io, disk_write_bytes, machine, process_cpu_secs};

#[path = "../../bench/support/bench_support.rs"]
mod support;

const SENSORS: u32 = 20;
const MINUTES: usize = 30;

fn main() -> anyhow::Result<()> {
    // Re-executed as the publisher process (so its CPU is not ingest's).
    if let Ok(port) = std::env::var("GRIDCAST_BENCH_PUBLISH_PORT") {
        return run_publisher(port.parse()?);
    }
    if std::env::args().any(|a| a == "--list") {
        return Ok(()); // `cargo bench -- --list` asks harness-less benches for nothing
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let generator = generator(&root)?;
    let readings: Vec<_> = generator.readings().collect();
    let total = readings.len() as u64;
    eprintln!("bench: {SENSORS} sensors x {MINUTES} minutes = {total} readings");

    let dir = tempfile::tempdir()?;
    let payloads = encode_batch(&readings);
    let payload_file = dir.path().join("payloads.bin");
    std::fs::write(&payload_file, &payloads)?;

    let in_process = decode_window_in_process(&payloads);
    eprintln!("bench: in-process decode+window: {:.0} readings/s", in_process["readings_per_sec"]);
    let python = python_prototype(&root, &payload_file)?;
    eprintln!("bench: python prototype decode+window: {}", python["readings_per_sec"]);

    // One async worker, as `gridcast ingest` runs by default (--worker-threads).
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let mut end_to_end = Vec::new();
    for per_message in [1usize, 12] {
        let result = runtime.block_on(end_to_end_run(dir.path(), per_message, total))?;
        eprintln!("bench: end to end, {per_message} reading(s)/message: {result}");
        end_to_end.push(result);
    }

    let report = json!({
        "benchmark": "ingest_throughput",
        "command": "cargo bench -p gridcast-ingest --bench ingest_throughput",
        "machine": machine(),
        "readings": total,
        "decode_window_in_process": in_process,
        "python_prototype_decode_window": python,
        "speedup_in_process_vs_python": in_process["readings_per_sec"].as_f64().unwrap_or(0.0)
            / python["readings_per_sec"].as_f64().unwrap_or(f64::NAN),
        "end_to_end_mqtt_qos1": end_to_end,
    });
    let text = serde_json::to_string_pretty(&report)?;
    println!("{text}");
    let out = root.join("bench/results/ingest.json");
    std::fs::create_dir_all(out.parent().unwrap())?;
    std::fs::write(&out, text + "\n")?;
    eprintln!("bench: written to {}", out.display());
    Ok(())
}

fn generator(root: &Path) -> anyhow::Result<Generator> {
    let series = Series::load(&root.join("samples/uci_household_2007-01_14d.csv"))?;
    Ok(Generator::new(
        &series,
        GeneratorConfig {
            sensors: SENSORS,
            minutes: Some(MINUTES),
            start: Start::Csv,
            seed: 1,
            sensor_offset_minutes: 60,
        },
    )?)
}

/// Decode every 70-byte message and fold it into windows, one thread.
fn decode_window_in_process(payloads: &[u8]) -> serde_json::Value {
    let decoder = Decoder::new(Default::default());
    let mut best = f64::MAX;
    let mut closed = 0;
    let mut readings = 0u64;
    for _ in 0..5 {
        let mut windows = Windows::new(Default::default());
        let mut out = Vec::with_capacity(1);
        let mut closed_windows = Vec::new();
        let cpu0 = process_cpu_secs(std::process::id());
        let started = Instant::now();
        readings = 0;
        for message in payloads.chunks(70) {
            out.clear();
            if decoder.decode(message, &mut out).is_ok() {
                for r in &out {
                    if windows.push(r, 0, 0) == Push::Accepted {
                        readings += 1;
                    }
                }
            }
            windows.drain_closed(&mut closed_windows);
        }
        windows.close_all(&mut closed_windows);
        let elapsed = started.elapsed().as_secs_f64();
        let _cpu = process_cpu_secs(std::process::id()) - cpu0;
        best = best.min(elapsed);
        closed = closed_windows.len();
    }
    json!({
        "impl": "gridcast-core (Rust)",
        "readings": readings,
        "windows": closed,
        "seconds_best_of_5": best,
        "readings_per_sec": readings as f64 / best,
    })
}

fn python_prototype(root: &Path, payload_file: &Path) -> anyhow::Result<serde_json::Value> {
    let output = Command::new("python3")
        .arg(root.join("bench/prototype/decode_bench.py"))
        .arg("--payloads")
        .arg(payload_file)
        .stderr(Stdio::inherit())
        .output()?;
    anyhow::ensure!(output.status.success(), "decode_bench.py failed");
    Ok(serde_json::from_slice(&output.stdout)?)
}

/// Publisher process: the whole series at QoS 1, as fast as the broker takes it.
fn run_publisher(port: u16) -> anyhow::Result<()> {
    let per_message: usize = std::env::var("GRIDCAST_BENCH_PER_MESSAGE")?.parse()?;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let generator = generator(&root)?;
    let options = PublishOptions {
        port,
        client_id: "bench-meter".into(),
        topic_prefix: "bench/raw".into(),
        speedup: 0.0,
        readings_per_message: per_message,
        ..PublishOptions::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let report = runtime.block_on(publish(&options, generator.readings(), |_| {}))?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

async fn end_to_end_run(dir: &Path, per_message: usize, total: u64) -> anyhow::Result<serde_json::Value> {
    let run_dir = dir.join(format!("e2e-{per_message}"));
    let mut mosquitto = Mosquitto::start(&run_dir)?;
    let mut config = IngestConfig::default();
    config.mqtt.port = mosquitto.port;
    config.mqtt.client_id = "bench-ingest".into();
    config.mqtt.topics = vec!["bench/#".into()];
    config.spool.dir = run_dir.join("spool");
    config.http.listen = String::new();
    config.pipeline.idle_close_secs = 1;
    config.pipeline.stats_interval_secs = 3600;
    config.sinks = vec![gridcast_edge::sinks::SinkConfig::File { dir: run_dir.join("lines") }];
    let ingest = Ingest::start(config).await?;
    ingest.subscribed(Duration::from_secs(10)).await?;

    let me = std::process::id();
    let sync_counter = SyncCounter::attach_if_asked(me, &run_dir.join("strace.txt"))?;
    let batches0 = ingest.stats.batches_committed.load(Ordering::Relaxed);
    let disk0 = disk_write_bytes(me).unwrap_or(0);
    let ingest_cpu0 = process_cpu_secs(me);
    let mosquitto_cpu0 = process_cpu_secs(mosquitto.pid());
    let started = Instant::now();
    let publisher = Command::new(std::env::current_exe()?)
        .env("GRIDCAST_BENCH_PUBLISH_PORT", mosquitto.port.to_string())
        .env("GRIDCAST_BENCH_PER_MESSAGE", per_message.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(300);
    while ingest.stats.readings.load(Ordering::Relaxed) < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let ingest_cpu = process_cpu_secs(me) - ingest_cpu0;
    let mosquitto_cpu = process_cpu_secs(mosquitto.pid()) - mosquitto_cpu0;
    let disk = disk_write_bytes(me).unwrap_or(0).saturating_sub(disk0);
    let batches = ingest.stats.batches_committed.load(Ordering::Relaxed) - batches0;
    let fsyncs = sync_counter.map(SyncCounter::finish).transpose()?;
    let publisher_out = publisher.wait_with_output()?;
    let publisher_report: serde_json::Value = serde_json::from_slice(&publisher_out.stdout).unwrap_or_default();

    // Let the idle close write the last windows, then count what the sink got.
    let window_deadline = Instant::now() + Duration::from_secs(30);
    while ingest.stats.open_windows.load(Ordering::Relaxed) > 0 && Instant::now() < window_deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stats = ingest.stats.snapshot();
    ingest.stop().await?;
    mosquitto.stop();
    let in_windows = readings_in_line_files(&run_dir.join("lines"))?;
    let received = stats.readings;
    let mut result = json!({
        "readings_per_message": per_message,
        "readings_published": total,
        "readings_committed": received,
        "readings_in_written_windows": in_windows,
        "lost": total as i64 - in_windows as i64,
        "duplicates_skipped": stats.duplicate_readings,
        "seconds": elapsed,
        "readings_per_sec": received as f64 / elapsed,
        "spool_commits": stats.batches_committed,
        "spool_commits_in_window": batches,
        "ingest_cpu_seconds": ingest_cpu,
        "ingest_cores_used": ingest_cpu / elapsed,
        "readings_per_ingest_cpu_second": received as f64 / ingest_cpu.max(1e-9),
        "mosquitto_cpu_seconds": mosquitto_cpu,
        "publisher": publisher_report,
    });
    add_disk_io(&mut result, disk, received, fsyncs, Some(batches));
    Ok(result)
}

/// Sum of the `readings=` field of every line-protocol line under `dir`.
fn readings_in_line_files(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let text = std::fs::read_to_string(entry?.path())?;
        for line in text.lines() {
            if let Some(rest) = line.split(" readings=").nth(1) {
                total += rest.split('i').next().unwrap_or("0").parse::<u64>().unwrap_or(0);
            }
        }
    }
    Ok(total)
}
