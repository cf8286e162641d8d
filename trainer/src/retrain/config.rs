//! `gridcast retrain`'s configuration, loaded like the edge services' (the
//! edge runtime's one loader: defaults, TOML file, `GRIDCAST_<SECTION>__<KEY>`
//! environment overrides, unknown keys named).

use std::path::PathBuf;

use gridcast_core::Source;
use gridcast_core::features::{FeatureSpec, TargetKind};
use gridcast_core::model::Model;
use gridcast_edge::config::ServiceConfig;
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
}

/// One sensor's history: a meter CSV, or ingest's line-protocol files.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HistoryConfig {
    /// A meter CSV (`timestamp`, `p_l1`[, `p_l2`, `p_l3`] in W).
    pub csv: Option<PathBuf>,
    /// A folder of line-protocol files as ingest's `file` sink writes them
    /// (`gridcast-YYYY-MM-DD.lp`, read in name order).
    pub lines_dir: Option<PathBuf>,
    /// The sensor whose windows to learn from (the `sensor` tag); needed
    /// with `lines_dir`.
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
            sensor: None,
            measurement: "meter_window".into(),
            source: Source::Raw,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ChampionConfig {
    /// The champion model file: what the edge's `[predict] model` reads.
    pub model: PathBuf,
}

impl Default for ChampionConfig {
    fn default() -> Self {
        ChampionConfig { model: PathBuf::from("models/default.gcm") }
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

/// A folder target: `{dir}/{prefix}/{site}/models/{version}.gcm`, and
/// `current.gcm` beside it, the file the edge polls. Empty `prefix` or
/// `site` are left out of the path.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PublishConfig {
    /// The folder (a `file://` URL or a path).
    pub dir: String,
    pub prefix: String,
    pub site: String,
}

impl Default for PublishConfig {
    fn default() -> Self {
        PublishConfig { dir: "./data".into(), prefix: String::new(), site: String::new() }
    }
}

impl PublishConfig {
    /// The folder the versions and `current.gcm` go in.
    pub fn models_dir(&self) -> PathBuf {
        let root = self.dir.strip_prefix("file://").unwrap_or(&self.dir);
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
        match (&champion.meta.feature_spec, self.train.interval_secs) {
            (Some(spec), _) => Ok(spec.interval_secs),
            (None, Some(interval)) => Ok(interval),
            (None, None) => anyhow::bail!(
                "the champion {} has no feature spec (an imported model): set [train] interval_secs",
                self.champion.model.display()
            ),
        }
    }
}

impl ServiceConfig for RetrainConfig {
    fn validate(&self) -> anyhow::Result<()> {
        let h = &self.history;
        match (&h.csv, &h.lines_dir) {
            (Some(_), Some(_)) => anyhow::bail!("invalid [history] section: set csv or lines_dir, not both"),
            (None, None) => {
                anyhow::bail!("invalid [history] section: set csv (a meter CSV) or lines_dir (ingest's files)")
            }
            (None, Some(_)) if h.sensor.is_none() => {
                anyhow::bail!("invalid [history] section: lines_dir needs the sensor to learn from (sensor = \"...\")")
            }
            _ => {}
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
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_loads_and_publishes_beside_the_predictors_model() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/gridcast/retrain.toml");
        figment::Jail::expect_with(|_| {
            let config: RetrainConfig = gridcast_edge::config::load(Some(&path)).unwrap();
            assert_eq!(config.publish.models_dir().join("current.gcm"), config.champion.model);
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
}
