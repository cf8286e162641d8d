//! Private Mosquitto, InfluxDB 1.x and VictoriaMetrics instances for tests
//! that stop, kill and restart servers. Configured as `scripts/test-servers`
//! configures the shared ones (keep the two in step): loopback only, a free
//! port, all data in the directory the test passes to `start`.

use std::ffi::OsString;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::INFLUX_DB;
use super::http;
use super::process::{Launch, ServerProcess, find_binary, fresh_log};

fn create_dir(path: &Path) -> PathBuf {
    fs::create_dir_all(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    path.to_path_buf()
}

fn write_file(path: &Path, contents: &str) {
    fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

// --- Mosquitto ----------------------------------------------------------------------

/// A Mosquitto broker running deploy/mosquitto/mosquitto.conf, with its
/// listener moved to a free port and persistence in `dir/mosquitto/`.
/// `stop` saves the persistence file (SIGTERM); `restart` reloads it, so
/// persistent sessions and their queued messages survive, as on the Pi.
pub struct Mosquitto {
    process: ServerProcess,
    /// The port of the listener [`Mosquitto::start_with_listener`] added.
    second_port: Option<u16>,
}

impl Mosquitto {
    pub fn start(dir: impl AsRef<Path>) -> Self {
        Self::launch(dir.as_ref(), None)
    }

    /// As [`Mosquitto::start`], plus a second listener: `listener(port)`
    /// returns its config block (starting with `listener {port} 127.0.0.1`)
    /// for a free port, appended to the config, with `per_listener_settings
    /// true` on top, so its authentication settings (`allow_anonymous`,
    /// `password_file`) are its own and the shipped listener stays open to
    /// the tests' publishers. A TLS listener, say; [`Mosquitto::second_port`]
    /// gives its port.
    pub fn start_with_listener(dir: impl AsRef<Path>, listener: impl Fn(u16) -> String) -> Self {
        Self::launch(dir.as_ref(), Some(&listener))
    }

    fn launch(dir: &Path, listener: Option<&dyn Fn(u16) -> String>) -> Self {
        let data = create_dir(&dir.join("mosquitto"));
        let config = dir.join("mosquitto.conf");
        let program = find_binary("mosquitto", "/usr/sbin/mosquitto");
        let log = fresh_log(&dir.join("mosquitto.log"));
        let mut second_port = None;
        let process = ServerProcess::start("mosquitto", log, mqtt_answers, |port| {
            let mut text = mosquitto_config(port, &data);
            if let Some(listener) = listener {
                // A fresh port on every launch attempt, as for the first.
                let port = super::free_port();
                second_port = Some(port);
                text = format!("per_listener_settings true\n{text}\n# Added by the test.\n{}\n", listener(port));
            }
            write_file(&config, &text);
            Launch { program: program.clone(), args: vec!["-c".into(), config.clone().into()], env_remove: vec![] }
        });
        Mosquitto { process, second_port }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port())
    }

    /// The port of the listener added by [`Mosquitto::start_with_listener`].
    pub fn second_port(&self) -> Option<u16> {
        self.second_port
    }
}

/// The shipped config with the `listener` and `persistence_location` lines
/// replaced. A broker started as root keeps running as root (`user root`):
/// as the `mosquitto` user it could not write to the test's directory.
fn mosquitto_config(port: u16, data: &Path) -> String {
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/mosquitto/mosquitto.conf");
    let text = fs::read_to_string(shipped).unwrap_or_else(|e| panic!("read {shipped}: {e}"));
    let mut replaced = 0;
    let mut config: String = text
        .lines()
        .map(|line| {
            if line.starts_with("listener ") {
                replaced += 1;
                format!("listener {port} 127.0.0.1\n")
            } else if line.starts_with("persistence_location ") {
                replaced += 1;
                format!("persistence_location {}/\n", data.display())
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    assert_eq!(replaced, 2, "{shipped}: expected one `listener` and one `persistence_location` line");
    if fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0) {
        config.push_str("\n# Added by tests/support.\nuser root\n");
    }
    config
}

/// A full MQTT 3.1.1 handshake: CONNECT (clean session, empty client id),
/// expect CONNACK accepted, then DISCONNECT.
fn mqtt_answers(port: u16) -> bool {
    const CONNECT: [u8; 14] = [
        0x10, 12, // CONNECT, remaining length
        0, 4, b'M', b'Q', b'T', b'T', 4, // protocol name, level 4 (3.1.1)
        0x02, 0, 10, // clean session, keep alive 10 s
        0, 0, // empty client id: the broker assigns one
    ];
    let attempt = || -> std::io::Result<bool> {
        let mut stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.write_all(&CONNECT)?;
        let mut connack = [0u8; 4];
        stream.read_exact(&mut connack)?;
        stream.write_all(&[0xE0, 0])?;
        Ok(connack == [0x20, 2, 0, 0])
    };
    attempt().unwrap_or(false)
}

// --- InfluxDB 1.x -------------------------------------------------------------------

/// An influxd 1.x with everything under `dir/influxdb/`, HTTP on a free
/// port, and the database `gridcast` created. `restart` keeps the port and
/// the data.
pub struct Influxd {
    process: ServerProcess,
}

impl Influxd {
    pub fn start(dir: impl AsRef<Path>) -> Self {
        let dir = dir.as_ref();
        let data = create_dir(&dir.join("influxdb"));
        let config = dir.join("influxdb.conf");
        let program = find_binary("influxd", "/usr/bin/influxd");
        let log = fresh_log(&dir.join("influxdb.log"));
        // influxd lets INFLUXDB_* variables override its config file.
        let env_remove: Vec<OsString> =
            std::env::vars_os().map(|(k, _)| k).filter(|k| k.to_string_lossy().starts_with("INFLUXDB_")).collect();
        let process = ServerProcess::start("influxd", log, influx_answers, |port| {
            let rpc_port = super::free_port();
            write_file(&config, &influxdb_config(&data, port, rpc_port));
            Launch {
                program: program.clone(),
                args: vec!["-config".into(), config.clone().into()],
                env_remove: env_remove.clone(),
            }
        });
        let server = Influxd { process };
        let created = http::post(
            &format!(
                "{}/query?{}",
                server.url(),
                http::query_string(&[("q", &format!("CREATE DATABASE {INFLUX_DB}"))])
            ),
            b"",
        );
        assert!(
            created.status == 200 && !created.text().contains("\"error\""),
            "CREATE DATABASE {INFLUX_DB}: {} {}",
            created.status,
            created.text()
        );
        server
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port())
    }
}

/// influxd 1.6 config keys, as `influxd config` prints them. The RPC port
/// (backup/restore) is bound too, so it also gets a free loopback port.
fn influxdb_config(data: &Path, http_port: u16, rpc_port: u16) -> String {
    let data = data.display();
    format!(
        r#"# Generated by tests/support for one test.
# Debian's influxd reads reporting-enabled (and ignores unknown keys);
# upstream 1.x reads reporting-disabled.
reporting-enabled = false
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{data}/meta"

[data]
  dir = "{data}/data"
  wal-dir = "{data}/wal"
  query-log-enabled = false

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{http_port}"
  auth-enabled = false
  log-enabled = false

[ifql]
  enabled = false

[[graphite]]
  enabled = false

[[collectd]]
  enabled = false

[[opentsdb]]
  enabled = false

[[udp]]
  enabled = false
"#
    )
}

fn influx_answers(port: u16) -> bool {
    http::request("GET", &format!("http://127.0.0.1:{port}/ping"), &[], b"").is_ok_and(|r| r.status == 204)
}

// --- VictoriaMetrics ------------------------------------------------------------------

/// A single-node VictoriaMetrics with its data in `dir/victoria-metrics/`,
/// flags as in scripts/test-servers (see there for why each). `stop`
/// (SIGTERM) flushes what it buffered; `kill` may lose about a second of
/// accepted samples.
pub struct Victoria {
    process: ServerProcess,
}

impl Victoria {
    pub fn start(dir: impl AsRef<Path>) -> Self {
        let dir = dir.as_ref();
        let data = create_dir(&dir.join("victoria-metrics"));
        let program = find_binary("victoria-metrics", "/usr/bin/victoria-metrics");
        let log = fresh_log(&dir.join("victoria-metrics.log"));
        let process = ServerProcess::start("victoria-metrics", log, victoria_answers, |port| {
            let mut args: Vec<OsString> = vec![
                format!("-httpListenAddr=127.0.0.1:{port}").into(),
                format!("-storageDataPath={}", data.display()).into(),
            ];
            args.extend(VICTORIA_FLAGS.iter().map(OsString::from));
            Launch { program: program.clone(), args, env_remove: vec![] }
        });
        Victoria { process }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port())
    }
}

/// Retention long enough for the 2006-2010 sample data (the default, one
/// month, drops older samples while still answering 204); one sample per
/// series and timestamp, as in InfluxDB; no response cache and no hiding of
/// the last 30 s in /api/v1/query*.
const VICTORIA_FLAGS: [&str; 4] =
    ["-retentionPeriod=100y", "-dedup.minScrapeInterval=1ms", "-search.disableCache", "-search.latencyOffset=1ms"];

fn victoria_answers(port: u16) -> bool {
    http::request("GET", &format!("http://127.0.0.1:{port}/health"), &[], b"").is_ok_and(|r| r.status == 200)
}

/// The server types are a [`ServerProcess`] (port, pid, stop, kill,
/// restart) plus what is particular to each server.
macro_rules! deref_to_process {
    ($($server:ty),*) => {$(
        impl std::ops::Deref for $server {
            type Target = ServerProcess;
            fn deref(&self) -> &ServerProcess {
                &self.process
            }
        }
        impl std::ops::DerefMut for $server {
            fn deref_mut(&mut self) -> &mut ServerProcess {
                &mut self.process
            }
        }
    )*};
}
deref_to_process!(Mosquitto, Influxd, Victoria);
