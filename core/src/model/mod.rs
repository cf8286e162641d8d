//! Models: gradient-boosted regression trees, their file format and the
//! XGBoost importer.
//!
//! - [`Tree`]: portable parallel-array form (what trainers and importers emit).
//! - [`Forest`]: the compiled evaluator, single rows and batches.
//! - [`Model`]: a forest plus its [`ModelMetadata`] (feature spec, target,
//!   training range, metrics), saved with [`Model::to_bytes`] and checked by
//!   sha256 on [`Model::from_bytes`]; [`signature`] signs a model file
//!   (ed25519, in its header) and verifies it against trusted keys. An imported model carries a
//!   [`FeatureMap`] instead of a feature spec; either way
//!   [`Model::row_layout`] says how the shared feature code makes its rows.
//! - [`xgboost`]: `booster.save_model("m.json")` files, 1.x and 2.x/3.x layouts.
//! - `onnx` (feature `onnx`): export as ONNX `TreeEnsembleRegressor`.

mod forest;
mod format;
#[cfg(feature = "onnx")]
pub mod onnx;
pub mod signature;
mod tree;
pub mod xgboost;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::features::{FeatureMap, FeatureSpec, MapError, RowLayout, TargetKind};
pub use forest::{Forest, MAX_PADDED_DEPTH};
pub use format::{FORMAT_NAME, FORMAT_VERSION};
pub use tree::{LEAF, Tree};

/// Why a model could not be loaded or built.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("not a gridcast model file: {0}")]
    NotAModel(String),
    #[error(
        "model file format version {found} is not supported (this build reads version {supported}); re-export the model"
    )]
    UnsupportedVersion { found: u32, supported: u32 },
    #[error("model file is corrupt: payload sha256 is {actual}, header says {expected}")]
    ChecksumMismatch { expected: String, actual: String },
    #[error("model file is inconsistent: {0}")]
    Invalid(String),
    #[error("XGBoost model not supported: {0}")]
    Xgboost(String),
    #[error(transparent)]
    FeatureMap(#[from] MapError),
    #[error("malformed JSON in model: {0}")]
    Json(#[from] serde_json::Error),
}

/// Everything about a model except its trees.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelMetadata {
    /// How rows are computed; `None` for imported models (their columns come
    /// from the model's feature map, if one was declared at import).
    pub feature_spec: Option<FeatureSpec>,
    /// Input column names, in row order.
    pub feature_names: Vec<String>,
    /// What the raw output means.
    pub target: TargetKind,
    /// Added to the sum of the trees.
    pub base_score: f32,
    /// Loss trained with ("absolute", "squared", or the XGBoost objective).
    pub loss: String,
    /// Where the model came from ("gridcast-trainer 0.1.0", "xgboost 3.2.0").
    pub source: String,
    /// First and last interval trained on (RFC 3339), if known.
    pub training_range: Option<(String, String)>,
    /// Number of training rows, if known.
    pub training_rows: Option<u64>,
    /// Training parameters, free-form.
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Value>,
    /// Measured quality, e.g. `backtest_mae_w`, `validation_mae`.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// Where a retrained model comes from; `None` for one trained by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lineage: Option<Lineage>,
}

/// A retrained model's history: the model it replaced, what it learned
/// from, and how both scored on the data the challenger never saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lineage {
    /// Version (payload sha256) of the champion it was measured against.
    pub parent_version: String,
    /// First and last interval of the history used (RFC 3339).
    pub data_range: (String, String),
    /// Start of the holdout (RFC 3339): the challenger trained before it.
    pub holdout_from: String,
    /// Holdout scores, W: `mae`, `rmse`, `persistence_mae`, `skill`.
    pub champion_holdout: BTreeMap<String, f64>,
    pub challenger_holdout: BTreeMap<String, f64>,
    /// What started the retrain (`cli`, `schedule`, `mispredictions`).
    pub trigger: String,
    /// Mispredicted triplets that weighted the training.
    pub triplets_used: u64,
}

/// A loaded, ready-to-run model.
#[derive(Debug, Clone)]
pub struct Model {
    pub meta: ModelMetadata,
    /// An imported model's inputs as columns of ours (stored beside `meta`
    /// in the file).
    feature_map: Option<FeatureMap>,
    trees: Vec<Tree>,
    forest: Forest,
    /// Input holding the current total (what a change is added to).
    total_at: Option<usize>,
}

impl Model {
    /// Check trees and metadata agree and compile the evaluator.
    pub fn new(meta: ModelMetadata, trees: Vec<Tree>) -> Result<Self, ModelError> {
        Model::build(meta, None, trees)
    }

    /// An imported model whose inputs are the mapped columns, in order:
    /// `map.columns[i]` is what `meta.feature_names[i]` means.
    pub fn mapped(meta: ModelMetadata, map: FeatureMap, trees: Vec<Tree>) -> Result<Self, ModelError> {
        Model::build(meta, Some(map), trees)
    }

    fn build(meta: ModelMetadata, feature_map: Option<FeatureMap>, trees: Vec<Tree>) -> Result<Self, ModelError> {
        let nf = meta.feature_names.len();
        if let Some(spec) = &meta.feature_spec {
            spec.validate().map_err(ModelError::Invalid)?;
            if spec.names() != meta.feature_names {
                return Err(ModelError::Invalid(
                    "feature names do not match the feature spec (was the model edited, or trained by another version?)".into(),
                ));
            }
        }
        // What each input is, by our column names: the names themselves for
        // a model gridcast trained (or an unmapped import), the map's
        // columns for a mapped one.
        let columns = match &feature_map {
            None => &meta.feature_names,
            Some(map) => {
                if meta.feature_spec.is_some() {
                    return Err(ModelError::Invalid(
                        "the model has both a feature spec and a feature map: it is one or the other".into(),
                    ));
                }
                map.validate()?;
                if map.columns.len() != nf {
                    return Err(ModelError::Invalid(format!(
                        "the feature map has {} columns for {nf} feature names",
                        map.columns.len()
                    )));
                }
                &map.columns
            }
        };
        let total_at = columns.iter().position(|c| c == "total");
        if meta.target == TargetKind::Change && total_at.is_none() {
            if feature_map.is_some() {
                return Err(MapError::Invalid(
                    "a change-target model needs an input mapped to `total` (the current total its change is \
                     added to); map one, or import the model as a level model"
                        .into(),
                )
                .into());
            }
            return Err(ModelError::Invalid(
                "a change-target model needs a `total` feature to add the change to".into(),
            ));
        }
        if !meta.base_score.is_finite() {
            return Err(ModelError::Invalid("base_score is not finite".into()));
        }
        for (i, t) in trees.iter().enumerate() {
            t.validate(nf).map_err(|e| ModelError::Invalid(format!("tree {i}: {e}")))?;
        }
        let forest = Forest::compile(&trees, meta.base_score, nf);
        Ok(Model { meta, feature_map, trees, forest, total_at })
    }

    /// The declared feature map of an imported model.
    pub fn feature_map(&self) -> Option<&FeatureMap> {
        self.feature_map.as_ref()
    }

    /// How the shared feature code makes this model's rows: its feature
    /// spec, or its feature map's. `None` for an imported model without a
    /// map (it can only be fed rows by column name, e.g. `predict-batch`).
    pub fn row_layout(&self) -> Option<RowLayout> {
        match (&self.meta.feature_spec, &self.feature_map) {
            (Some(spec), _) => Some(RowLayout::native(spec.clone())),
            (None, Some(map)) => Some(map.layout(self.meta.target)),
            (None, None) => None,
        }
    }

    pub fn trees(&self) -> &[Tree] {
        &self.trees
    }

    pub fn forest(&self) -> &Forest {
        &self.forest
    }

    /// Raw output (a change or a level, see `meta.target`).
    #[inline]
    pub fn predict_raw(&self, row: &[f32]) -> f32 {
        self.forest.predict_row(row)
    }

    /// Predicted total power of the target interval, in W: the raw output,
    /// plus the current total for change-target models.
    pub fn predict_level(&self, row: &[f32]) -> f32 {
        let raw = self.predict_raw(row);
        match self.meta.target {
            TargetKind::Level => raw,
            TargetKind::Change => raw + row[self.total_at.unwrap_or(0)],
        }
    }
}

#[cfg(test)]
mod tests;
