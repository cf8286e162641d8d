//! Writes line protocol to InfluxDB over HTTP: the v1 `/write` endpoint and
//! the v2 `/api/v2/write` endpoint, with gzip and a timeout. One call is one
//! attempt; [`super::task`] owns the retries.
//!
//! The `influxdb2` crate was not taken (stale, a second HTTP/TLS stack, no
//! retries): this is reqwest 0.13, the same one object_store uses.

use std::io::Write;
use std::time::Duration;

use flate2::Compression;
use flate2::write::GzEncoder;
use reqwest::StatusCode;

use super::{HttpOptions, SinkConfig};
use crate::secret::Secret;

/// Why a write failed, and what to do about it ([`classify`]).
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The server was unreachable, timed out, or answered 5xx/429/408: retry.
    #[error("{0}")]
    Retryable(String),
    /// The server refused this batch (400, 413, 422, ...): retrying the same
    /// bytes cannot help; the batch is set aside and the sink goes on.
    #[error("server rejected the write with {status}: {body}")]
    Rejected { status: u16, body: String },
    /// The sink is misconfigured: a bad URL, or the server answered 401,
    /// 403 or 404 (wrong credentials, database, org or bucket). No batch
    /// can succeed: the sink stops loudly and its data stays spooled.
    #[error("{0}")]
    Config(String),
}

/// The retry classifier, as vector's `sinks/util/retries.rs`: what an HTTP
/// status means for the batch that got it.
pub fn classify(status: StatusCode, url: &str, body: String) -> WriteError {
    match status.as_u16() {
        401 | 403 => WriteError::Config(format!(
            "{url} answered {status}: {body} (check the sink's credentials: username/password or token)"
        )),
        404 => WriteError::Config(format!(
            "{url} answered {status}: {body} (check the sink's url and its database, or org and bucket)"
        )),
        408 | 429 => WriteError::Retryable(format!("POST {url} answered {status}: {body}")),
        _ if status.is_server_error() => WriteError::Retryable(format!("POST {url} answered {status}: {body}")),
        code => WriteError::Rejected { status: code, body },
    }
}

/// An HTTP line-protocol writer for one InfluxDB-compatible endpoint.
#[derive(Debug, Clone)]
pub struct InfluxWriter {
    client: reqwest::Client,
    write_url: reqwest::Url,
    authorization: Option<Secret>,
    gzip: bool,
}

/// What differs between InfluxDB's two write APIs: the path, the query and
/// where the credentials go. One [`InfluxWriter`] sends to either.
pub trait WriteApi {
    /// The base URL as configured, e.g. `http://127.0.0.1:8086`.
    fn base_url(&self) -> &str;
    /// The write endpoint's path under the base URL.
    fn path(&self) -> &'static str;
    /// The query: target and precision. Never credentials: URLs end up in
    /// error messages and logs.
    fn query(&self) -> Vec<(&'static str, String)>;
    /// The `Authorization` header, if the API takes one.
    fn authorization(&self) -> Option<String> {
        None
    }
}

/// InfluxDB 1.x `/write` (2.x and 3.x serve it too): database and retention
/// policy in the query, user and password as HTTP Basic authentication
/// (which 1.x reads as it reads `u` and `p`).
pub struct V1<'a> {
    pub url: &'a str,
    pub database: &'a str,
    pub retention_policy: Option<&'a str>,
    pub username: Option<&'a str>,
    pub password: Option<&'a str>,
}

impl WriteApi for V1<'_> {
    fn base_url(&self) -> &str {
        self.url
    }

    fn path(&self) -> &'static str {
        "write"
    }

    fn query(&self) -> Vec<(&'static str, String)> {
        let mut query = vec![("db", self.database.to_string()), ("precision", "ms".to_string())];
        if let Some(rp) = self.retention_policy {
            query.push(("rp", rp.to_string()));
        }
        query
    }

    fn authorization(&self) -> Option<String> {
        use base64::Engine;
        let username = self.username?;
        let credentials = format!("{username}:{}", self.password.unwrap_or_default());
        Some(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(credentials)))
    }
}

/// InfluxDB 2.x/3.x/Cloud `/api/v2/write` (VictoriaMetrics too): org and
/// bucket in the query, the token in the `Authorization` header.
pub struct V2<'a> {
    pub url: &'a str,
    pub org: &'a str,
    pub bucket: &'a str,
    pub token: Option<&'a str>,
}

impl WriteApi for V2<'_> {
    fn base_url(&self) -> &str {
        self.url
    }

    fn path(&self) -> &'static str {
        "api/v2/write"
    }

    fn query(&self) -> Vec<(&'static str, String)> {
        vec![("org", self.org.to_string()), ("bucket", self.bucket.to_string()), ("precision", "ms".to_string())]
    }

    fn authorization(&self) -> Option<String> {
        self.token.map(|t| format!("Token {t}"))
    }
}

impl InfluxWriter {
    /// A writer for an `influxdb_v1` or `influxdb_v2` sink; `None` for other kinds.
    pub fn from_config(config: &SinkConfig) -> Result<Option<InfluxWriter>, WriteError> {
        let writer = match config {
            SinkConfig::InfluxdbV1 { url, database, retention_policy, username, password, http, .. } => {
                let api = V1 {
                    url,
                    database,
                    retention_policy: retention_policy.as_deref(),
                    username: username.as_deref(),
                    password: password.as_ref().map(Secret::expose),
                };
                InfluxWriter::new(&api, http)?
            }
            SinkConfig::InfluxdbV2 { url, org, bucket, token, http, .. } => {
                InfluxWriter::new(&V2 { url, org, bucket, token: token.as_ref().map(Secret::expose) }, http)?
            }
            SinkConfig::File { .. } => return Ok(None),
        };
        Ok(Some(writer))
    }

    /// A writer for one API's endpoint.
    pub fn new(api: &dyn WriteApi, http: &HttpOptions) -> Result<InfluxWriter, WriteError> {
        let base = api.base_url();
        let base = if base.ends_with('/') { base.to_string() } else { format!("{base}/") };
        let mut write_url = reqwest::Url::parse(&base)
            .and_then(|u| u.join(api.path()))
            .map_err(|e| WriteError::Config(format!("sink URL {base:?} is not valid: {e}")))?;
        write_url.query_pairs_mut().extend_pairs(api.query());
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(http.timeout_secs))
            .connect_timeout(Duration::from_secs(http.timeout_secs.min(5)))
            .build()
            .map_err(|e| WriteError::Config(format!("cannot build HTTP client: {e}")))?;
        Ok(InfluxWriter { client, write_url, authorization: api.authorization().map(Secret::from), gzip: http.gzip })
    }

    /// POST one body of line protocol. `Ok` means the server stored it
    /// (204, or 200 from some compatible servers).
    pub async fn write(&self, lines: &[u8]) -> Result<(), WriteError> {
        let mut request = self.client.post(self.write_url.clone());
        if let Some(auth) = &self.authorization {
            request = request.header(reqwest::header::AUTHORIZATION, auth.expose());
        }
        request = request.header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8");
        let request = if self.gzip {
            request.header(reqwest::header::CONTENT_ENCODING, "gzip").body(gzip(lines))
        } else {
            request.body(lines.to_vec())
        };
        let response = request
            .send()
            .await
            .map_err(|e| WriteError::Retryable(format!("POST {} failed: {e}", self.redacted_url())))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default();
        let body: String = body.trim().chars().take(500).collect();
        Err(classify(status, &self.redacted_url(), body))
    }

    /// The start-up check: an empty write. InfluxDB 1.x answers 404 for a
    /// missing database and 401 for bad credentials, 2.x/3.x 404 for a
    /// missing org or bucket and 401 for a bad token; VictoriaMetrics 204.
    /// Nothing is stored.
    pub async fn health_check(&self) -> Result<(), WriteError> {
        self.write(b"").await
    }

    /// The write URL without credentials, for logs.
    pub fn redacted_url(&self) -> String {
        let mut url = self.write_url.clone();
        let pairs: Vec<(String, String)> =
            url.query_pairs().filter(|(k, _)| k != "p").map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
        url.to_string()
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(data.len() / 4 + 64), Compression::fast());
    // Writing into a Vec cannot fail.
    encoder.write_all(data).expect("gzip into memory");
    encoder.finish().expect("gzip into memory")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v1(url: &str) -> SinkConfig {
        SinkConfig::InfluxdbV1 {
            url: url.into(),
            database: "gridcast".into(),
            retention_policy: None,
            username: Some("u".into()),
            password: Some("secret".into()),
            password_file: None,
            http: HttpOptions::default(),
        }
    }

    #[test]
    fn v1_url_has_database_and_precision_and_the_credentials_go_in_a_header() {
        let w = InfluxWriter::from_config(&v1("http://127.0.0.1:8086")).unwrap().unwrap();
        assert_eq!(w.write_url.as_str(), "http://127.0.0.1:8086/write?db=gridcast&precision=ms");
        // base64("u:secret")
        assert_eq!(w.authorization.as_ref().map(Secret::expose), Some("Basic dTpzZWNyZXQ="));
    }

    #[test]
    fn v2_url_keeps_a_base_path() {
        let config = SinkConfig::InfluxdbV2 {
            url: "http://h:8428/insert".into(),
            org: "o".into(),
            bucket: "b".into(),
            token: Some("t".into()),
            token_file: None,
            http: HttpOptions::default(),
        };
        let w = InfluxWriter::from_config(&config).unwrap().unwrap();
        assert_eq!(w.write_url.as_str(), "http://h:8428/insert/api/v2/write?org=o&bucket=b&precision=ms");
        assert_eq!(w.authorization.as_ref().map(Secret::expose), Some("Token t"));
    }

    #[test]
    fn statuses_are_classified_as_retry_set_aside_or_stop() {
        let c = |code: u16| classify(StatusCode::from_u16(code).unwrap(), "u", "b".into());
        for code in [500, 502, 503, 429, 408] {
            assert!(matches!(c(code), WriteError::Retryable(_)), "{code}");
        }
        for code in [401, 403, 404] {
            assert!(matches!(c(code), WriteError::Config(_)), "{code}");
        }
        for code in [400, 413, 422] {
            assert!(matches!(c(code), WriteError::Rejected { .. }), "{code}");
        }
        assert!(c(404).to_string().contains("database"), "{}", c(404));
    }

    #[test]
    fn bad_url_is_a_config_error() {
        assert!(matches!(InfluxWriter::from_config(&v1("not a url")), Err(WriteError::Config(_))));
    }
}
