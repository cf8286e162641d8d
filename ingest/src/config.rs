//! `gridcast ingest` configuration: one struct per component, every field
//! documented and defaulted, unknown keys rejected.
//!
//! Loaded from a TOML file (`--config`), then overridden by environment
//! variables of the form `GRIDCAST_<SECTION>__<KEY>` (double underscore
//! between levels, e.g. `GRIDCAST_MQTT__HOST=10.0.0.2`). Only variables with a
//! `__` count as overrides, so unrelated `GRIDCAST_*` variables are left alone.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use gridcast_core::payload::DecoderConfig;
use gridcast_core::window::WindowConfig;
use serde::{Deserialize, Serialize};

use crate::sinks::SinkConfig;

/// Everything `gridcast ingest` needs. A file with only the keys that differ
/// from the defaults is a complete config.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Where readings come from.
    pub mqtt: MqttConfig,
    /// How payloads are decoded (raw type id, JSON field map).
    pub decode: DecoderConfig,
    /// Window width and allowed lateness.
    pub window: WindowConfig,
    /// How the pipeline batches work and names what it writes.
    pub pipeline: PipelineConfig,
    /// The local disk spool between windows and the databases.
    pub spool: SpoolConfig,
    /// Where closed windows are written. Empty means line-protocol files
    /// under `./data/lines` (the demo's store).
    pub sinks: Vec<SinkConfig>,
}

/// The MQTT source. The session is persistent (clean_session = false) and
/// acknowledged by hand, so the broker keeps what ingest has not durably
/// spooled: both are fixed, not options.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// Broker host name or address.
    pub host: String,
    /// Broker TCP port.
    pub port: u16,
    /// Fixed client id: the broker keeps this session's queue while we are away.
    pub client_id: String,
    /// Topic filters to subscribe to (at QoS 1), re-subscribed on every connect.
    pub topics: Vec<String>,
    /// Keep-alive interval in seconds.
    pub keep_alive_secs: u64,
    /// Optional user name.
    pub username: Option<String>,
    /// Optional password (prefer the GRIDCAST_MQTT__PASSWORD variable).
    pub password: Option<String>,
    /// First reconnect delay after an error, in milliseconds; doubles up to `reconnect_max_ms`.
    pub reconnect_min_ms: u64,
    /// Largest reconnect delay, in milliseconds.
    pub reconnect_max_ms: u64,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            host: "127.0.0.1".into(),
            port: 1883,
            client_id: "gridcast-ingest".into(),
            topics: vec!["data/realtime/feature/#".into(), "ten-second/#".into(), "one-minute/#".into()],
            keep_alive_secs: 30,
            username: None,
            password: None,
            reconnect_min_ms: 200,
            reconnect_max_ms: 30_000,
        }
    }
}

/// How readings move through the pipeline.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Most MQTT messages spooled (one disk sync) and acknowledged together.
    pub batch_max_messages: usize,
    /// Close a sensor's open windows when it has sent nothing for this many
    /// seconds (a meter that went quiet would otherwise hold them open).
    pub idle_close_secs: u64,
    /// InfluxDB measurement the windows are written to.
    pub measurement: String,
    /// Seconds between the summary log lines.
    pub stats_interval_secs: u64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            batch_max_messages: 4096,
            idle_close_secs: 300,
            measurement: "meter_window".into(),
            stats_interval_secs: 10,
        }
    }
}

/// The disk spool: acknowledged readings of open windows, and closed windows
/// not yet written to every sink.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// Folder of the spool database.
    pub dir: PathBuf,
    /// Most bytes of closed windows waiting for sinks. When full, ingest stops
    /// acknowledging MQTT messages (the broker keeps them) and says so in the log.
    pub max_bytes: u64,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig { dir: PathBuf::from("./data/spool"), max_bytes: 1 << 30 }
    }
}

/// Load a config: defaults, then the file (if any), then the environment.
pub fn load(path: Option<&Path>) -> anyhow::Result<IngestConfig> {
    let mut figment = Figment::from(Serialized::defaults(IngestConfig::default()));
    if let Some(path) = path {
        if !path.exists() {
            anyhow::bail!("config file {} does not exist", path.display());
        }
        figment = figment.merge(Toml::file(path));
    }
    figment = figment.merge(env_overrides());
    let config: IngestConfig = figment.extract().map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    config.validate()?;
    Ok(config)
}

impl IngestConfig {
    /// Checks serde cannot express: values that parse but cannot work.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.decode.validate().map_err(|e| anyhow::anyhow!("invalid [decode] section: {e}"))?;
        self.window.validate().map_err(|e| anyhow::anyhow!("invalid [window] section: {e}"))?;
        if self.mqtt.topics.is_empty() {
            anyhow::bail!("invalid [mqtt] section: topics is empty, so nothing would be read");
        }
        Ok(())
    }
}

/// `GRIDCAST_<SECTION>__<KEY>` variables, as nested keys.
fn env_overrides() -> Env {
    Env::prefixed("GRIDCAST_").filter(|key| key.as_str().contains("__")).split("__")
}

#[cfg(test)]
// figment's Jail closures return figment::Error, which is large; fine in tests.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "").unwrap();
        figment::Jail::expect_with(|_| {
            assert_eq!(load(Some(&path)).unwrap(), IngestConfig::default());
            Ok(())
        });
    }

    #[test]
    fn unknown_key_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[mqtt]\nhots = \"x\"\n").unwrap();
        let err = load(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("hots"), "{err}");
    }

    #[test]
    fn environment_overrides_the_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("c.toml", "[mqtt]\nport = 1999\nhost = \"a\"\n")?;
            jail.set_env("GRIDCAST_MQTT__PORT", "2883");
            jail.set_env("GRIDCAST_TEST_SOMETHING", "ignored");
            let config = load(Some(Path::new("c.toml"))).unwrap();
            assert_eq!(config.mqtt.port, 2883);
            assert_eq!(config.mqtt.host, "a");
            Ok(())
        });
    }

    #[test]
    fn sinks_are_read_from_a_list() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "c.toml",
                r#"
                [[sinks]]
                kind = "influxdb_v1"
                url = "http://127.0.0.1:8086"
                database = "gridcast"

                [[sinks]]
                kind = "influxdb_v2"
                url = "http://127.0.0.1:8428"
                org = "o"
                bucket = "b"
                "#,
            )?;
            let config = load(Some(Path::new("c.toml"))).unwrap();
            assert_eq!(config.sinks.len(), 2);
            Ok(())
        });
    }
}
