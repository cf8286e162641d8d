//! Import of XGBoost JSON models (`booster.save_model("m.json")`).
//!
//! Handles the 1.x layout (`base_score` like `"5E-1"`, `default_left` as 0/1)
//! and the 2.x/3.x layout (`base_score` like `"[5E-1]"`, booleans, vector
//! leaves absent for single-target regression). Only identity-link
//! regression objectives are accepted, where the output is
//! `base_score + sum of leaves`; anything else is refused rather than
//! silently mispredicted. XGBoost sends `x < split_condition` left and a
//! missing value to the `default_left` side; a leaf's value is its
//! `split_conditions` entry.
//!
//! [`import_json`] gives a model that can be fed rows by column name
//! (`predict-batch`). [`import_json_mapped`] also declares what each input
//! is as a column of ours ([`FeatureMap`]), so the predictor can compute its
//! rows; every name is checked here, at import, not when it is served.

use serde_json::Value;

use super::{LEAF, Model, ModelError, ModelMetadata, Tree};
use crate::features::{FeatureMap, MapError, TargetKind};

const IDENTITY_OBJECTIVES: [&str; 4] = ["reg:squarederror", "reg:absoluteerror", "reg:pseudohubererror", "reg:linear"];

/// Most inputs an imported model may declare (`num_feature`). Each gets a
/// name (`f0`, `f1`, ...) when the file has none, so a small file claiming
/// 400 million inputs would allocate 10 GB before any tree is read.
pub const MAX_FEATURES: usize = 1 << 20;

fn err(msg: impl Into<String>) -> ModelError {
    ModelError::Xgboost(msg.into())
}

/// Parse an XGBoost JSON model. `target` says what its output means for
/// gridcast (XGBoost does not record it; `Level` for a plain regressor).
pub fn import_json(bytes: &[u8], target: TargetKind) -> Result<Model, ModelError> {
    let (meta, trees, _) = parse(bytes, target)?;
    Model::new(meta, trees)
}

/// How an imported model's inputs are served: what XGBoost does not record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Serving {
    /// What the output means (the prototype's model: `Level`).
    pub target: TargetKind,
    /// The interval the model was trained on, in seconds (its lags count these).
    pub interval_secs: u32,
    /// Intervals ahead it predicts (1 = the next one).
    pub horizon: u32,
    /// One entry per model input, in the model's order: `NAME` (a name in
    /// [`crate::features::COLUMN_GRAMMAR`], e.g. `p_l1-1`) or `NAME=COLUMN`
    /// (input `NAME` is our column `COLUMN`, e.g. `f3=p_l1-1`). `NAME` must
    /// be the file's name for that input when the file has names. `None`:
    /// the file's own feature names, each in the grammar.
    pub features: Option<Vec<String>>,
}

/// Parse an XGBoost JSON model and declare its feature map. An input whose
/// name is not a column the feature code computes, a declaration that does
/// not match the file's inputs, or a file without names and no declaration
/// is an error saying which.
pub fn import_json_mapped(bytes: &[u8], serving: &Serving) -> Result<Model, ModelError> {
    let (mut meta, trees, file_has_names) = parse(bytes, serving.target)?;
    let n = meta.feature_names.len();
    let (names, columns): (Vec<String>, Vec<String>) = match &serving.features {
        None if !file_has_names => {
            return Err(invalid(format!(
                "the XGBoost file does not name its {n} inputs: declare them in order (--features p_l1,p_l2,...)"
            )));
        }
        None => meta.feature_names.iter().map(|n| (n.clone(), n.clone())).collect(),
        Some(declared) => {
            if declared.len() != n {
                return Err(invalid(format!(
                    "the model has {n} inputs but {} feature names are declared",
                    declared.len()
                )));
            }
            let mut pairs = Vec::with_capacity(n);
            for (i, entry) in declared.iter().enumerate() {
                let (name, column) = entry.split_once('=').unwrap_or((entry, entry));
                let (name, column) = (name.trim(), column.trim());
                if file_has_names && name != meta.feature_names[i] {
                    return Err(invalid(format!(
                        "model input {i} is {:?} in the XGBoost file but is declared as {name:?}: declare the \
                         inputs in the model's order, as NAME or NAME=COLUMN with the file's names",
                        meta.feature_names[i]
                    )));
                }
                pairs.push((name.to_string(), column.to_string()));
            }
            pairs.into_iter().unzip()
        }
    };
    if let Some(dup) = names.iter().enumerate().find_map(|(i, a)| names[..i].contains(a).then_some(a)) {
        return Err(invalid(format!("feature name {dup:?} is declared twice")));
    }
    let map = FeatureMap::declare(serving.interval_secs, serving.horizon, &columns)?;
    meta.feature_names = names;
    Model::mapped(meta, map, trees)
}

fn invalid(msg: String) -> ModelError {
    ModelError::FeatureMap(MapError::Invalid(msg))
}

/// Metadata (no spec, no map), trees, and whether the file named its inputs.
fn parse(bytes: &[u8], target: TargetKind) -> Result<(ModelMetadata, Vec<Tree>, bool), ModelError> {
    let doc: Value = serde_json::from_slice(bytes)?;
    let learner = doc.get("learner").ok_or_else(|| err("no `learner` object (is this a save_model JSON file?)"))?;
    let objective =
        learner.pointer("/objective/name").and_then(Value::as_str).ok_or_else(|| err("no objective name"))?;
    if !IDENTITY_OBJECTIVES.contains(&objective) {
        return Err(err(format!("objective {objective:?}: only identity-link regression ({IDENTITY_OBJECTIVES:?})")));
    }
    let lmp = learner.get("learner_model_param").ok_or_else(|| err("no learner_model_param"))?;
    for key in ["num_class", "num_target"] {
        let n = lmp.get(key).and_then(Value::as_str).unwrap_or("0");
        if n.parse::<u32>().unwrap_or(0) > 1 {
            return Err(err(format!("{key} = {n}: only single-output models")));
        }
    }
    let base_score = parse_base_score(lmp.get("base_score"))?;
    let n_features: usize = lmp
        .get("num_feature")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| err("learner_model_param.num_feature missing"))?;
    if n_features > MAX_FEATURES {
        return Err(err(format!(
            "learner_model_param.num_feature is {n_features}, more than the {MAX_FEATURES} inputs a model may have"
        )));
    }
    let booster = learner.get("gradient_booster").ok_or_else(|| err("no gradient_booster"))?;
    let name = booster.get("name").and_then(Value::as_str).unwrap_or("");
    if name != "gbtree" {
        return Err(err(format!("booster {name:?}: only gbtree (not dart or gblinear)")));
    }
    let trees_json = booster
        .pointer("/model/trees")
        .and_then(Value::as_array)
        .ok_or_else(|| err("no gradient_booster.model.trees"))?;
    let trees = trees_json
        .iter()
        .enumerate()
        .map(|(i, t)| parse_tree(t).map_err(|e| err(format!("tree {i}: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;

    let mut feature_names: Vec<String> = learner
        .get("feature_names")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
        .unwrap_or_default();
    let has_names = feature_names.len() == n_features;
    if !has_names {
        feature_names = (0..n_features).map(|i| format!("f{i}")).collect();
    }
    let version = doc
        .get("version")
        .and_then(Value::as_array)
        .map(|v| v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join("."))
        .unwrap_or_else(|| "?".into());
    let meta = ModelMetadata {
        feature_spec: None,
        feature_names,
        target,
        base_score,
        loss: objective.to_string(),
        source: format!("xgboost {version}"),
        training_range: None,
        training_rows: None,
        params: Default::default(),
        metrics: Default::default(),
        lineage: None,
    };
    Ok((meta, trees, has_names))
}

/// `"5E-1"` (1.x), `"[5E-1]"` (2.x/3.x) or a bare number.
fn parse_base_score(v: Option<&Value>) -> Result<f32, ModelError> {
    let v = v.ok_or_else(|| err("learner_model_param.base_score missing"))?;
    if let Some(x) = v.as_f64() {
        return Ok(x as f32);
    }
    let s = v.as_str().ok_or_else(|| err("base_score is neither a string nor a number"))?;
    let inner = s.trim().trim_start_matches('[').trim_end_matches(']');
    let parts: Vec<&str> = inner.split(',').map(str::trim).filter(|p| !p.is_empty()).collect();
    if parts.len() != 1 {
        return Err(err(format!("base_score {s:?}: expected one value")));
    }
    parts[0].parse::<f32>().map_err(|_| err(format!("base_score {s:?} is not a number")))
}

fn num_array(t: &Value, key: &str) -> Result<Vec<f64>, String> {
    let a = t.get(key).and_then(Value::as_array).ok_or_else(|| format!("no `{key}` array"))?;
    a.iter()
        .map(|v| match v {
            Value::Number(n) => n.as_f64().ok_or_else(|| format!("`{key}` has a bad number")),
            Value::Bool(b) => Ok(*b as u8 as f64),
            _ => Err(format!("`{key}` has a non-number")),
        })
        .collect()
}

fn parse_tree(t: &Value) -> Result<Tree, String> {
    let left = num_array(t, "left_children")?;
    let right = num_array(t, "right_children")?;
    let cond = num_array(t, "split_conditions")?;
    let idx = num_array(t, "split_indices")?;
    let dl = num_array(t, "default_left")?;
    let n = left.len();
    if [right.len(), cond.len(), idx.len(), dl.len()].iter().any(|&l| l != n) {
        return Err("node arrays differ in length".into());
    }
    if let Ok(st) = num_array(t, "split_type")
        && st.iter().any(|&s| s != 0.0)
    {
        return Err("categorical splits are not supported".into());
    }
    let mut tree = Tree {
        feature: vec![0; n],
        threshold: vec![0.0; n],
        default_left: vec![false; n],
        left: vec![LEAF; n],
        right: vec![LEAF; n],
        value: vec![0.0; n],
    };
    for i in 0..n {
        if left[i] < 0.0 {
            tree.value[i] = cond[i] as f32;
        } else {
            if left[i] < 1.0 || right[i] < 1.0 || left[i] as usize >= n || right[i] as usize >= n {
                return Err(format!("node {i} has children out of range"));
            }
            tree.left[i] = left[i] as u32;
            tree.right[i] = right[i] as u32;
            tree.feature[i] = idx[i] as u32;
            tree.threshold[i] = cond[i] as f32;
            tree.default_left[i] = dl[i] != 0.0;
        }
    }
    Ok(tree)
}
