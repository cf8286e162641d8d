//! `gridcast predict` configuration: one struct per component, every field
//! documented and defaulted, unknown keys rejected.
//!
//! Loaded like ingest's, by the edge runtime's one loader: defaults, then a
//! TOML file (`--config`), then `GRIDCAST_<SECTION>__<KEY>` environment
//! variables (e.g. `GRIDCAST_UPLOAD__URL=s3://bucket`). The MQTT, HTTP and
//! sink sections are the edge runtime's: the same broker settings and
//! InfluxDB writers as ingest.

use std::path::{Path, PathBuf};

use gridcast_core::Source;
use gridcast_core::payload::DecoderConfig;
use gridcast_edge::config::{HttpConfig, MqttConfig, ServiceConfig, SharedDispatch};
use gridcast_edge::sinks::SinkConfig;
use serde::{Deserialize, Serialize};

use crate::judge::Rule;
use crate::triplet::Compression;

/// Everything `gridcast predict` needs. A file with only the keys that
/// differ from the defaults is a complete config.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PredictConfig {
    /// Where readings come from. Its own client id (default
    /// `gridcast-predict`), so the broker keeps a queue apart from ingest's.
    pub mqtt: MqttConfig,
    /// How payloads are decoded (as for ingest).
    pub decode: DecoderConfig,
    /// The prediction interval and the model.
    pub predict: PredictSection,
    /// When a prediction counts as a misprediction; absent means
    /// [`Rule::default`] (adaptive, k = 3 over the last 120 errors, 30 warm-up).
    /// Optional so a file's `[judge]` replaces the default rule instead of
    /// being merged into it (the rules have different keys).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub judge: Option<Rule>,
    /// The local disk spool (windows journal, prediction lines, triplets,
    /// sensor states: one database, one transaction per batch).
    pub spool: SpoolConfig,
    /// Where triplets go: blob storage.
    pub upload: UploadConfig,
    /// Where predictions, actuals and errors are written (InfluxDB). Empty
    /// means line-protocol files under `./data/predictions`.
    pub sinks: Vec<SinkConfig>,
    /// `/metrics` and `/health`.
    pub http: HttpConfig,
}

impl Default for PredictConfig {
    fn default() -> Self {
        PredictConfig {
            mqtt: MqttConfig { client_id: "gridcast-predict".into(), ..MqttConfig::default() },
            decode: DecoderConfig::default(),
            predict: PredictSection::default(),
            judge: None,
            spool: SpoolConfig::default(),
            upload: UploadConfig::default(),
            sinks: Vec::new(),
            http: HttpConfig::on("127.0.0.1:9464"),
        }
    }
}

/// The prediction loop.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PredictSection {
    /// Interval length in seconds (10 or 60); must match the model's feature
    /// spec (or, for an imported model, its feature map's `interval_secs`).
    pub interval_secs: u32,
    /// How far behind the newest reading a reading may arrive and still count.
    pub lateness_secs: u32,
    /// Which readings are averaged: `raw` (12 Hz), `ten_second` or `one_minute`.
    pub source: Source,
    /// The model: a file path, or an object-store URL (`s3://bucket/models/m.gcm`).
    /// A gridcast model file; an XGBoost model is served once imported
    /// (`gridcast-model import-xgboost`).
    pub model: String,
    /// Seconds between checks of the model source for a new model.
    pub model_poll_secs: u64,
    /// Public keys (64 hex digits each, as `gridcast model keygen` writes
    /// `signing.pub`) whose signature makes a model servable. With any key
    /// here or in `trusted_keys_file`, an unsigned or otherwise signed model
    /// is refused (the shipped default model excepted); with none, models
    /// are not verified.
    pub trusted_keys: Vec<gridcast_core::model::signature::PublicKey>,
    /// A file of such public keys, one a line (`#` comments), read at start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trusted_keys_file: Option<PathBuf>,
    /// InfluxDB measurement of predictions, actuals and errors.
    pub measurement: String,
    /// Tag `site` on every prediction line (the dashboards' site variable);
    /// empty writes no such tag.
    pub site: String,
    /// Close a sensor's open interval when it has sent nothing for this long.
    pub idle_close_secs: u64,
    /// Most MQTT messages processed (and acknowledged) together.
    pub batch_max_messages: usize,
    /// Milliseconds to wait after a batch's first message for more before
    /// committing (0: at once); as ingest's `[pipeline] batch_linger_ms`.
    pub batch_linger_ms: u64,
    /// Seconds between the summary log lines.
    pub stats_interval_secs: u64,
}

impl Default for PredictSection {
    fn default() -> Self {
        PredictSection {
            interval_secs: 60,
            lateness_secs: 5,
            source: Source::Raw,
            model: "models/default.gcm".into(),
            model_poll_secs: 5,
            trusted_keys: Vec::new(),
            trusted_keys_file: None,
            measurement: "gridcast_prediction".into(),
            site: String::new(),
            idle_close_secs: 300,
            batch_max_messages: 4096,
            batch_linger_ms: 0,
            stats_interval_secs: 10,
        }
    }
}

/// The local spool.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// Folder of the spool (`stream/spool.redb`: readings journal,
    /// prediction lines, triplets and per-sensor state).
    pub dir: PathBuf,
    /// Most bytes of prediction lines and triplets waiting for the sinks and
    /// the blob store. At the bound, predict stops acknowledging MQTT
    /// messages (the broker keeps them) until they are delivered.
    pub max_bytes: u64,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig { dir: PathBuf::from("./data/predict-spool"), max_bytes: 256 << 20 }
    }
}

/// Blob storage for triplets.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UploadConfig {
    /// `s3://bucket`, `az://container`, `gs://bucket` or `file://path`.
    /// Credentials and endpoints come from the environment (AWS_*, AZURE_*,
    /// GOOGLE_*), as object_store's `from_env` builders read them.
    pub url: String,
    /// Key prefix inside the bucket.
    pub prefix: String,
    /// This device's name in the keys (`device=<name>`).
    pub device: String,
    /// Most triplets per object.
    pub batch_max: usize,
    /// Seconds between uploads when fewer than `batch_max` are waiting.
    pub batch_interval_secs: u64,
    /// `gzip` or `zstd`.
    pub compression: Compression,
    /// First retry delay after a failed upload, ms (doubles up to `retry_max_ms`).
    pub retry_min_ms: u64,
    /// Largest retry delay, ms.
    pub retry_max_ms: u64,
    /// Store options on top of the environment, by object_store's config
    /// key names, e.g. `aws_endpoint = "http://127.0.0.1:9000"`,
    /// `aws_allow_http = "true"`, `azure_storage_use_emulator = "true"`.
    pub options: gridcast_edge::secret::StoreOptions,
}

impl Default for UploadConfig {
    fn default() -> Self {
        UploadConfig {
            url: "file://./data/triplets".into(),
            prefix: "triplets".into(),
            device: "edge".into(),
            batch_max: 500,
            batch_interval_secs: 30,
            compression: Compression::Gzip,
            retry_min_ms: 500,
            retry_max_ms: 30_000,
            options: Default::default(),
        }
    }
}

/// Load a config: defaults, then the file (if any), then the environment.
pub fn load(path: Option<&Path>) -> anyhow::Result<PredictConfig> {
    gridcast_edge::config::load(path)
}

impl PredictConfig {
    /// The misprediction rule in force.
    pub fn rule(&self) -> Rule {
        self.judge.clone().unwrap_or_default()
    }
}

impl ServiceConfig for PredictConfig {
    fn validate(&self) -> anyhow::Result<()> {
        self.decode.validate().map_err(|e| anyhow::anyhow!("invalid [decode] section: {e}"))?;
        self.rule().validate().map_err(|e| anyhow::anyhow!("invalid [judge] section: {e}"))?;
        self.mqtt.validate()?;
        if self.mqtt.is_shared() && self.mqtt.shared_dispatch != SharedDispatch::ByTopic {
            anyhow::bail!(
                "invalid [mqtt] section: predict reads a shared subscription ($share/...) with shared_dispatch = \"round_robin\": \
                 the broker would split each meter's minute across the replicas and every replica would predict from part of it. \
                 Run one predictor per broker without $share, or set shared_dispatch = \"by_topic\" on a broker that sends each \
                 topic to one member (EMQX: broker.shared_subscription_strategy = hash_topic; each meter on its own topic)"
            );
        }
        if self.predict.interval_secs == 0 {
            anyhow::bail!("invalid [predict] section: interval_secs must be > 0 (10 or 60)");
        }
        if self.upload.device.is_empty() || self.upload.device.contains('/') {
            anyhow::bail!("invalid [upload] section: device must be a non-empty name without '/'");
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn defaults_load_and_use_their_own_client_id() {
        figment::Jail::expect_with(|_| {
            let c = load(None).unwrap();
            assert_eq!(c.mqtt.client_id, "gridcast-predict");
            assert_eq!(c.http.listen, "127.0.0.1:9464");
            Ok(())
        });
    }

    #[test]
    fn the_example_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/gridcast/predict.toml");
        figment::Jail::expect_with(|_| {
            let config = load(Some(&path)).unwrap();
            assert_eq!(config.spool.max_bytes, 256 << 20);
            Ok(())
        });
    }

    #[test]
    fn judge_and_upload_sections_parse_and_unknown_keys_fail() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "p.toml",
                "[judge]\nrule = \"absolute\"\nthreshold_w = 25.0\n[upload]\nurl = \"s3://b\"\ncompression = \"zstd\"\n",
            )?;
            let c = load(Some(Path::new("p.toml"))).unwrap();
            assert_eq!(c.rule(), Rule::Absolute { threshold_w: 25.0 });
            assert_eq!(c.upload.compression, Compression::Zstd);
            jail.create_file("s.toml", "[predict]\nsource = \"hourly\"\n")?;
            let err = load(Some(Path::new("s.toml"))).unwrap_err().to_string();
            assert!(err.contains("hourly") && err.contains("ten_second"), "{err}");
            jail.create_file("q.toml", "[upload]\nbucket = \"x\"\n")?;
            let err = load(Some(Path::new("q.toml"))).unwrap_err().to_string();
            assert!(err.contains("bucket"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn a_shared_subscription_is_refused_unless_the_broker_dispatches_by_topic() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("r.toml", "[mqtt]\ntopics = [\"$share/p/data/realtime/feature/#\"]\n")?;
            let err = load(Some(Path::new("r.toml"))).unwrap_err().to_string();
            assert!(err.contains("split each meter's minute") && err.contains("by_topic"), "{err}");
            jail.create_file(
                "t.toml",
                "[mqtt]\ntopics = [\"$share/p/data/realtime/feature/#\"]\nshared_dispatch = \"by_topic\"\n",
            )?;
            assert!(load(Some(Path::new("t.toml"))).unwrap().mqtt.is_shared());
            Ok(())
        });
    }

    #[test]
    fn trusted_keys_parse_from_the_config_and_a_bad_one_is_named() {
        use gridcast_core::model::signature::SigningKey;
        let key = SigningKey::from_seed(&[5; 32]).public_key();
        figment::Jail::expect_with(|jail| {
            jail.create_file("keys.pub", &format!("# the trainer's key\n{key}\n"))?;
            jail.create_file(
                "k.toml",
                &format!("[predict]\ntrusted_keys = [\"{key}\"]\ntrusted_keys_file = \"keys.pub\"\n"),
            )?;
            let c = load(Some(Path::new("k.toml"))).unwrap();
            assert_eq!(c.predict.trusted_keys, vec![key]);
            let trust = crate::trust::Trust::from_config(&c.predict).unwrap();
            assert_eq!(trust.keys(), &[key, key]);
            jail.create_file("b.toml", "[predict]\ntrusted_keys = [\"c0ffee\"]\n")?;
            let err = format!("{:#}", load(Some(Path::new("b.toml"))).unwrap_err());
            assert!(err.contains("public key") && err.contains("64 hex digits"), "{err}");
            jail.create_file("empty.pub", "# nobody yet\n")?;
            jail.create_file("e.toml", "[predict]\ntrusted_keys_file = \"empty.pub\"\n")?;
            let c = load(Some(Path::new("e.toml"))).unwrap();
            let err = crate::trust::Trust::from_config(&c.predict).unwrap_err().to_string();
            assert!(err.contains("holds no key"), "{err}");
            Ok(())
        });
    }
}
