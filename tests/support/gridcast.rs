//! `gridcast ingest` as a child process, for the tests that kill it: the
//! binary cargo built for this test run, a config file written here, and
//! its log beside it. Drop kills the process (ours only, by its handle).

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub struct IngestProcess {
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl IngestProcess {
    /// Write `config_toml` under `dir` and start `gridcast ingest` on it.
    pub fn start(dir: &Path, config_toml: &str) -> IngestProcess {
        let config = dir.join("ingest.toml");
        std::fs::write(&config, config_toml).expect("write ingest config");
        let mut process = IngestProcess { config, log: dir.join("ingest.log"), child: None };
        process.spawn();
        process
    }

    fn spawn(&mut self) {
        let log = OpenOptions::new().create(true).append(true).open(&self.log).expect("open ingest log");
        let child = Command::new(env!("CARGO_BIN_EXE_gridcast"))
            .arg("ingest")
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .expect("start gridcast ingest");
        self.child = Some(child);
    }

    /// Wait until its log says the broker confirmed the subscriptions
    /// `times` times in all (once per start), so nothing published after
    /// this is missed.
    pub fn wait_subscribed(&mut self, times: usize) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while self.log().matches(" subscribed").count() < times {
            self.assert_running();
            assert!(std::time::Instant::now() < deadline, "ingest never subscribed:\n{}", self.log());
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// SIGKILL: no flush, no goodbye, as a power cut.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start it again on the same config and spool.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Its log so far, for assertion messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics, with the log, if it exited on its own.
    pub fn assert_running(&mut self) {
        if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
            panic!("gridcast ingest exited ({status}):\n{}", self.log());
        }
    }
}

impl Drop for IngestProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `gridcast predict` as a child process: like [`IngestProcess`], with the
/// environment it needs (object-store credentials) and its log.
pub struct PredictProcess {
    config: PathBuf,
    log: PathBuf,
    env: Vec<(String, String)>,
    child: Option<Child>,
}

impl PredictProcess {
    /// Write `config_toml` under `dir` and start `gridcast predict` on it.
    pub fn start(dir: &Path, config_toml: &str, env: &[(&str, &str)]) -> PredictProcess {
        let config = dir.join("predict.toml");
        std::fs::write(&config, config_toml).expect("write predict config");
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut process = PredictProcess { config, log: dir.join("predict.log"), env, child: None };
        process.spawn();
        process
    }

    fn spawn(&mut self) {
        let log = OpenOptions::new().create(true).append(true).open(&self.log).expect("open predict log");
        let child = Command::new(env!("CARGO_BIN_EXE_gridcast"))
            .arg("predict")
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .expect("start gridcast predict");
        self.child = Some(child);
    }

    /// Wait until the broker confirmed the subscriptions `times` times in all.
    pub fn wait_subscribed(&mut self, times: usize) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while self.log().matches(" subscribed").count() < times {
            self.assert_running();
            assert!(std::time::Instant::now() < deadline, "predict never subscribed:\n{}", self.log());
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// SIGKILL: no flush, no goodbye.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start it again on the same config and spools.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn assert_running(&mut self) {
        if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
            panic!("gridcast predict exited ({status}):\n{}", self.log());
        }
    }
}

impl Drop for PredictProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
