//! The linear baseline the backtest reports: linfa-linear least squares on
//! the same target, from the current total, its lags and the time of day (an
//! autoregressive model). Only those columns: the others (phase sums,
//! differences, rolling means) are exact linear combinations of them and
//! make ordinary least squares blow up. Missing values are filled with the
//! training column mean, since linear regression has no notion of missing.

use gridcast_core::features::FeatureTable;
use linfa::prelude::*;
use linfa_linear::LinearRegression;
use ndarray_linfa::{Array1, Array2};

/// MAE (W, on the level) of a linear model fitted on `train`, scored on `test`.
pub fn linear_mae(table: &FeatureTable, train: &[usize], test: &[usize]) -> anyhow::Result<f64> {
    let cols: Vec<usize> = table
        .names
        .iter()
        .enumerate()
        .filter(|(_, n)| *n == "total" || n.starts_with("total_lag") || *n == "tod_sin" || *n == "tod_cos")
        .map(|(i, _)| i)
        .collect();
    let w = cols.len();
    let mut means = vec![0f64; w];
    let mut counts = vec![0usize; w];
    for &i in train {
        let row = table.row(i);
        for (j, &c) in cols.iter().enumerate() {
            if !row[c].is_nan() {
                means[j] += row[c] as f64;
                counts[j] += 1;
            }
        }
    }
    for (m, c) in means.iter_mut().zip(&counts) {
        *m = if *c > 0 { *m / *c as f64 } else { 0.0 };
    }
    let matrix = |idx: &[usize]| {
        Array2::from_shape_fn((idx.len(), w), |(r, c)| {
            let v = table.row(idx[r])[cols[c]];
            if v.is_nan() { means[c] } else { v as f64 }
        })
    };
    let y = Array1::from_iter(train.iter().map(|&i| table.target[i] as f64));
    let fitted = LinearRegression::new().fit(&Dataset::new(matrix(train), y))?;
    let pred = fitted.predict(&matrix(test));
    let level_offset = |i: usize| table.next_total[i] as f64 - table.target[i] as f64;
    let p = Array1::from_iter(test.iter().zip(pred.iter()).map(|(&i, &p)| p + level_offset(i)));
    let a = Array1::from_iter(test.iter().map(|&i| table.next_total[i] as f64));
    Ok(p.mean_absolute_error(&a)?)
}
