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

use crate::config::resolve_secret;
use crate::secret::Secret;

/// One place closed windows are written to.
///
/// A secret can be given as a file (`password_file`, `token_file`): read
/// when the config is deserialized, as `[mqtt] password_file` is (see
/// [`crate::config`]); serializing leaves out a secret read from a file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields, remote = "Self")]
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
        password: Option<Secret>,
        /// A file holding the password (trailing newline trimmed), read at
        /// load time; not together with `password`.
        #[serde(default)]
        password_file: Option<PathBuf>,
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
        /// API token (prefer `token_file`).
        #[serde(default)]
        token: Option<Secret>,
        /// A file holding the token (trailing newline trimmed), read at load
        /// time; not together with `token`. E.g. a systemd credential:
        /// `/run/credentials/gridcast-ingest.service/influxdb-token`.
        #[serde(default)]
        token_file: Option<PathBuf>,
        #[serde(default)]
        http: HttpOptions,
    },
    /// Line-protocol files, one per UTC day, under `dir`.
    File {
        /// Folder of the files.
        dir: PathBuf,
    },
}

impl<'de> Deserialize<'de> for SinkConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut sink = SinkConfig::deserialize(deserializer)?;
        // Errors name the sink (kind and target) and the key.
        let name = sink.name();
        let resolved = match &mut sink {
            SinkConfig::InfluxdbV1 { password, password_file, .. } => {
                resolve_secret(&format!("sink {name}: password"), password, password_file.as_deref())
            }
            SinkConfig::InfluxdbV2 { token, token_file, .. } => {
                resolve_secret(&format!("sink {name}: token"), token, token_file.as_deref())
            }
            SinkConfig::File { .. } => Ok(()),
        };
        resolved.map_err(serde::de::Error::custom)?;
        Ok(sink)
    }
}

impl Serialize for SinkConfig {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut sink = self.clone();
        match &mut sink {
            SinkConfig::InfluxdbV1 { password, password_file: Some(_), .. } => *password = None,
            SinkConfig::InfluxdbV2 { token, token_file: Some(_), .. } => *token = None,
            _ => {}
        }
        SinkConfig::serialize(&sink, serializer)
    }
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
