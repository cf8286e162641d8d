//! The predictor's counters, and the small HTTP server that shows them:
//! `/metrics` in the Prometheus text format and `/health` (200 with JSON
//! while running with a model loaded, 503 otherwise).
//!
//! hyper 1.x with hyper-util: both are already built for reqwest and
//! object_store, so two fixed routes cost no new crates.

use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use tokio_util::sync::CancellationToken;

/// Shared counters; lock-free except the model version string.
#[derive(Debug, Default)]
pub struct Metrics {
    pub predictions: AtomicU64,
    pub judged: AtomicU64,
    pub mispredictions: AtomicU64,
    /// Predictions dropped because their target interval never came (a gap).
    pub unjudged: AtomicU64,
    pub readings: AtomicU64,
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
        let mut counter = |name: &str, help: &str, kind: &str, v: u64| {
            let _ = writeln!(s, "# HELP gridcast_{name} {help}\n# TYPE gridcast_{name} {kind}\ngridcast_{name} {v}");
        };
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
        counter("readings_total", "Readings accepted into intervals.", "counter", Self::get(&self.readings));
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

    /// `/health` body and status.
    pub fn health(&self) -> (StatusCode, String) {
        let running = self.running.load(Ordering::Relaxed);
        let version = self.model_version();
        let ok = running && !version.is_empty();
        let body = serde_json::json!({
            "status": if ok { "ok" } else { "unavailable" },
            "running": running,
            "model_version": version,
            "triplet_spool_depth": Self::get(&self.triplet_spool_depth),
        })
        .to_string();
        (if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, body)
    }
}

/// Bind `listen` and serve until `shutdown`. Binding happens before this
/// returns, so a taken port is a start-up error.
pub async fn serve(
    listen: &str,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let addr: SocketAddr = listen.parse().map_err(|e| anyhow::anyhow!("[http] listen {listen:?}: {e}"))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} for /metrics and /health: {e}"))?;
    tracing::info!(%addr, "serving /metrics and /health");
    Ok(tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                _ = shutdown.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => { tracing::warn!(error = %e, "accept failed"); continue; }
                },
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let metrics = metrics.clone();
                    async move { Ok::<_, std::convert::Infallible>(route(&req, &metrics)) }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
        }
    }))
}

fn route(req: &Request<hyper::body::Incoming>, metrics: &Metrics) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match req.uri().path() {
        "/metrics" => (StatusCode::OK, "text/plain; version=0.0.4", metrics.render()),
        "/health" => {
            let (status, body) = metrics.health();
            (status, "application/json", body)
        }
        _ => (StatusCode::NOT_FOUND, "text/plain", "try /metrics or /health\n".to_string()),
    };
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_in_prometheus_format_and_health_needs_a_model() {
        let m = Metrics::default();
        Metrics::add(&m.mispredictions, 3);
        assert_eq!(m.health().0, StatusCode::SERVICE_UNAVAILABLE);
        m.running.store(true, Ordering::Relaxed);
        m.set_model_version("abc");
        assert_eq!(m.health().0, StatusCode::OK);
        let text = m.render();
        assert!(text.contains("gridcast_mispredictions_total 3\n"), "{text}");
        assert!(text.contains("gridcast_model_info{version=\"abc\"} 1"), "{text}");
        assert!(text.contains("# TYPE gridcast_triplet_spool_depth gauge"));
    }
}
