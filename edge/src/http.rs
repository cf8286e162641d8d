//! `/metrics` (Prometheus text format) and `/health` (200 with JSON while
//! the service is healthy, 503 otherwise), for ingest and predict alike.
//!
//! hyper 1.x with hyper-util: both are already built for reqwest and
//! object_store, so two fixed routes cost no new crates.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use tokio_util::sync::CancellationToken;

/// One metric in the Prometheus text format: its HELP and TYPE lines and
/// its value, named `gridcast_<name>`.
pub fn metric(out: &mut String, name: &str, help: &str, kind: &str, value: u64) {
    use std::fmt::Write as _;
    let _ = writeln!(out, "# HELP gridcast_{name} {help}\n# TYPE gridcast_{name} {kind}\ngridcast_{name} {value}");
}

/// What a service shows on `/metrics` and `/health`.
pub trait Exposition: Send + Sync + 'static {
    /// Every metric, in the Prometheus text format 0.0.4.
    fn render(&self) -> String;
    /// Healthy or not, and a JSON body that says why.
    fn health(&self) -> (bool, serde_json::Value);
}

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("[http] listen {listen:?} is not an address: {source}")]
    Address { listen: String, source: std::net::AddrParseError },
    #[error("cannot listen on {addr} for /metrics and /health: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// Bind `listen` and serve until `shutdown`. Binding happens before this
/// returns, so a taken port is a start-up error; port 0 takes a free one
/// (logged). Returns the task and the address bound.
pub async fn serve(
    listen: &str,
    exposition: Arc<dyn Exposition>,
    shutdown: CancellationToken,
) -> Result<(tokio::task::JoinHandle<()>, SocketAddr), ServeError> {
    let addr: SocketAddr =
        listen.parse().map_err(|source| ServeError::Address { listen: listen.to_string(), source })?;
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| ServeError::Bind { addr, source })?;
    let bound = listener.local_addr().map_err(|source| ServeError::Bind { addr, source })?;
    tracing::info!(addr = %bound, "serving /metrics and /health");
    let task = tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                _ = shutdown.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => { tracing::warn!(error = %e, "accept failed"); continue; }
                },
            };
            let exposition = exposition.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let exposition = exposition.clone();
                    async move { Ok::<_, std::convert::Infallible>(route(&req, &*exposition)) }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                tokio::select! {
                    _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service) => {}
                    _ = shutdown.cancelled() => {}
                }
            });
        }
    });
    Ok((task, bound))
}

/// [`serve`] as one of a service's helpers: nothing when `listen` is empty;
/// otherwise bound now (a taken port is a start-up error) and run in
/// `helpers` until `shutdown`. Returns the address bound.
pub async fn serve_in(
    listen: &str,
    exposition: Arc<dyn Exposition>,
    shutdown: CancellationToken,
    helpers: &mut tokio::task::JoinSet<anyhow::Result<()>>,
) -> Result<Option<SocketAddr>, ServeError> {
    if listen.is_empty() {
        return Ok(None);
    }
    let (task, addr) = serve(listen, exposition, shutdown).await?;
    helpers.spawn(async move { task.await.map_err(anyhow::Error::from) });
    Ok(Some(addr))
}

fn route(req: &Request<hyper::body::Incoming>, exposition: &dyn Exposition) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match req.uri().path() {
        "/metrics" => (StatusCode::OK, "text/plain; version=0.0.4", exposition.render()),
        "/health" => {
            let (ok, body) = exposition.health();
            let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            (status, "application/json", body.to_string())
        }
        _ => (StatusCode::NOT_FOUND, "text/plain", "try /metrics or /health\n".to_string()),
    };
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response")
}
