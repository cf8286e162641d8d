//! `gridcast retrain` as cron or a Kubernetes Job sees it: its exit status
//! and what it prints. No servers: the history is the shipped sample CSV,
//! the store a temp folder.

use std::path::Path;
use std::process::Command;

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
