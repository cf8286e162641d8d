//! What the benchmarks share: CPU time and memory of a process from /proc,
//! the machine's description, and a private Mosquitto.
//!
//! Included by each bench with
//! `#[path = "../../bench/support/bench_support.rs"] mod support;`.
//! Not every bench uses every item. Linux only.

#![allow(dead_code)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

/// utime + stime of a process, in seconds, from /proc/PID/stat.
pub fn process_cpu_secs(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    // Fields after the command name (which may hold spaces) start at ")".
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(f64::NAN);
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 here.
    (ticks(11) + ticks(12)) / clock_ticks_per_sec()
}

pub fn clock_ticks_per_sec() -> f64 {
    // getconf CLK_TCK; 100 on every Linux we run on.
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// A `kB` line of /proc/PID/status (`VmRSS`, `VmHWM`, ...), in KiB.
pub fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.strip_prefix(key).is_some_and(|rest| rest.starts_with(':')))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The three load averages of /proc/loadavg.
pub fn load_average() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut it = text.split_whitespace().map(|f| f.parse().unwrap_or(f64::NAN));
    [(); 3].map(|_| it.next().unwrap_or(f64::NAN))
}

pub fn machine() -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    json!({ "cpu": cpu, "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0) })
}

/// A private Mosquitto with the shipped settings that matter for throughput.
pub struct Mosquitto {
    child: std::process::Child,
    pub port: u16,
}

impl Mosquitto {
    pub fn start(dir: &Path) -> anyhow::Result<Mosquitto> {
        std::fs::create_dir_all(dir)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let conf = dir.join("mosquitto.conf");
        let mut f = std::fs::File::create(&conf)?;
        writeln!(f, "listener {port} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true")?;
        writeln!(f, "max_inflight_messages 1000\nmax_queued_messages 0\nmax_queued_bytes 0\npersistence false")?;
        if std::env::var("USER").as_deref() == Ok("root") || is_root() {
            writeln!(f, "user root")?;
        }
        let bin = ["/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .ok_or_else(|| anyhow::anyhow!("mosquitto not found: run scripts/install-deps"))?;
        let mut child = Command::new(bin).arg("-c").arg(&conf).stdout(Stdio::null()).stderr(Stdio::null()).spawn()?;
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(Mosquitto { child, port });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        anyhow::bail!("mosquitto did not listen on {port}")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

/// CPU seconds the whole machine spent busy (everything but idle and
/// iowait), from the first line of /proc/stat.
pub fn system_busy_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<f64> =
        stat.lines().next().unwrap_or("").split_whitespace().skip(1).map(|f| f.parse().unwrap_or(0.0)).collect();
    // user nice system idle iowait irq softirq steal (guest is inside user).
    let busy: f64 = fields.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, v)| v).sum();
    busy / clock_ticks_per_sec()
}

/// Bytes a process caused to be written to storage so far: `write_bytes` of
/// /proc/PID/io (all its threads, counted when a page is first dirtied, so
/// before writeback). None when unreadable.
pub fn disk_write_bytes(pid: u32) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    io.lines().find_map(|l| l.strip_prefix("write_bytes:"))?.trim().parse().ok()
}

/// fsync + fdatasync calls of a running process, counted by
/// `strace -f -c -e trace=fsync,fdatasync -o FILE -p PID` (its threads and
/// the children it starts meanwhile included), when `GRIDCAST_BENCH_STRACE=1`.
/// ptrace stops the process at every syscall: its CPU time is not the
/// baseline's while attached.
pub struct SyncCounter {
    strace: std::process::Child,
    out: std::path::PathBuf,
}

impl SyncCounter {
    /// Attach to `pid` if `GRIDCAST_BENCH_STRACE=1`; returns once every
    /// thread of `pid` is traced.
    pub fn attach_if_asked(pid: u32, out: &Path) -> anyhow::Result<Option<SyncCounter>> {
        if std::env::var("GRIDCAST_BENCH_STRACE").as_deref() != Ok("1") {
            return Ok(None);
        }
        let strace = Command::new("strace")
            .args(["-f", "-c", "-e", "trace=fsync,fdatasync", "-o"])
            .arg(out)
            .args(["-p", &pid.to_string()])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| anyhow::anyhow!("strace: {e} (apt-get install strace)"))?;
        let counter = SyncCounter { strace, out: out.to_path_buf() };
        let tracer = format!("TracerPid:\t{}", counter.strace.id());
        let traced = |tid: &std::fs::DirEntry| {
            std::fs::read_to_string(tid.path().join("status")).is_ok_and(|s| s.lines().any(|l| l == tracer))
        };
        for _ in 0..200 {
            if std::fs::read_dir(format!("/proc/{pid}/task"))?.flatten().all(|tid| traced(&tid)) {
                return Ok(Some(counter));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        anyhow::bail!("strace did not attach to {pid} within 5 s")
    }

    /// Detach (SIGINT) and return the fsync + fdatasync calls seen.
    pub fn finish(mut self) -> anyhow::Result<u64> {
        Command::new("kill").args(["-INT", &self.strace.id().to_string()]).status()?;
        self.strace.wait()?;
        // Rows of `strace -c`: % time, seconds, usecs/call, calls, [errors,] syscall.
        let table = std::fs::read_to_string(&self.out)?;
        Ok(table
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .filter(|f| matches!(f.last(), Some(&"fsync" | &"fdatasync")))
            .filter_map(|f| f.get(3)?.parse::<u64>().ok())
            .sum())
    }
}

/// Add the disk figures of a measured window to a JSON object:
/// `disk_write_bytes`, `disk_write_bytes_per_reading` and, when counted,
/// `fsyncs` (fsync + fdatasync) per reading and, if `batches` (spool
/// commits in the window) is known, per batch.
pub fn add_disk_io(
    report: &mut serde_json::Value,
    write_bytes: u64,
    readings: u64,
    fsyncs: Option<u64>,
    batches: Option<u64>,
) {
    let Some(object) = report.as_object_mut() else { return };
    let per = |n: u64, d: u64| n as f64 / d.max(1) as f64;
    object.insert("disk_write_bytes".into(), json!(write_bytes));
    object.insert("disk_write_bytes_per_reading".into(), json!(per(write_bytes, readings)));
    if let Some(fsyncs) = fsyncs {
        object.insert("fsyncs".into(), json!(fsyncs));
        object.insert("fsyncs_per_reading".into(), json!(per(fsyncs, readings)));
        if let Some(batches) = batches {
            object.insert("fsyncs_per_batch".into(), json!(per(fsyncs, batches)));
        }
    }
}
