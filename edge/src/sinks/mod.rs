//! Sinks: where line protocol goes once it is safely in the spool (ingest's
//! closed windows, predict's predictions).
//!
//! Every sink receives the same line protocol (millisecond precision), so one
//! spooled record serves all of them; each sink keeps its own cursor in the
//! spool and is retried on its own, so a slow InfluxDB does not hold back a
//! healthy VictoriaMetrics.
//!
//! - [`influx`]: HTTP writes to InfluxDB v1 `/write` and v2 `/api/v2/write`.
//! - [`file`]: line-protocol files on disk (the demo's store, no server needed).
//! - [`task`]: the loop that moves spooled records to one sink, with backoff.

pub mod file;
pub mod influx;
pub mod task;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One place closed windows are written to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SinkConfig {
    /// InfluxDB 1.x `/write` (what `apt install influxdb` gives on a Pi; 2.4+
    /// and 3.x accept it too).
    InfluxdbV1 {
        /// Base URL, e.g. `http://127.0.0.1:8086`.
        url: String,
        /// Database name.
        database: String,
        /// Retention policy; the database default when absent.
        #[serde(default)]
        retention_policy: Option<String>,
        /// User name, when authentication is on.
        #[serde(default)]
        username: Option<String>,
        /// Password, when authentication is on.
        #[serde(default)]
        password: Option<String>,
        #[serde(default)]
        http: HttpOptions,
    },
    /// InfluxDB 2.x/3.x/Cloud `/api/v2/write` (VictoriaMetrics accepts it too).
    InfluxdbV2 {
        /// Base URL, e.g. `http://127.0.0.1:8086`.
        url: String,
        /// Organisation name.
        org: String,
        /// Bucket name.
        bucket: String,
        /// API token (prefer an environment override).
        #[serde(default)]
        token: Option<String>,
        #[serde(default)]
        http: HttpOptions,
    },
    /// Line-protocol files, one per UTC day, under `dir`.
    File {
        /// Folder of the files.
        dir: PathBuf,
    },
}

impl SinkConfig {
    /// `configured`, or a file sink writing to `dir` when none is configured.
    pub fn or_file(configured: &[SinkConfig], dir: &std::path::Path) -> Vec<SinkConfig> {
        if configured.is_empty() { vec![SinkConfig::File { dir: dir.to_path_buf() }] } else { configured.to_vec() }
    }

    /// A stable name for the sink's cursor in the spool and for logs: the
    /// kind and its target, so reordering the list keeps each cursor.
    pub fn name(&self) -> String {
        match self {
            SinkConfig::InfluxdbV1 { url, database, .. } => format!("influxdb_v1 {url} db={database}"),
            SinkConfig::InfluxdbV2 { url, org, bucket, .. } => {
                format!("influxdb_v2 {url} org={org} bucket={bucket}")
            }
            SinkConfig::File { dir } => format!("file {}", dir.display()),
        }
    }
}

/// HTTP behaviour shared by the InfluxDB sinks.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpOptions {
    /// Gzip request bodies (both InfluxDB and VictoriaMetrics accept it).
    pub gzip: bool,
    /// Whole-request timeout in seconds.
    pub timeout_secs: u64,
    /// First retry delay in milliseconds; doubles up to `retry_max_ms`.
    pub retry_min_ms: u64,
    /// Largest retry delay in milliseconds.
    pub retry_max_ms: u64,
    /// Most spooled records sent in one request.
    pub batch_max_records: usize,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions { gzip: true, timeout_secs: 10, retry_min_ms: 200, retry_max_ms: 30_000, batch_max_records: 500 }
    }
}
