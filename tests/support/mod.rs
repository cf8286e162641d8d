//! Test support for the black-box tests in `tests/`: how a test reaches the
//! real servers it runs against, and how it reads back what gridcast wrote.
//!
//! Two kinds of servers:
//! - Shared ones, started once per run by `scripts/test-servers start` (and
//!   by `scripts/test`), found through `GRIDCAST_TEST_*` variables:
//!   [`shared_servers`]. Many tests use them at once, so a test keeps to its
//!   own topics, client ids and measurement names ([`unique`]).
//! - Private ones a test starts, stops and restarts itself, for fault tests:
//!   [`Mosquitto`], [`Influxd`], [`Victoria`]. Each runs from a directory the
//!   test owns (a `tempfile::TempDir`) on a free port, and is killed when
//!   dropped.
//!
//! Read-back goes over plain HTTP/1.1 on `std::net` ([`http`]): no async
//! runtime in the test body, no extra dependencies.
//!
//! Use it with `mod support;` at the top of a file in `tests/`.

// Each test file compiles this module on its own and uses only part of it.
#![allow(dead_code, unused_imports)]

pub mod blob;
pub mod dockerd;
pub mod gridcast;
pub mod http;
pub mod image;
pub mod meter;
pub mod mqtt;
mod process;
pub mod registry;
mod servers;

use std::env;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use http::{
    influx_create_database, influx_write, influxql_query, influxql_values, victoria_export, victoria_flush,
    victoria_write,
};
pub use process::find_binary;
pub use servers::{Influxd, Mosquitto, Victoria};

/// The database that `scripts/test-servers` and [`Influxd::start`] create.
pub const INFLUX_DB: &str = "gridcast";

/// The servers `scripts/test-servers start` runs for the whole test run.
#[derive(Debug, Clone)]
pub struct SharedServers {
    /// Mosquitto (deploy/mosquitto/mosquitto.conf), from `GRIDCAST_TEST_MQTT`.
    pub mqtt: SocketAddr,
    /// InfluxDB 1.x base URL, e.g. `http://127.0.0.1:34813`, with database
    /// [`INFLUX_DB`] created; from `GRIDCAST_TEST_INFLUXDB_V1`.
    pub influxdb_v1: String,
    /// VictoriaMetrics base URL; from `GRIDCAST_TEST_VICTORIA`.
    pub victoria: String,
}

/// The shared servers' addresses, from the environment.
///
/// Panics, naming the command to run, if a variable is missing.
pub fn shared_servers() -> SharedServers {
    let mqtt = required_env("GRIDCAST_TEST_MQTT");
    SharedServers {
        mqtt: mqtt
            .parse()
            .unwrap_or_else(|e| panic!("GRIDCAST_TEST_MQTT={mqtt:?} is not an address like 127.0.0.1:1883: {e}")),
        influxdb_v1: required_env("GRIDCAST_TEST_INFLUXDB_V1"),
        victoria: required_env("GRIDCAST_TEST_VICTORIA"),
    }
}

fn required_env(name: &str) -> String {
    match env::var(name) {
        Ok(value) if !value.is_empty() => value.trim_end_matches('/').to_owned(),
        _ => panic!(
            "{name} is not set: start the test servers with `scripts/test-servers start` \
             and `source target/test-servers/env`, or run `scripts/test`"
        ),
    }
}

/// A TCP port on 127.0.0.1 that nobody listened on a moment ago.
///
/// Another process may take it before the caller binds it; the private
/// servers retry on a new port when that happens.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 to find a free port");
    listener.local_addr().expect("local address of a bound socket").port()
}

/// A name no other test in this run uses: `{prefix}_{pid}_{counter}_{nanos}`,
/// fit for MQTT topics and client ids, measurement and metric names.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("{prefix}_{}_{n}_{nanos}", std::process::id())
}

/// Calls `attempt` every 50 ms until it returns `Some`, and returns that.
/// Panics after `timeout`, saying what was awaited.
///
/// For what the servers show a moment after the write that caused it, e.g.
/// series in VictoriaMetrics even after [`victoria_flush`].
pub fn eventually<T>(timeout: Duration, what: &str, mut attempt: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = attempt() {
            return value;
        }
        assert!(Instant::now() < deadline, "gave up after {timeout:?} waiting for {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// A finished command's status, stdout and stderr, for assertion messages.
pub fn command_output(output: &std::process::Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
