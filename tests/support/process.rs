//! One server process a test owns: launched on a port, awaited until it
//! answers, stopped with SIGTERM (or killed), restarted with the same
//! command line. Knows nothing of what the server is; `servers.rs` does.
//!
//! Only our own `Child` is ever signalled, so no other process is touched,
//! and it is reaped by `wait`, so its pid cannot be reused under us.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::free_port;

/// How long a server may take to answer after launch.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a server may take to exit after SIGTERM before it gets SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// Launch attempts on fresh ports when a server exits at once (the port we
/// found free was taken before the server bound it).
const ATTEMPTS: usize = 3;

/// Whether the server on a port answers; it is asked only once the process
/// itself is seen listening on that port.
pub type Probe = fn(u16) -> bool;

/// What to run: the program, its arguments, and the environment variables to
/// remove from ours.
pub struct Launch {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub env_remove: Vec<OsString>,
}

pub struct ServerProcess {
    name: &'static str,
    launch: Launch,
    log: PathBuf,
    port: u16,
    probe: Probe,
    child: Option<Child>,
}

impl ServerProcess {
    /// Starts `name` on a free port and waits until it answers. `launch`
    /// gets the port and returns the command (writing any config file);
    /// output goes to `log`. Panics, with the log's tail, if it never does.
    pub fn start(name: &'static str, log: PathBuf, probe: Probe, mut launch: impl FnMut(u16) -> Launch) -> Self {
        for attempt in 1..=ATTEMPTS {
            let port = free_port();
            let mut server = ServerProcess { name, launch: launch(port), log: log.clone(), port, probe, child: None };
            server.spawn();
            match server.await_ready() {
                Ok(()) => return server,
                Err(status) if attempt < ATTEMPTS => {
                    eprintln!("{name} on port {port} exited at once ({status}); trying another port");
                }
                Err(status) => server.fail(&format!("exited before it answered ({status})")),
            }
        }
        unreachable!()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is still running (a server that crashed is not).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// SIGTERM, then wait; SIGKILL if it is still running after
    /// STOP_TIMEOUT. Does nothing if it is not running.
    pub fn stop(&mut self) {
        let Some(child) = self.child.as_mut() else {
            return;
        };
        if matches!(child.try_wait(), Ok(None)) {
            sigterm(child.id());
            let deadline = Instant::now() + STOP_TIMEOUT;
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(20));
            }
            if matches!(child.try_wait(), Ok(None)) {
                eprintln!("{} did not exit {STOP_TIMEOUT:?} after SIGTERM: killing it", self.name);
            }
        }
        self.kill();
    }

    /// SIGKILL, as a crash or power cut would. Does nothing if not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server if running and starts it again with the same
    /// command line: same port, same data directory. Panics if it does not
    /// answer (for instance because another process took the port).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
        if let Err(status) = self.await_ready() {
            self.fail(&format!("exited on restart ({status})"));
        }
    }

    fn spawn(&mut self) {
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap_or_else(|e| panic!("open {}: {e}", self.log.display()));
        let _ = writeln!(log, "\n--- launch: {} {:?}", self.launch.program.display(), self.launch.args);
        let mut command = Command::new(&self.launch.program);
        command
            .args(&self.launch.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log file handle"))
            .stderr(log);
        for var in &self.launch.env_remove {
            command.env_remove(var);
        }
        let child = command.spawn().unwrap_or_else(|e| panic!("start {}: {e}", self.launch.program.display()));
        self.child = Some(child);
    }

    /// Ok once the process listens on its port and the probe answers; the
    /// exit status if it exits first. Panics on timeout.
    fn await_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let child = self.child.as_mut().expect("spawned");
            match child.try_wait() {
                Ok(Some(status)) => {
                    self.child = None;
                    return Err(status.to_string());
                }
                Ok(None) => {}
                Err(e) => panic!("wait for {}: {e}", self.name),
            }
            if listens(child.id(), self.port) && (self.probe)(self.port) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.fail(&format!("did not answer within {READY_TIMEOUT:?}"));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn fail(&mut self, what: &str) -> ! {
        self.kill();
        panic!(
            "{} on 127.0.0.1:{} {what}; last lines of {}:\n{}",
            self.name,
            self.port,
            self.log.display(),
            log_tail(&self.log, 30)
        )
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn log_tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The path of a server binary: on PATH, or where its Debian package puts
/// it (/usr/sbin is not on a normal user's PATH). Panics naming
/// scripts/install-deps when it is in neither.
pub fn find_binary(name: &str, debian_path: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file());
    on_path.or_else(|| Some(PathBuf::from(debian_path)).filter(|p| p.is_file())).unwrap_or_else(|| {
        panic!("{name} is not installed (not on PATH, not at {debian_path}): run scripts/install-deps")
    })
}

/// Whether process `pid` itself holds a socket listening on 127.0.0.1:`port`.
/// Answering on the port is not enough: if our server failed to bind, some
/// other process listening there would answer for it.
#[cfg(target_os = "linux")]
fn listens(pid: u32, port: u16) -> bool {
    // /proc/net/tcp: "sl local_address rem_address st ... inode", addresses
    // as hex ADDR:PORT (127.0.0.1 is 0100007F), st 0A is LISTEN.
    let wanted = format!("0100007F:{port:04X}");
    let Ok(table) = fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() > 9 && f[1] == wanted && f[3] == "0A")
        .map(|f| format!("socket:[{}]", f[9]))
        .collect();
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| fs::read_link(fd.path()).is_ok_and(|target| inodes.iter().any(|i| target == Path::new(i))))
}

#[cfg(not(target_os = "linux"))]
fn listens(_pid: u32, _port: u16) -> bool {
    true
}

#[cfg(unix)]
fn sigterm(pid: u32) {
    unsafe extern "C" {
        // kill(2) from the C library std already links; sending a signal
        // touches no memory of ours.
        safe fn kill(pid: i32, sig: i32) -> i32;
    }
    const SIGTERM: i32 = 15;
    let pid = i32::try_from(pid).expect("pid fits in pid_t");
    kill(pid, SIGTERM);
}

#[cfg(not(unix))]
fn sigterm(_pid: u32) {}

/// Opens (creating) `path` for a server's log, truncated.
pub fn fresh_log(path: &Path) -> PathBuf {
    File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    path.to_path_buf()
}
