//! `gridcast retrain` as cron or a Kubernetes Job sees it: its exit status
//! and what it prints. No servers: the history is the shipped sample CSV,
//! the store a temp folder.

mod support;

use std::path::Path;
use std::process::Command;

use support::gridcast::weak_champion;

fn retrain(config: &str, dir: &Path) -> std::process::Output {
    let path = dir.join("retrain.toml");
    std::fs::write(&path, config).unwrap();
    Command::new(env!("CARGO_BIN_EXE_gridcast")).args(["retrain", "--config"]).arg(&path).output().unwrap()
}

#[test]
fn a_champion_that_is_not_beaten_exits_3_and_prints_both_scores_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let config = format!(
        "[history]\ncsv = \"{root}/samples/uci_household_2007-01_14d.csv\"\n\
         [champion]\nmodel = \"{root}/models/default.gcm\"\n\
         [train]\ntrees = 40\nthreads = 2\n\
         [publish]\nstore = \"{}\"\n",
        dir.path().join("store").display()
    );
    let out = retrain(&config, dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("champion") && stdout.contains("challenger") && stdout.contains("MAE (W)"), "{stdout}");
    assert!(stdout.contains("verdict: keep the champion"), "{stdout}");
    assert!(!dir.path().join("store").exists());
}

#[test]
fn a_bad_config_is_one_line_naming_the_key_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let out = retrain("[history]\ncsv = \"x.csv\"\n[gate]\nmargins = 0.1\n", dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("margins") && stderr.starts_with("gridcast: "), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
}

/// `gridcast retrain` under strace, with `syscalls` held for a minute
/// before they run; returns it and the pid of the retrain itself.
fn retrain_held_at(config: &Path, syscalls: &str) -> (std::process::Child, u32) {
    let mut strace = Command::new("strace")
        .args(["-f", "-qq", "-o", "/dev/null", "-e", &format!("trace={syscalls}")])
        .arg("-e")
        .arg(format!("inject={syscalls}:delay_enter=60000000"))
        .arg(env!("CARGO_BIN_EXE_gridcast"))
        .args(["retrain", "--config"])
        .arg(config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("strace is needed for this test (scripts/install-deps installs it): {e}"));
    let pid = support_child_of(strace.id());
    let _ = strace.try_wait();
    (strace, pid)
}

/// The child of `parent` running `gridcast retrain` (from /proc), waiting
/// for it to appear. Not just the first child: strace forks short-lived
/// children of its own at start-up to probe ptrace.
fn support_child_of(parent: u32) -> u32 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let children = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")).unwrap_or_default();
        for pid in children.split_whitespace() {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            // argv[0]: the probe children are strace itself, whose
            // arguments name gridcast too.
            let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
            if String::from_utf8_lossy(argv0).ends_with("/gridcast") {
                return pid.parse().unwrap();
            }
        }
        assert!(std::time::Instant::now() < deadline, "strace started no gridcast retrain");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// The retrain is killed with SIGKILL at the two steps of a folder publish:
/// before the version file is linked in, and before `current.gcm` is
/// renamed. Both times the old `current.gcm` is whole and is the model the
/// predictor would load (the predictor's own validation); the next retrain
/// publishes normally.
#[test]
fn a_retrain_killed_mid_publish_leaves_the_old_current_model_valid() {
    use gridcast_predictor::model_source::load_model;
    let dir = tempfile::tempdir().unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let models = dir.path().join("store/models");
    let current = models.join("current.gcm");
    let old = weak_champion(&current);
    let old_version = load_model(&old, 60).unwrap().version;
    let config = dir.path().join("retrain.toml");
    std::fs::write(
        &config,
        format!(
            "[history]\ncsv = \"{root}/samples/uci_household_2007-01_14d.csv\"\n\
             [champion]\nmodel = \"{}\"\n[train]\ntrees = 40\nlearning_rate = 0.1\nthreads = 2\n\
             [publish]\nstore = \"{}\"\n",
            current.display(),
            dir.path().join("store").display()
        ),
    )
    .unwrap();
    let versions = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&models)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".gcm") && n != "current.gcm")
            .collect();
        v.sort();
        v
    };
    for (step, syscalls, linked) in [("link", "link,linkat", false), ("rename", "rename,renameat,renameat2", true)] {
        let (mut strace, pid) = retrain_held_at(&config, syscalls);
        // The publish has begun when its staged temp file is there; the
        // held syscall then cannot have run yet.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while !std::fs::read_dir(&models).unwrap().flatten().any(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            || versions().len() != usize::from(linked)
        {
            assert!(strace.try_wait().unwrap().is_none(), "the retrain ended before publishing ({step})");
            assert!(std::time::Instant::now() < deadline, "the retrain never reached the {step} step");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap().success());
        // strace would sit out the rest of the held syscall's delay.
        let _ = strace.kill();
        let _ = strace.wait();
        // Dead: gone, or a zombie no one has reaped yet.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| !stat.contains(") Z ")) {
            assert!(std::time::Instant::now() < deadline, "the killed retrain is still running");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let bytes = std::fs::read(&current).unwrap();
        assert_eq!(bytes, old, "killed before the {step}: current.gcm is the old model, whole");
        assert_eq!(load_model(&bytes, 60).unwrap().version, old_version);
    }

    let out = Command::new(env!("CARGO_BIN_EXE_gridcast")).args(["retrain", "--config"]).arg(&config).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let new = load_model(&std::fs::read(&current).unwrap(), 60).unwrap();
    assert_ne!(new.version, old_version);
    assert!(versions().contains(&format!("{}.gcm", new.version)), "{:?}", versions());
    let leftovers: Vec<_> = std::fs::read_dir(&models)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .map(|e| e.file_name())
        .collect();
    assert!(leftovers.is_empty(), "the killed retrains' temp files are cleaned up: {leftovers:?}");
}

/// `n` triplets of sensor `m1` as the predictor uploads them, at `key` under `store`.
fn put_triplets(store: &Path, key: &str, first_seq: u64, n: u64) {
    use gridcast_predictor::triplet::{Compression, Triplet, encode_batch};
    let lines: Vec<Vec<u8>> = (first_seq..first_seq + n)
        .map(|seq| {
            Triplet {
                seq,
                sensor: "m1".into(),
                model_version: "champion".into(),
                feature_names: vec!["x".into()],
                features: vec![Some(1.0)],
                predicted: 100.0,
                actual: 900.0,
                error: -800.0,
                features_start_ms: 1_167_609_600_000 + seq as i64 * 60_000,
                interval_start_ms: 1_167_609_660_000 + seq as i64 * 60_000,
                interval_end_ms: 1_167_609_720_000 + seq as i64 * 60_000,
                horizon: 1,
                rule: "absolute".into(),
            }
            .to_json_line()
        })
        .collect();
    let path = store.join(key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let temp = path.with_extension("tmp");
    std::fs::write(&temp, encode_batch(&lines, Compression::Gzip).unwrap()).unwrap();
    std::fs::rename(&temp, &path).unwrap();
}

/// The watcher's state file, once it exists and satisfies `ok`.
fn wait_state(path: &Path, child: &mut std::process::Child, log: &Path, ok: impl Fn(&serde_json::Value) -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    loop {
        if let Some(state) = std::fs::read(path).ok().and_then(|b| serde_json::from_slice(&b).ok())
            && ok(&state)
        {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the watcher exited ({status}):\n{}", std::fs::read_to_string(log).unwrap_or_default());
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the watcher's state never got there:\n{}\n{}",
            std::fs::read_to_string(path).unwrap_or_default(),
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// `--when-mispredictions 5`: 3 triplets arrive, the watcher is killed and
/// started again, 2 more arrive: one retrain, not two and not none; one
/// more triplet afterwards is counted towards the next one.
#[test]
fn when_mispredictions_fires_once_for_n_new_triplets_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let models = dir.path().join("store/models");
    weak_champion(&models.join("current.gcm"));
    let triplets = dir.path().join("triplets");
    let state = dir.path().join("state/retrain.json");
    let config = dir.path().join("retrain.toml");
    std::fs::write(
        &config,
        format!(
            "[history]\ncsv = \"{root}/samples/uci_household_2007-01_14d.csv\"\n\
             [champion]\nmodel = \"{}\"\n[train]\ntrees = 20\nlearning_rate = 0.1\nthreads = 2\n\
             [publish]\nstore = \"{}\"\n[triplets]\nstore = \"file://{}\"\n\
             [trigger]\nstate = \"{}\"\npoll_secs = 1\n",
            models.join("current.gcm").display(),
            dir.path().join("store").display(),
            triplets.display(),
            state.display()
        ),
    )
    .unwrap();
    let log = dir.path().join("watch.log");
    let watch = || {
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        Command::new(env!("CARGO_BIN_EXE_gridcast"))
            .args(["retrain", "--when-mispredictions", "5", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap()
    };
    let key = |day: &str, first: u64, last: u64| {
        format!("triplets/device=pi/date={day}/0000000000001-{first:020}-{last:020}.ndjson.gz")
    };
    let retrains = || std::fs::read_to_string(&log).unwrap_or_default().matches("retrain starts").count();

    put_triplets(&triplets, &key("2007-01-01", 0, 2), 0, 3);
    let mut watcher = watch();
    wait_state(&state, &mut watcher, &log, |s| s["since_retrain"] == 3);
    watcher.kill().unwrap();
    watcher.wait().unwrap();
    assert_eq!(retrains(), 0, "3 of 5 triplets start no retrain");

    put_triplets(&triplets, &key("2007-01-02", 3, 4), 3, 2);
    let mut watcher = watch();
    wait_state(&state, &mut watcher, &log, |s| s["last_retrain"].as_i64() > Some(0) && s["since_retrain"] == 0);
    put_triplets(&triplets, &key("2007-01-02", 5, 5), 5, 1);
    wait_state(&state, &mut watcher, &log, |s| s["since_retrain"] == 1);
    watcher.kill().unwrap();
    watcher.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(retrains(), 1, "{text}");
    assert!(text.contains("verdict:"), "{text}");
}

/// `--every 1s`: it retrains, logs when the next run is, and retrains again
/// (the second run keeps the champion the first one shipped, or ships a
/// better one); SIGTERM ends it with status 0.
#[test]
fn every_retrains_on_schedule_and_says_when_the_next_run_is() {
    let dir = tempfile::tempdir().unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let models = dir.path().join("store/models");
    weak_champion(&models.join("current.gcm"));
    let config = dir.path().join("retrain.toml");
    std::fs::write(
        &config,
        format!(
            "[history]\ncsv = \"{root}/samples/uci_household_2007-01_14d.csv\"\n\
             [champion]\nmodel = \"{}\"\n[train]\ntrees = 20\nlearning_rate = 0.1\nthreads = 2\n\
             [publish]\nstore = \"{}\"\n[trigger]\nstate = \"{}\"\n",
            models.join("current.gcm").display(),
            dir.path().join("store").display(),
            dir.path().join("state.json").display()
        ),
    )
    .unwrap();
    let log = dir.path().join("every.log");
    let out = std::fs::File::create(&log).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gridcast"))
        .args(["retrain", "--every", "1s", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    while text().matches("verdict:").count() < 2 {
        assert!(child.try_wait().unwrap().is_none(), "the scheduler exited:\n{}", text());
        assert!(std::time::Instant::now() < deadline, "no second scheduled retrain:\n{}", text());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(text().contains("next scheduled retrain"), "{}", text());
    assert!(text().contains("trigger=\"schedule\"") || text().contains("trigger=schedule"), "{}", text());
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    assert_eq!(child.wait().unwrap().code(), Some(0), "{}", text());
}
