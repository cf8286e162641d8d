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
    /// Of those, the models refused for their signature, by reason
    /// (`unsigned`, `untrusted_key`, `bad_signature`, `malformed_signature`).
    pub model_signature_rejects: [AtomicU64; 4],
    pub running: AtomicBool,
    pub model_version: Mutex<String>,
    /// Why the serving model may serve (`signed by <key id>`, `the shipped
    /// default`, `not verified`), on `/health`.
    pub model_provenance: Mutex<String>,
    /// Error sums over judged predictions, W.
    pub errors: Mutex<ErrorSums>,
}

/// Running sums from which a scraper computes the error over any window:
/// (Δ absolute error) / (Δ absolute actual) is the weighted absolute
/// percentage error (WAPE) of the predictions judged in between, and
/// (Δ absolute error) / (Δ persistence error) their error relative to the
/// persistence forecast (below 1: better than "same as last interval"),
/// which the agent's soak window compares across models.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct ErrorSums {
    pub absolute_error_w: f64,
    pub absolute_actual_w: f64,
    pub persistence_error_w: f64,
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

    /// The reasons [`Metrics::model_signature_rejects`] counts, in order.
    pub const SIGNATURE_REASONS: [&str; 4] = ["unsigned", "untrusted_key", "bad_signature", "malformed_signature"];

    /// A model refused for its signature: counted in `model_rejects` and
    /// under its reason.
    pub fn count_signature_reject(&self, reason: &str) {
        Self::inc(&self.model_rejects);
        let i = Self::SIGNATURE_REASONS.iter().position(|r| *r == reason).unwrap_or(3);
        Self::inc(&self.model_signature_rejects[i]);
    }

    pub fn set_model_version(&self, v: &str) {
        *self.model_version.lock().expect("metrics lock") = v.to_string();
    }

    pub fn add_errors(&self, add: ErrorSums) {
        let mut sums = self.errors.lock().expect("metrics lock");
        sums.absolute_error_w += add.absolute_error_w;
        sums.absolute_actual_w += add.absolute_actual_w;
        sums.persistence_error_w += add.persistence_error_w;
    }

    pub fn errors(&self) -> ErrorSums {
        *self.errors.lock().expect("metrics lock")
    }

    pub fn set_model_provenance(&self, p: &str) {
        *self.model_provenance.lock().expect("metrics lock") = p.to_string();
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
        counter(
            "model_rejects_total",
            "New models refused by validation or for their signature.",
            "counter",
            Self::get(&self.model_rejects),
        );
        let _ = writeln!(
            s,
            "# HELP gridcast_model_signature_rejects_total New models refused for their signature ([predict] trusted_keys), by reason.\n\
             # TYPE gridcast_model_signature_rejects_total counter"
        );
        for (reason, count) in Self::SIGNATURE_REASONS.iter().zip(&self.model_signature_rejects) {
            let _ = writeln!(s, "gridcast_model_signature_rejects_total{{reason=\"{reason}\"}} {}", Self::get(count));
        }
        let errors = self.errors();
        let _ = writeln!(
            s,
            "# HELP gridcast_absolute_error_watts_sum Sum of |predicted - actual| over judged predictions, W.\n\
             # TYPE gridcast_absolute_error_watts_sum counter\ngridcast_absolute_error_watts_sum {}\n\
             # HELP gridcast_absolute_actual_watts_sum Sum of |actual| over the same predictions, W.\n\
             # TYPE gridcast_absolute_actual_watts_sum counter\ngridcast_absolute_actual_watts_sum {}\n\
             # HELP gridcast_persistence_error_watts_sum Sum of |persistence forecast - actual| over the same predictions, W.\n\
             # TYPE gridcast_persistence_error_watts_sum counter\ngridcast_persistence_error_watts_sum {}",
            errors.absolute_error_w, errors.absolute_actual_w, errors.persistence_error_w
        );
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
            "model_provenance": self.model_provenance.lock().expect("metrics lock").clone(),
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
        m.add_errors(ErrorSums { absolute_error_w: 12.5, absolute_actual_w: 250.0, persistence_error_w: 20.0 });
        assert!(!m.health().0);
        m.running.store(true, Ordering::Relaxed);
        m.set_model_version("abc");
        assert!(m.health().0);
        let text = m.render();
        assert!(text.contains("gridcast_mispredictions_total 3\n"), "{text}");
        assert!(text.contains("gridcast_model_info{version=\"abc\"} 1"), "{text}");
        assert!(text.contains("# TYPE gridcast_triplet_spool_depth gauge"));
        assert!(text.contains("gridcast_absolute_error_watts_sum 12.5\n"), "{text}");
        assert!(text.contains("gridcast_absolute_actual_watts_sum 250\n"), "{text}");
        assert!(text.contains("gridcast_persistence_error_watts_sum 20\n"), "{text}");
        m.count_signature_reject("untrusted_key");
        let text = m.render();
        assert!(text.contains("gridcast_model_signature_rejects_total{reason=\"untrusted_key\"} 1\n"), "{text}");
        assert!(text.contains("gridcast_model_signature_rejects_total{reason=\"unsigned\"} 0\n"), "{text}");
        assert!(text.contains("gridcast_model_rejects_total 1\n"), "{text}");
    }
}
