//! From intervals to a model, and the backtest that scores one: features
//! (core), our GBDT, metadata for the model file, and the baselines a model
//! must beat (persistence, linear regression).

use chrono::DateTime;
use gridcast_core::features::{FeatureSpec, FeatureTable, Interval};
use gridcast_core::model::{Model, ModelMetadata};
use linfa::prelude::SingleTargetRegression;
use ndarray_linfa::Array1;
use serde::Serialize;

use crate::gbdt::{self, Loss, TrainParams, Trained};

/// Progress callback: (trees done, validation metric).
pub type Progress<'a> = &'a mut (dyn FnMut(usize, Option<f64>) + Send);

/// Unix seconds as RFC 3339 (UTC, whole seconds).
pub fn rfc3339(ts: i64) -> String {
    DateTime::from_timestamp(ts, 0).map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)).unwrap_or_default()
}

/// Rows `idx` of a table as a row-major matrix and their targets.
pub fn gather(table: &FeatureTable, idx: &[usize]) -> (Vec<f32>, Vec<f32>) {
    let mut x = Vec::with_capacity(idx.len() * table.width());
    let mut y = Vec::with_capacity(idx.len());
    for &i in idx {
        x.extend_from_slice(table.row(i));
        y.push(table.target[i]);
    }
    (x, y)
}

/// Train a model on rows `idx` of `table` (chronological order).
pub fn fit(
    spec: &FeatureSpec,
    table: &FeatureTable,
    idx: &[usize],
    params: &TrainParams,
    progress: Progress,
) -> anyhow::Result<(Model, Trained)> {
    fit_weighted(spec, table, idx, None, params, progress)
}

/// [`fit`] with sample weights, one per entry of `idx` (finite, > 0; see
/// [`gbdt::train_weighted`]). With weights, the metadata's metrics also hold
/// `weighted_rows`: how many rows had a weight other than 1.
pub fn fit_weighted(
    spec: &FeatureSpec,
    table: &FeatureTable,
    idx: &[usize],
    weights: Option<&[f32]>,
    params: &TrainParams,
    progress: Progress,
) -> anyhow::Result<(Model, Trained)> {
    anyhow::ensure!(
        !idx.is_empty(),
        "no rows with a known target to train on (is the series shorter than the horizon?)"
    );
    let (x, y) = gather(table, idx);
    let trained = gbdt::train_weighted(&x, table.width(), &y, weights, params, progress)?;
    let mut metrics = std::collections::BTreeMap::new();
    if let Some(w) = weights {
        metrics.insert("weighted_rows".to_string(), w.iter().filter(|&&w| w != 1.0).count() as f64);
    }
    if let Some(m) = trained.validation_metric {
        let name = match params.loss {
            Loss::Absolute => "validation_mae",
            Loss::Squared => "validation_rmse",
        };
        metrics.insert(name.to_string(), m);
    }
    let params_json = serde_json::to_value(params)?;
    let meta = ModelMetadata {
        feature_spec: Some(spec.clone()),
        feature_names: spec.names(),
        target: spec.target,
        base_score: trained.base_score,
        loss: serde_json::to_value(params.loss)?.as_str().unwrap_or("").to_string(),
        source: format!("gridcast-trainer {}", env!("CARGO_PKG_VERSION")),
        training_range: Some((rfc3339(table.ts[idx[0]]), rfc3339(table.ts[*idx.last().expect("non-empty")]))),
        training_rows: Some(idx.len() as u64),
        params: params_json.as_object().map(|o| o.clone().into_iter().collect()).unwrap_or_default(),
        metrics,
        lineage: None,
    };
    let model = Model::new(meta, trained.trees.clone())?;
    Ok((model, trained))
}

/// Scores of a one-step-ahead backtest, in W.
#[derive(Debug, Clone, Serialize)]
pub struct BacktestReport {
    pub train_rows: usize,
    pub test_rows: usize,
    pub test_from: String,
    pub test_to: String,
    pub mae: f64,
    pub rmse: f64,
    pub persistence_mae: f64,
    pub persistence_rmse: f64,
    /// 1 - MAE / persistence MAE: > 0 means the model beats persistence.
    pub skill: f64,
    /// linfa-linear least squares on the same features and target.
    pub linear_mae: Option<f64>,
    pub trees: usize,
    pub train_seconds: f64,
    pub loss: Loss,
    pub target: gridcast_core::features::TargetKind,
}

/// One test row: (timestamp, actual, predicted, persistence), W.
pub type TestPoint = (i64, f32, f32, f32);

/// Train on the first `train_fraction` of the labelled rows, predict the rest.
pub fn backtest(
    spec: &FeatureSpec,
    series: &[Interval],
    params: &TrainParams,
    train_fraction: f64,
    progress: Progress,
) -> anyhow::Result<(BacktestReport, Model, Vec<TestPoint>)> {
    anyhow::ensure!(
        train_fraction > 0.0 && train_fraction < 1.0,
        "--train-fraction must be between 0 and 1, got {train_fraction}"
    );
    let table = FeatureTable::build(spec, series)?;
    let rows = table.labelled_rows();
    let n_train = (rows.len() as f64 * train_fraction) as usize;
    anyhow::ensure!(n_train >= 10 && rows.len() - n_train >= 1, "only {} labelled rows: too few to split", rows.len());
    let (train_idx, test_idx) = rows.split_at(n_train);
    let (model, trained) = fit(spec, &table, train_idx, params, progress)?;
    let points: Vec<TestPoint> = test_idx
        .iter()
        .map(|&i| (table.ts[i], table.next_total[i], model.predict_level(table.row(i)), table.current_total[i]))
        .collect();
    let actual = Array1::from_iter(points.iter().map(|p| p.1 as f64));
    let pred = Array1::from_iter(points.iter().map(|p| p.2 as f64));
    // persistence: a missing current total (gap) carries the last known one
    let mut last = f32::NAN;
    let persist = Array1::from_iter(points.iter().map(|p| {
        if !p.3.is_nan() {
            last = p.3;
        }
        if last.is_nan() { 0.0 } else { last as f64 }
    }));
    let mae = pred.mean_absolute_error(&actual)?;
    let persistence_mae = persist.mean_absolute_error(&actual)?;
    let report = BacktestReport {
        train_rows: n_train,
        test_rows: points.len(),
        test_from: rfc3339(points[0].0),
        test_to: rfc3339(points[points.len() - 1].0),
        mae,
        rmse: pred.mean_squared_error(&actual)?.sqrt(),
        persistence_mae,
        persistence_rmse: persist.mean_squared_error(&actual)?.sqrt(),
        skill: 1.0 - mae / persistence_mae,
        linear_mae: crate::baseline::linear_mae(&table, train_idx, test_idx).ok(),
        trees: model.forest().n_trees(),
        train_seconds: trained.seconds,
        loss: params.loss,
        target: spec.target,
    };
    Ok((report, model, points))
}

impl std::fmt::Display for BacktestReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "backtest: trained on {} rows, tested on {} ({} .. {})",
            self.train_rows, self.test_rows, self.test_from, self.test_to
        )?;
        writeln!(
            f,
            "  model ({:?} loss, {:?} target, {} trees, {:.1} s): MAE {:.1} W, RMSE {:.1} W",
            self.loss, self.target, self.trees, self.train_seconds, self.mae, self.rmse
        )?;
        writeln!(f, "  persistence:  MAE {:.1} W, RMSE {:.1} W", self.persistence_mae, self.persistence_rmse)?;
        if let Some(l) = self.linear_mae {
            writeln!(f, "  linear (linfa-linear): MAE {l:.1} W")?;
        }
        write!(f, "  skill vs persistence (1 - MAE/persistence MAE): {:.3}", self.skill)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> (FeatureSpec, FeatureTable) {
        let spec = FeatureSpec::default();
        let series: Vec<Interval> = (0..3000)
            .map(|i| {
                let v = 300.0 + 200.0 * ((i as f32) / 50.0).sin();
                Interval { ts: 1_167_609_600 + 60 * i, p: [v, v / 2.0, 100.0] }
            })
            .collect();
        let table = FeatureTable::build(&spec, &series).unwrap();
        (spec, table)
    }

    #[test]
    fn weighted_fit_records_how_many_rows_were_weighted() {
        let (spec, table) = table();
        let rows = table.labelled_rows();
        let p = TrainParams { n_trees: 5, threads: 1, ..Default::default() };
        let (plain, _) = fit(&spec, &table, &rows, &p, &mut |_, _| {}).unwrap();
        assert!(!plain.meta.metrics.contains_key("weighted_rows"));
        let w: Vec<f32> = (0..rows.len()).map(|i| if i % 10 == 0 { 5.0 } else { 1.0 }).collect();
        let (weighted, _) = fit_weighted(&spec, &table, &rows, Some(&w), &p, &mut |_, _| {}).unwrap();
        assert_eq!(weighted.meta.metrics["weighted_rows"], rows.len().div_ceil(10) as f64);
        let short = &w[..rows.len() - 1];
        assert!(fit_weighted(&spec, &table, &rows, Some(short), &p, &mut |_, _| {}).is_err());
    }
}
