//! `gridcast demo` closes the loop without a server: it ingests and
//! predicts, retrains in the middle of the run on the history it wrote to
//! `./data/lines`, publishes the winner to `./data/models/`, and the
//! predictor, polling `./data/models/current.gcm`, swaps to it.
//!
//! The demo runs as a child process in a temp working directory (its
//! `./data`), on a free port with its own embedded broker, with the default
//! retrain settings: meter 1 (a quiet night of the sample, about 370 W,
//! where the shipped model does worse than persistence) after 22 minutes,
//! the last 8 held out. The simulator is deterministic, but the demo's
//! clock sets the time-of-day and day-of-week features: replays of that
//! night shipped on every day of the week at every second hour, with 22 to
//! 25 minutes of history (336 of 336).

mod support;

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::gridcast::{model_version, shipped_model};
use support::meter::sample_csv;

/// Kills the demo if the test ends early (a failed assertion).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Run the demo in `dir` until it exits by itself; its stdout and stderr.
fn run_demo(dir: &Path, args: &[&str]) -> String {
    let port = support::free_port();
    let config = dir.join("demo.toml");
    std::fs::write(&config, format!("[mqtt]\nport = {port}\n[http]\nlisten = \"\"\n")).expect("write demo.toml");
    let log_path = dir.join("demo.log");
    let log = File::create(&log_path).expect("create demo.log");
    let child = Command::new(env!("CARGO_BIN_EXE_gridcast"))
        .current_dir(dir)
        .arg("demo")
        .arg("--config")
        .arg(&config)
        .arg("--csv")
        .arg(sample_csv())
        .arg("--model")
        .arg(shipped_model())
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone the log handle"))
        .stderr(log)
        .spawn()
        .expect("start gridcast demo");
    let mut demo = KillOnDrop(child);
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = demo.0.try_wait().expect("poll the demo") {
            break status;
        }
        assert!(Instant::now() < deadline, "the demo did not end within 120 s:\n{}", read_log());
        std::thread::sleep(Duration::from_millis(100));
    };
    let log = read_log();
    assert!(status.success(), "the demo failed ({status}):\n{log}");
    log
}

/// Every line-protocol line under `dir`.
fn lines_in(dir: &Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
        let path = entry.expect("a directory entry").path();
        if path.extension().is_some_and(|x| x == "lp") {
            text += &std::fs::read_to_string(&path).expect("read a line-protocol file");
        }
    }
    text
}

#[test]
fn the_demo_retrains_publishes_the_winner_and_the_predictor_swaps_to_it() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let log = run_demo(dir.path(), &["--speedup", "120"]);

    // Published: a new version, and current.gcm is that version's bytes.
    let models = dir.path().join("data/models");
    let current = std::fs::read(models.join("current.gcm")).expect("./data/models/current.gcm");
    let version = model_version(&current);
    let shipped = model_version(&std::fs::read(shipped_model()).expect("the shipped model"));
    assert_ne!(version, shipped, "current.gcm is still the shipped model; the demo said:\n{log}");
    let versioned = std::fs::read(models.join(format!("{version}.gcm"))).expect("the published version file");
    assert_eq!(versioned, current, "current.gcm differs from {version}.gcm");

    // The demo's own account: the verdict, and the summary line serving it.
    assert!(log.contains("verdict: ship the challenger"), "{log}");
    assert!(log.contains(&format!("retrain: shipped {}", &version[..8])), "{log}");
    let serving = format!("| model {} | retrain: shipped", &version[..8]);
    assert!(
        log.lines().any(|l| l.starts_with("readings/s") && l.contains(&serving)),
        "no summary line with {serving}:\n{log}"
    );
    assert!(log.contains(&format!("serving model {version}")), "{log}");

    // The predictor swapped: predictions before it carry the shipped model's
    // tag, predictions after it the challenger's.
    let predictions = lines_in(&dir.path().join("data/predictions"));
    for (name, v) in [("the shipped model", &shipped), ("the challenger", &version)] {
        let tag = format!("model={}", &v[..16]);
        assert!(predictions.lines().any(|l| l.contains(&tag)), "no prediction by {name} ({tag}):\n{log}");
    }
}
