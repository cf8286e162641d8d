//! The predictor's own counters. The edge runtime serves them on `/metrics`
//! beside its stage, MQTT, spool and sink counters (see `run.rs`), and
//! `/health` is healthy while running with a model loaded.

use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Shared counters; lock-free except the model version string.
#[derive(Debug, Default)]
pub struct Metrics {
    pub predictions: AtomicU64,
    pub judged: AtomicU64,
    pub mispredictions: AtomicU64,
    /// Predictions dropped because their target interval never came (a gap).
    pub unjudged: AtomicU64,
    pub intervals: AtomicU64,
    pub triplet_spool_depth: AtomicU64,
    pub uploads: AtomicU64,
    pub uploaded_triplets: AtomicU64,
    pub upload_failures: AtomicU64,
    pub model_reloads: AtomicU64,
    pub model_rejects: AtomicU64,
    pub running: AtomicBool,
    pub model_version: Mutex<String>,
}

impl Metrics {
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    pub fn set_model_version(&self, v: &str) {
        *self.model_version.lock().expect("metrics lock") = v.to_string();
    }

    pub fn model_version(&self) -> String {
        self.model_version.lock().expect("metrics lock").clone()
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let mut counter =
            |name: &str, help: &str, kind: &str, v: u64| gridcast_edge::http::metric(&mut s, name, help, kind, v);
        counter("predictions_total", "Predictions made.", "counter", Self::get(&self.predictions));
        counter("judged_total", "Predictions compared with the actual interval.", "counter", Self::get(&self.judged));
        counter(
            "mispredictions_total",
            "Judged predictions flagged as mispredicted.",
            "counter",
            Self::get(&self.mispredictions),
        );
        counter(
            "unjudged_total",
            "Predictions whose target interval never arrived.",
            "counter",
            Self::get(&self.unjudged),
        );
        counter("intervals_total", "Intervals closed and fed to the features.", "counter", Self::get(&self.intervals));
        counter("triplet_spool_depth", "Triplets waiting for upload.", "gauge", Self::get(&self.triplet_spool_depth));
        counter("uploads_total", "Triplet batches stored in blob storage.", "counter", Self::get(&self.uploads));
        counter(
            "uploaded_triplets_total",
            "Triplets stored in blob storage.",
            "counter",
            Self::get(&self.uploaded_triplets),
        );
        counter(
            "upload_failures_total",
            "Failed triplet batch uploads (retried).",
            "counter",
            Self::get(&self.upload_failures),
        );
        counter("model_reloads_total", "Models swapped in while running.", "counter", Self::get(&self.model_reloads));
        counter("model_rejects_total", "New models refused by validation.", "counter", Self::get(&self.model_rejects));
        let _ = writeln!(
            s,
            "# HELP gridcast_model_info The model serving now.\n# TYPE gridcast_model_info gauge\ngridcast_model_info{{version=\"{}\"}} 1",
            self.model_version()
        );
        s
    }

    /// `/health`: healthy, and the JSON body saying why.
    pub fn health(&self) -> (bool, serde_json::Value) {
        let running = self.running.load(Ordering::Relaxed);
        let version = self.model_version();
        let ok = running && !version.is_empty();
        let body = serde_json::json!({
            "status": if ok { "ok" } else { "unavailable" },
            "running": running,
            "model_version": version,
            "triplet_spool_depth": Self::get(&self.triplet_spool_depth),
        });
        (ok, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_in_prometheus_format_and_health_needs_a_model() {
        let m = Metrics::default();
        Metrics::add(&m.mispredictions, 3);
        assert!(!m.health().0);
        m.running.store(true, Ordering::Relaxed);
        m.set_model_version("abc");
        assert!(m.health().0);
        let text = m.render();
        assert!(text.contains("gridcast_mispredictions_total 3\n"), "{text}");
        assert!(text.contains("gridcast_model_info{version=\"abc\"} 1"), "{text}");
        assert!(text.contains("# TYPE gridcast_triplet_spool_depth gauge"));
    }
}
