//! Counters the pipeline keeps: what came in, what was rejected and why,
//! what was written. Read by the periodic summary log and by the demo.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Shared, lock-free on the hot path except for the rare error kinds.
#[derive(Debug, Default)]
pub struct Stats {
    pub messages: AtomicU64,
    pub readings: AtomicU64,
    pub late_readings: AtomicU64,
    pub duplicate_readings: AtomicU64,
    pub windows_closed: AtomicU64,
    pub batches_committed: AtomicU64,
    pub mqtt_reconnects: AtomicU64,
    /// Subscriptions the broker confirmed (one per connect).
    pub mqtt_subscriptions: AtomicU64,
    /// Windows open right now (a gauge, set after every commit).
    pub open_windows: AtomicU64,
    decode_errors: Mutex<BTreeMap<&'static str, u64>>,
    sinks: Mutex<BTreeMap<String, SinkCounters>>,
}

/// Per-sink counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SinkCounters {
    pub lines_written: u64,
    pub retries: u64,
    pub rejected_batches: u64,
}

/// A point-in-time copy of every counter.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub messages: u64,
    pub readings: u64,
    pub late_readings: u64,
    pub duplicate_readings: u64,
    pub windows_closed: u64,
    pub batches_committed: u64,
    pub mqtt_reconnects: u64,
    pub mqtt_subscriptions: u64,
    pub open_windows: u64,
    pub decode_errors: BTreeMap<&'static str, u64>,
    pub sinks: BTreeMap<String, SinkCounters>,
}

impl Snapshot {
    pub fn decode_errors_total(&self) -> u64 {
        self.decode_errors.values().sum()
    }
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn decode_error(&self, kind: &'static str) {
        *self.decode_errors.lock().expect("stats lock").entry(kind).or_default() += 1;
    }

    pub fn sink_lines_written(&self, sink: &str, lines: u64) {
        self.sink(sink, |c| c.lines_written += lines);
    }

    pub fn sink_retry(&self, sink: &str) {
        self.sink(sink, |c| c.retries += 1);
    }

    pub fn sink_rejected(&self, sink: &str) {
        self.sink(sink, |c| c.rejected_batches += 1);
    }

    fn sink(&self, sink: &str, f: impl FnOnce(&mut SinkCounters)) {
        f(self.sinks.lock().expect("stats lock").entry(sink.to_string()).or_default());
    }

    /// Wait until the broker has confirmed our subscriptions: from then on
    /// it keeps every matching message for us, even while we are away.
    pub async fn wait_subscribed(&self, timeout: std::time::Duration) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + timeout;
        while self.mqtt_subscriptions.load(Ordering::Relaxed) == 0 {
            if std::time::Instant::now() > deadline {
                anyhow::bail!("the MQTT broker did not confirm our subscriptions within {timeout:?}");
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Ok(())
    }

    pub fn snapshot(&self) -> Snapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Snapshot {
            messages: get(&self.messages),
            readings: get(&self.readings),
            late_readings: get(&self.late_readings),
            duplicate_readings: get(&self.duplicate_readings),
            windows_closed: get(&self.windows_closed),
            batches_committed: get(&self.batches_committed),
            mqtt_reconnects: get(&self.mqtt_reconnects),
            mqtt_subscriptions: get(&self.mqtt_subscriptions),
            open_windows: get(&self.open_windows),
            decode_errors: self.decode_errors.lock().expect("stats lock").clone(),
            sinks: self.sinks.lock().expect("stats lock").clone(),
        }
    }
}
