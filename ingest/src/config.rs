//! `gridcast ingest` configuration: one struct per component, every field
//! documented and defaulted, unknown keys rejected.
//!
//! Loaded by the edge runtime's one loader ([`gridcast_edge::config::load`]):
//! defaults, then a TOML file (`--config`), then environment variables of the
//! form `GRIDCAST_<SECTION>__<KEY>` (e.g. `GRIDCAST_MQTT__HOST=10.0.0.2`).

use std::path::{Path, PathBuf};

use gridcast_core::payload::DecoderConfig;
use gridcast_core::window::WindowConfig;
use gridcast_edge::config::{HttpConfig, MqttConfig, ServiceConfig};
use gridcast_edge::sinks::SinkConfig;
use serde::{Deserialize, Serialize};

/// Everything `gridcast ingest` needs. A file with only the keys that differ
/// from the defaults is a complete config.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
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
    /// `/metrics` and `/health`.
    pub http: HttpConfig,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            mqtt: MqttConfig::default(),
            decode: DecoderConfig::default(),
            window: WindowConfig::default(),
            pipeline: PipelineConfig::default(),
            spool: SpoolConfig::default(),
            sinks: Vec::new(),
            http: HttpConfig::on("127.0.0.1:9465"),
        }
    }
}

/// How readings move through the pipeline.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Most MQTT messages spooled (one disk sync) and acknowledged together.
    pub batch_max_messages: usize,
    /// Milliseconds to wait after a batch's first message for more before
    /// committing (0: commit at once). Fewer, larger commits write fewer bytes
    /// to the disk per reading (SD cards wear out); the broker's in-flight
    /// window (Mosquitto `max_inflight_messages`) must hold a linger's worth
    /// of messages, or throughput is capped at window / linger.
    pub batch_linger_ms: u64,
    /// Close a sensor's open windows when it has sent nothing for this many
    /// seconds (a meter that went quiet would otherwise hold them open).
    /// Counted only while connected to the broker, and keep it above three
    /// `[mqtt] keep_alive_secs`: a cut link is noticed only after about two.
    pub idle_close_secs: u64,
    /// InfluxDB measurement the windows are written to.
    pub measurement: String,
    /// Tag `site` on every window and counters line (the dashboards' site
    /// variable); empty writes no such tag.
    pub site: String,
    /// Seconds between the summary log lines.
    pub stats_interval_secs: u64,
    /// Measurement of ingest's own counters, written through the sinks
    /// (readings, rejected and late readings, spool depth: the ingest
    /// dashboard's health row).
    pub stats_measurement: String,
    /// Seconds between two writes of those counters; 0 writes none.
    pub stats_write_secs: u64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            batch_max_messages: 4096,
            batch_linger_ms: 0,
            idle_close_secs: 300,
            measurement: "meter_window".into(),
            site: String::new(),
            stats_interval_secs: 10,
            stats_measurement: "gridcast_ingest_stats".into(),
            stats_write_secs: 60,
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
    /// acknowledging MQTT messages (the broker keeps them) and says so in the
    /// log and in `/metrics`.
    pub max_bytes: u64,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig { dir: PathBuf::from("./data/spool"), max_bytes: 1 << 30 }
    }
}

/// Load a config: defaults, then the file (if any), then the environment.
pub fn load(path: Option<&Path>) -> anyhow::Result<IngestConfig> {
    gridcast_edge::config::load(path)
}

impl ServiceConfig for IngestConfig {
    fn validate(&self) -> anyhow::Result<()> {
        self.decode.validate().map_err(|e| anyhow::anyhow!("invalid [decode] section: {e}"))?;
        self.window.validate().map_err(|e| anyhow::anyhow!("invalid [window] section: {e}"))?;
        self.mqtt.validate()
    }
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
    fn the_example_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/gridcast/ingest.toml");
        figment::Jail::expect_with(|_| {
            let config = load(Some(&path)).unwrap();
            assert_eq!(config.http.listen, "127.0.0.1:9465");
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
