//! Counters the edge runtime keeps for both services: what came in, what was
//! rejected and why, what was written. Read by the periodic summary log, the
//! demo, and `/metrics` ([`Stats::render`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Shared, lock-free on the hot path except for the rare error kinds.
#[derive(Debug, Default)]
pub struct Stats {
    pub messages: AtomicU64,
    pub readings: AtomicU64,
    pub late_readings: AtomicU64,
    pub clock_jump_readings: AtomicU64,
    pub duplicate_readings: AtomicU64,
    /// Readings of a new sensor refused at `[window] max_keys`.
    pub key_limit_readings: AtomicU64,
    pub windows_closed: AtomicU64,
    pub batches_committed: AtomicU64,
    pub mqtt_reconnects: AtomicU64,
    /// Subscriptions the broker confirmed (one per connect).
    pub mqtt_subscriptions: AtomicU64,
    /// When the MQTT connection came up (ms since the epoch); 0 while it is
    /// down. See [`Stats::listening_since`].
    mqtt_connected_since_ms: AtomicI64,
    /// Windows open right now (a gauge, set after every commit).
    pub open_windows: AtomicU64,
    /// Times the spool was full and messages were left un-acknowledged.
    pub spool_full_waits: AtomicU64,
    /// 1 while the disk under the spool is full (a gauge).
    pub spool_disk_full: AtomicU64,
    /// Rejected messages counted but not kept: the rejected log was at its
    /// bound.
    pub rejected_not_kept: AtomicU64,
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
    pub clock_jump_readings: u64,
    pub duplicate_readings: u64,
    pub key_limit_readings: u64,
    pub windows_closed: u64,
    pub batches_committed: u64,
    pub mqtt_reconnects: u64,
    pub mqtt_subscriptions: u64,
    pub open_windows: u64,
    pub spool_full_waits: u64,
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

    /// The MQTT connection is up since `now_ms`.
    pub fn mqtt_connected(&self, now_ms: i64) {
        self.mqtt_connected_since_ms.store(now_ms.max(1), Ordering::Relaxed);
    }

    /// The MQTT connection is down.
    pub fn mqtt_disconnected(&self) {
        self.mqtt_connected_since_ms.store(0, Ordering::Relaxed);
    }

    /// Since when the MQTT connection has been up; `None` while it is down
    /// (or before it first came up). Windows do not idle-close meanwhile.
    pub fn listening_since(&self) -> Option<i64> {
        let since = self.mqtt_connected_since_ms.load(Ordering::Relaxed);
        (since > 0).then_some(since)
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

    /// The counters in the Prometheus text format (0.0.4), with the
    /// spool's figures (`waiting_bytes`, `max_bytes`).
    pub fn render(&self, spool_waiting_bytes: u64, spool_max_bytes: u64) -> String {
        let s = self.snapshot();
        let mut out = String::new();
        let mut metric =
            |name: &str, help: &str, kind: &str, v: u64| crate::http::metric(&mut out, name, help, kind, v);
        metric("stage_messages_total", "MQTT messages taken by the stage.", "counter", s.messages);
        metric("stage_readings_total", "Readings accepted into windows.", "counter", s.readings);
        metric(
            "stage_late_readings_total",
            "Readings whose window was already closed (not merged).",
            "counter",
            s.late_readings,
        );
        metric(
            "stage_clock_jump_readings_total",
            "Readings from a meter clock that jumped ahead (not merged; ingest keeps them aside).",
            "counter",
            s.clock_jump_readings,
        );
        metric(
            "stage_duplicate_readings_total",
            "Redelivered readings recognised as duplicates.",
            "counter",
            s.duplicate_readings,
        );
        metric(
            "stage_key_limit_readings_total",
            "Readings of a new sensor refused because [window] max_keys sensors are kept already.",
            "counter",
            s.key_limit_readings,
        );
        metric("stage_windows_closed_total", "Windows closed.", "counter", s.windows_closed);
        metric(
            "stage_batches_committed_total",
            "Spool transactions committed (one fsync each).",
            "counter",
            s.batches_committed,
        );
        metric("stage_open_windows", "Windows open now.", "gauge", s.open_windows);
        metric("mqtt_reconnects_total", "MQTT connection losses.", "counter", s.mqtt_reconnects);
        metric("mqtt_subscriptions_total", "Subscriptions the broker confirmed.", "counter", s.mqtt_subscriptions);
        let connected = u64::from(self.listening_since().is_some());
        metric("mqtt_connected", "1 while connected to the MQTT broker, else 0.", "gauge", connected);
        metric(
            "spool_waiting_bytes",
            "Bytes in the spool waiting for sinks and uploads.",
            "gauge",
            spool_waiting_bytes,
        );
        metric("spool_max_bytes", "The spool's bound; at it, messages are not acknowledged.", "gauge", spool_max_bytes);
        metric("spool_full_waits_total", "Times the spool was full.", "counter", s.spool_full_waits);
        let not_kept = self.rejected_not_kept.load(Ordering::Relaxed);
        metric(
            "rejected_not_kept_total",
            "Rejected messages not kept: the rejected log was at its bound.",
            "counter",
            not_kept,
        );
        let disk_full = self.spool_disk_full.load(Ordering::Relaxed);
        metric(
            "spool_disk_full",
            "1 while the disk under the spool is full (nothing is acknowledged).",
            "gauge",
            disk_full,
        );
        let _ = writeln!(
            out,
            "# HELP gridcast_decode_errors_total Messages rejected, by reason.\n# TYPE gridcast_decode_errors_total counter"
        );
        for (kind, n) in &s.decode_errors {
            let _ = writeln!(out, "gridcast_decode_errors_total{{kind=\"{kind}\"}} {n}");
        }
        let sink_metrics: [(&str, &str, SinkCounter); 3] = [
            ("sink_lines_written_total", "Lines the sink stored.", |c| c.lines_written),
            ("sink_retries_total", "Failed sink writes (retried).", |c| c.retries),
            ("sink_rejected_batches_total", "Batches the sink refused (kept on disk).", |c| c.rejected_batches),
        ];
        for (name, help, get) in sink_metrics {
            let _ = writeln!(out, "# HELP gridcast_{name} {help}\n# TYPE gridcast_{name} counter");
            for (sink, counters) in &s.sinks {
                let _ = writeln!(out, "gridcast_{name}{{sink=\"{}\"}} {}", label(sink), get(counters));
            }
        }
        out
    }

    pub fn snapshot(&self) -> Snapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Snapshot {
            messages: get(&self.messages),
            readings: get(&self.readings),
            late_readings: get(&self.late_readings),
            clock_jump_readings: get(&self.clock_jump_readings),
            duplicate_readings: get(&self.duplicate_readings),
            key_limit_readings: get(&self.key_limit_readings),
            windows_closed: get(&self.windows_closed),
            batches_committed: get(&self.batches_committed),
            mqtt_reconnects: get(&self.mqtt_reconnects),
            mqtt_subscriptions: get(&self.mqtt_subscriptions),
            open_windows: get(&self.open_windows),
            spool_full_waits: get(&self.spool_full_waits),
            decode_errors: self.decode_errors.lock().expect("stats lock").clone(),
            sinks: self.sinks.lock().expect("stats lock").clone(),
        }
    }
}

/// Reads one counter of a sink.
type SinkCounter = fn(&SinkCounters) -> u64;

/// A Prometheus label value: backslash, quote and newline escaped.
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_in_prometheus_format_with_sink_labels() {
        let stats = Stats::default();
        Stats::add(&stats.readings, 7);
        stats.decode_error("wrong_length");
        stats.sink_lines_written("influxdb_v1 http://h/ db=\"x\"", 3);
        let text = stats.render(10, 100);
        assert!(text.contains("gridcast_stage_readings_total 7\n"), "{text}");
        assert!(text.contains("gridcast_decode_errors_total{kind=\"wrong_length\"} 1\n"), "{text}");
        assert!(
            text.contains("gridcast_sink_lines_written_total{sink=\"influxdb_v1 http://h/ db=\\\"x\\\"\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("gridcast_spool_waiting_bytes 10\n"), "{text}");
    }
}
