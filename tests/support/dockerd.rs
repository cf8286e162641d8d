//! A private Docker engine for the `gridcast ship --engine` tests: Debian's
//! `dockerd` (docker.io) with its data, exec root (where it starts its own
//! containerd), pid file and API socket under one directory the test owns,
//! no iptables rules and no bridge (containers use host networking), its log
//! beside them. Dropped, it removes the containers it runs (so their overlay
//! mounts are released), stops (SIGTERM, then SIGKILL after 20 s) and
//! unmounts what it left mounted under its directory.
//!
//! Each test starts its own, so tests run in parallel. Needs root (dockerd
//! mounts overlays), as the tests run here.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::process::find_binary;

/// How long dockerd may take to answer `/_ping` after launch.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long it may take to exit after SIGTERM before it gets SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

pub struct Dockerd {
    dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Dockerd {
    /// Starts dockerd under `dir` and waits until its socket answers
    /// `GET /_ping`. Keep `dir` short (a tempdir under /tmp): unix socket
    /// paths are limited to 108 bytes, and containerd's live under it too.
    pub fn start(dir: &Path) -> Dockerd {
        let program = find_binary("dockerd", "/usr/sbin/dockerd");
        let log = dir.join("dockerd.log");
        let out = File::create(&log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let path = |name: &str| dir.join(name).into_os_string();
        let child = Command::new(&program)
            .arg("--iptables=false")
            .arg("--bridge=none")
            .arg("--data-root")
            .arg(path("data"))
            .arg("--exec-root")
            .arg(path("exec"))
            .arg("--pidfile")
            .arg(path("docker.pid"))
            .arg("-H")
            .arg(format!("unix://{}", dir.join("docker.sock").display()))
            .env_remove("DOCKER_HOST")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone the log handle"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", program.display()));
        let mut engine = Dockerd { dir: dir.to_path_buf(), log, child: Some(child) };
        engine.await_ready();
        engine
    }

    /// `unix:///…/docker.sock`, for DOCKER_HOST, `--docker-host` or `docker -H`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// Runs the docker CLI against this engine (`docker -H HOST ARGS`).
    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new(docker_cli())
            .arg("-H")
            .arg(self.host())
            .args(args)
            .env_remove("DOCKER_HOST")
            .stdin(Stdio::null())
            .output()
            .expect("run the docker CLI")
    }

    /// Like [`Dockerd::docker`], panicking unless it succeeds; its stdout.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        let output = self.docker(args);
        assert!(
            output.status.success(),
            "docker {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Its log so far, for assertion messages.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("docker.sock")
    }

    fn await_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                panic!("dockerd exited at start-up ({status}); its log, {}:\n{}", self.log.display(), self.log());
            }
            if ping(&self.socket()) {
                return;
            }
            if Instant::now() >= deadline {
                self.stop();
                panic!("dockerd did not answer within {READY_TIMEOUT:?}; its log:\n{}", self.log());
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Removes every container, then SIGTERM and wait; SIGKILL if it is
    /// still running after STOP_TIMEOUT.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        if matches!(child.try_wait(), Ok(None)) {
            let ids = self.docker(&["ps", "-aq"]);
            let ids: Vec<String> = String::from_utf8_lossy(&ids.stdout).split_whitespace().map(str::to_owned).collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f"];
                args.extend(ids.iter().map(String::as_str));
                let _ = self.docker(&args);
            }
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let deadline = Instant::now() + STOP_TIMEOUT;
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(50));
            }
            if matches!(child.try_wait(), Ok(None)) {
                eprintln!("dockerd did not exit {STOP_TIMEOUT:?} after SIGTERM: killing it");
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        self.unmount_leftovers();
    }

    /// Unmounts what dockerd left mounted under its directory (the host
    /// network namespace it binds at exec/netns/default stays after it
    /// exits), deepest first, so the test's directory can be removed.
    fn unmount_leftovers(&self) {
        let prefix = format!("{}/", self.dir.display());
        let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let mut points: Vec<&str> =
            mounts.lines().filter_map(|line| line.split(' ').nth(1)).filter(|p| p.starts_with(&prefix)).collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for point in points {
            let unmounted = Command::new("umount").arg(point).status().is_ok_and(|s| s.success());
            if !unmounted {
                eprintln!("could not unmount {point}, left by dockerd");
            }
        }
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether the engine on `socket` answers `GET /_ping` with 200 OK.
fn ping(socket: &Path) -> bool {
    let attempt = || -> std::io::Result<bool> {
        let mut stream = UnixStream::connect(socket)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        Ok(response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200"))
    };
    attempt().unwrap_or(false)
}

/// The docker CLI: on PATH (/usr/local/bin/docker) or Debian's.
pub fn docker_cli() -> PathBuf {
    find_binary("docker", "/usr/bin/docker")
}
