//! `gridcast retrain`'s configuration, loaded like the edge services' (the
//! edge runtime's one loader: defaults, TOML file, `GRIDCAST_<SECTION>__<KEY>`
//! environment overrides, unknown keys named).

use std::path::PathBuf;

use gridcast_core::Source;
use gridcast_core::features::{FeatureSpec, TargetKind};
use gridcast_core::model::Model;
use gridcast_edge::config::{ServiceConfig, resolve_secret};
use gridcast_edge::secret::Secret;
use serde::{Deserialize, Serialize};

use crate::gbdt::TrainParams;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetrainConfig {
    /// Where the history comes from.
    pub history: HistoryConfig,
    /// The model the edge serves now.
    pub champion: ChampionConfig,
    /// The most recent part of the history the challenger never trains on.
    pub holdout: HoldoutConfig,
    /// When the challenger ships.
    pub gate: GateConfig,
    /// How the challenger is trained.
    pub train: TrainConfig,
    /// Where a shipped model goes.
    pub publish: PublishConfig,
    /// The mispredicted triplets the predictor uploaded.
    pub triplets: TripletsConfig,
    /// The watcher's memory (`--every`, `--when-mispredictions`).
    pub trigger: TriggerConfig,
    /// A published model pushed as a predictor image too (unset: not pushed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ship: Option<ShipConfig>,
}

/// `[ship]`: after a publish, the model as one layer on the predictor base
/// image, pushed as `gridcast ship model` pushes it (same credentials:
/// `GRIDCAST_REGISTRY_USERNAME`/`PASSWORD`, else Docker's config.json).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ShipConfig {
    /// The predictor base image, `REGISTRY/REPOSITORY:TAG` (`ship base` pushed it).
    pub base: String,
    /// `REGISTRY/REPOSITORY[:TAG]` to push, e.g. `...:stable`, the tag the
    /// edge agent follows; without a tag, the model version.
    pub image: String,
    /// Plain HTTP to a registry that is not on this machine (not with `engine`).
    #[serde(default)]
    pub insecure: bool,
    /// Through a Docker engine instead of daemonless.
    #[serde(default)]
    pub engine: bool,
    /// The engine's socket, `unix:///PATH` (default: DOCKER_HOST, else
    /// `/var/run/docker.sock`); only with `engine`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_host: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TriggerConfig {
    /// Where the watcher keeps what it counted across restarts (a lock file
    /// beside it keeps a second watcher from starting).
    pub state: PathBuf,
    /// Seconds between two looks at the bucket for new triplets.
    pub poll_secs: u64,
}

impl Default for TriggerConfig {
    fn default() -> Self {
        TriggerConfig { state: PathBuf::from("./data/retrain-state.json"), poll_secs: 60 }
    }
}

/// One sensor's history: InfluxDB, ingest's line-protocol files, or a meter CSV.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HistoryConfig {
    /// A meter CSV (`timestamp`, `p_l1`[, `p_l2`, `p_l3`] in W).
    pub csv: Option<PathBuf>,
    /// A folder of line-protocol files as ingest's `file` sink writes them
    /// (`gridcast-YYYY-MM-DD.lp`, read in name order).
    pub lines_dir: Option<PathBuf>,
    /// The windows ingest wrote to InfluxDB, read with InfluxQL over `/query`.
    pub influx: Option<InfluxHistoryConfig>,
    /// The sensor whose windows to learn from (the `sensor` tag); needed
    /// with `lines_dir` and `influx`.
    pub sensor: Option<String>,
    /// The measurement ingest writes windows to.
    pub measurement: String,
    /// Which windows: `raw` (12 Hz readings averaged), `ten_second`, `one_minute`.
    pub source: Source,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            csv: None,
            lines_dir: None,
            influx: None,
            sensor: None,
            measurement: "meter_window".into(),
            source: Source::Raw,
        }
    }
}

/// InfluxDB as history (1.x `/query`; 2.x and 3.x serve it too).
///
/// Like the edge's secrets, `password_file` and `token_file` name a file
/// read when the config loads (derived code wrapped by the impls below, as
/// `[mqtt]` does): a Kubernetes Secret mounted as files, a systemd credential.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default, remote = "Self")]
pub struct InfluxHistoryConfig {
    /// Base URL, e.g. `http://127.0.0.1:8086`.
    pub url: String,
    pub database: String,
    /// Retention policy (empty: the database's default).
    pub retention_policy: String,
    /// 1.x authentication (`u`/`p`).
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// A file holding the password (trailing newline trimmed); not together
    /// with `password`.
    pub password_file: Option<std::path::PathBuf>,
    /// 2.x/3.x token (`Authorization: Token ...`).
    pub token: Option<Secret>,
    /// A file holding the token; not together with `token`.
    pub token_file: Option<std::path::PathBuf>,
    /// Points per chunk of the chunked response.
    pub chunk_size: usize,
    /// Only the last `days` of history (0: all of it).
    pub days: f64,
}

impl<'de> Deserialize<'de> for InfluxHistoryConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut config = InfluxHistoryConfig::deserialize(deserializer)?;
        let (password_file, token_file) = (config.password_file.clone(), config.token_file.clone());
        resolve_secret("[history.influx] password", &mut config.password, password_file.as_deref())
            .map_err(serde::de::Error::custom)?;
        resolve_secret("[history.influx] token", &mut config.token, token_file.as_deref())
            .map_err(serde::de::Error::custom)?;
        Ok(config)
    }
}

impl Serialize for InfluxHistoryConfig {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // A secret read from a file is shown as its file, so the output loads again.
        let mut shown = self.clone();
        if shown.password_file.is_some() {
            shown.password = None;
        }
        if shown.token_file.is_some() {
            shown.token = None;
        }
        InfluxHistoryConfig::serialize(&shown, serializer)
    }
}

impl Default for InfluxHistoryConfig {
    fn default() -> Self {
        InfluxHistoryConfig {
            url: "http://127.0.0.1:8086".into(),
            database: "gridcast".into(),
            retention_policy: String::new(),
            username: None,
            password: None,
            password_file: None,
            token: None,
            token_file: None,
            chunk_size: 10_000,
            days: 0.0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ChampionConfig {
    /// The champion model: what the edge's `[predict] model` reads, a path
    /// or a URL (`s3://`, `az://`, `gs://`, `file://`).
    pub model: String,
}

impl Default for ChampionConfig {
    fn default() -> Self {
        ChampionConfig { model: "models/default.gcm".into() }
    }
}

/// The predictor's uploads: `{store}/{prefix}/device=.../date=.../*.ndjson.gz|zst`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TripletsConfig {
    /// The store the predictor's `[upload] url` names (unset: no triplets).
    pub store: Option<String>,
    /// The predictor's `[upload] prefix`.
    pub prefix: String,
    /// Only this device's uploads (`device=<name>`; empty: every device).
    pub device: String,
    /// Training weight of a row the champion mispredicted (1: no extra weight).
    pub weight: f64,
    /// object_store config keys applied over the environment.
    pub options: gridcast_edge::secret::StoreOptions,
}

impl Default for TripletsConfig {
    fn default() -> Self {
        TripletsConfig {
            store: None,
            prefix: "triplets".into(),
            device: String::new(),
            weight: 3.0,
            options: Default::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HoldoutConfig {
    /// Days at the end of the history held out of training and scored on.
    pub days: f64,
}

impl Default for HoldoutConfig {
    fn default() -> Self {
        HoldoutConfig { days: 3.0 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GateConfig {
    /// The challenger ships only if its holdout MAE is below the champion's
    /// by this fraction (0.02: 2 % better); a tie keeps the champion.
    pub margin: f64,
}

impl Default for GateConfig {
    fn default() -> Self {
        GateConfig { margin: 0.02 }
    }
}

/// Training knobs (as `gridcast train`'s flags).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Interval for a champion without a feature spec (an imported model);
    /// otherwise the champion's own interval is used, so the edge can swap
    /// the challenger in.
    pub interval_secs: Option<u32>,
    pub trees: usize,
    pub depth: usize,
    pub learning_rate: f64,
    pub min_child_weight: f64,
    pub early_stopping: usize,
    /// Training threads (0 = all cores).
    pub threads: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        let p = TrainParams::default();
        TrainConfig {
            interval_secs: None,
            trees: 600,
            depth: p.max_depth,
            learning_rate: p.learning_rate,
            min_child_weight: 20.0,
            early_stopping: 50,
            threads: 0,
        }
    }
}

impl TrainConfig {
    pub fn params(&self) -> TrainParams {
        TrainParams {
            n_trees: self.trees,
            max_depth: self.depth,
            learning_rate: self.learning_rate,
            min_child_weight: self.min_child_weight,
            early_stopping_rounds: self.early_stopping,
            threads: self.threads,
            ..TrainParams::default()
        }
    }

    /// The default feature spec at `interval_secs` (for a champion without one).
    pub fn spec(&self, interval_secs: u32) -> FeatureSpec {
        FeatureSpec { interval_secs, target: TargetKind::Change, ..FeatureSpec::default() }
    }
}

/// The target: `{store}/{prefix}/{site}/models/{version}.gcm`, and
/// `current.gcm` beside it, the key the edge polls. Empty `prefix` or
/// `site` are left out of the path.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PublishConfig {
    /// A folder (a path or `file://`) or a bucket URL (`s3://`, `az://`, `gs://`).
    #[serde(alias = "dir")]
    pub store: String,
    pub prefix: String,
    pub site: String,
    /// object_store config keys applied over the environment.
    pub options: gridcast_edge::secret::StoreOptions,
    /// The private key (64 hex digits, `gridcast model keygen`) a shipped
    /// model is signed with, so predictors with `trusted_keys` accept it.
    /// Unset: `GRIDCAST_SIGNING_KEY_FILE`, else the key in
    /// `GRIDCAST_SIGNING_KEY`, else models are published unsigned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_key_file: Option<PathBuf>,
}

impl Default for PublishConfig {
    fn default() -> Self {
        PublishConfig {
            store: "./data".into(),
            prefix: String::new(),
            site: String::new(),
            options: Default::default(),
            signing_key_file: None,
        }
    }
}

impl PublishConfig {
    /// The folder the versions and `current.gcm` go in.
    pub fn models_dir(&self) -> PathBuf {
        let root = self.store.strip_prefix("file://").unwrap_or(&self.store);
        let mut dir = PathBuf::from(root);
        for part in [&self.prefix, &self.site] {
            if !part.is_empty() {
                dir.push(part);
            }
        }
        dir.join("models")
    }
}

impl RetrainConfig {
    /// The interval the history is averaged to: the champion's.
    pub fn interval_secs(&self, champion: &Model) -> anyhow::Result<u32> {
        match (champion.row_layout(), self.train.interval_secs) {
            (Some(layout), _) => Ok(layout.spec.interval_secs),
            (None, Some(interval)) => Ok(interval),
            (None, None) => anyhow::bail!(
                "the champion {} has no feature spec nor feature map: set [train] interval_secs",
                self.champion.model
            ),
        }
    }
}

impl ServiceConfig for RetrainConfig {
    fn validate(&self) -> anyhow::Result<()> {
        let h = &self.history;
        match [h.csv.is_some(), h.lines_dir.is_some(), h.influx.is_some()].iter().filter(|set| **set).count() {
            0 => anyhow::bail!(
                "invalid [history] section: set one of csv (a meter CSV), lines_dir (ingest's files) \
                 or [history.influx] (InfluxDB)"
            ),
            1 => {}
            _ => anyhow::bail!("invalid [history] section: set only one of csv, lines_dir and [history.influx]"),
        }
        if h.csv.is_none() && h.sensor.is_none() {
            anyhow::bail!("invalid [history] section: name the sensor to learn from (sensor = \"...\")");
        }
        if !(self.triplets.weight.is_finite() && self.triplets.weight >= 1.0) {
            anyhow::bail!("invalid [triplets] section: weight must be >= 1 (1: no extra weight)");
        }
        if !(self.holdout.days.is_finite() && self.holdout.days > 0.0) {
            anyhow::bail!("invalid [holdout] section: days must be > 0");
        }
        if !(0.0..1.0).contains(&self.gate.margin) {
            anyhow::bail!("invalid [gate] section: margin must be in 0..1 (0.02 = 2 %)");
        }
        if self.publish.site.contains('/') || self.publish.prefix.contains("..") {
            anyhow::bail!("invalid [publish] section: site must not contain '/', prefix not '..'");
        }
        if let Some(ship) = &self.ship {
            for reference in [&ship.base, &ship.image] {
                gridcast_ship::push::parse_reference(reference)
                    .map_err(|e| anyhow::anyhow!("invalid [ship] section: {e}"))?;
            }
            if ship.engine && ship.insecure {
                anyhow::bail!(
                    "invalid [ship] section: insecure does not apply with engine (the engine's own insecure-registries does)"
                );
            }
            if !ship.engine && ship.docker_host.is_some() {
                anyhow::bail!("invalid [ship] section: docker_host is only used with engine = true");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn the_example_config_loads_and_publishes_beside_the_predictors_model() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/gridcast/retrain.toml");
        figment::Jail::expect_with(|_| {
            let config: RetrainConfig = gridcast_edge::config::load(Some(&path)).unwrap();
            assert_eq!(config.publish.models_dir().join("current.gcm"), PathBuf::from(&config.champion.model));
            Ok(())
        });
    }

    #[test]
    fn the_history_password_comes_from_a_file_and_prints_as_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("influxdb-password");
        std::fs::write(&file, "from-a-file\n").unwrap();
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "r.toml",
                &format!("[history]\nsensor = \"s\"\n[history.influx]\nusername = \"u\"\npassword_file = {file:?}\n"),
            )?;
            let config: RetrainConfig = gridcast_edge::config::load(Some(Path::new("r.toml"))).unwrap();
            let influx = config.history.influx.as_ref().unwrap();
            assert_eq!(influx.password.as_ref().map(Secret::expose), Some("from-a-file"));
            let printed = toml::to_string(&config).unwrap();
            assert!(!printed.contains("from-a-file") && printed.contains("password_file"), "{printed}");
            jail.create_file("both.toml", &format!("[history.influx]\npassword = \"p\"\npassword_file = {file:?}\n"))?;
            let err = gridcast_edge::config::load::<RetrainConfig>(Some(Path::new("both.toml"))).unwrap_err();
            assert!(err.to_string().contains("both set"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn the_example_ship_section_loads_when_uncommented() {
        let example = include_str!("../../../deploy/gridcast/retrain.toml");
        let (head, ship) = example.split_once("# [ship]").expect("a [ship] example");
        let ship: String = ship.lines().map(|l| format!("{}\n", l.strip_prefix("# ").unwrap_or(l))).collect();
        figment::Jail::expect_with(|jail| {
            jail.create_file("retrain.toml", &format!("{head}[ship]{ship}"))?;
            let config: RetrainConfig = gridcast_edge::config::load(Some(Path::new("retrain.toml"))).unwrap();
            let ship = config.ship.expect("[ship] loaded");
            assert_eq!(ship.image, "registry.local:5000/gridcast/predictor:stable");
            assert!(!ship.engine && ship.docker_host.is_none());
            Ok(())
        });
    }

    #[test]
    fn a_history_needs_one_source_and_lines_need_a_sensor() {
        let mut c = RetrainConfig::default();
        assert!(c.validate().unwrap_err().to_string().contains("csv"));
        c.history.lines_dir = Some("x".into());
        assert!(c.validate().unwrap_err().to_string().contains("sensor"));
        c.history.sensor = Some("s".into());
        c.validate().unwrap();
    }

    #[test]
    fn a_ship_section_needs_image_references_and_engine_keys_only_with_engine() {
        let mut c = RetrainConfig::default();
        c.history.csv = Some("x.csv".into());
        let ship = ShipConfig {
            base: "127.0.0.1:5000/gridcast/predictor:base".into(),
            image: "127.0.0.1:5000/gridcast/predictor:stable".into(),
            insecure: false,
            engine: false,
            docker_host: None,
        };
        c.ship = Some(ShipConfig { image: "Not An Image".into(), ..ship.clone() });
        assert!(c.validate().unwrap_err().to_string().contains("\"Not An Image\" is not an image reference"));
        c.ship = Some(ShipConfig { docker_host: Some("unix:///d.sock".into()), ..ship.clone() });
        assert!(c.validate().unwrap_err().to_string().contains("docker_host"));
        c.ship = Some(ShipConfig { engine: true, insecure: true, ..ship.clone() });
        assert!(c.validate().unwrap_err().to_string().contains("insecure"));
        c.ship = Some(ShipConfig { engine: true, docker_host: Some("unix:///d.sock".into()), ..ship });
        c.validate().unwrap();
    }
}
