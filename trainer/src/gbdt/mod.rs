//! Our gradient-boosted regression trees (histogram-based, depth-wise).
//!
//! Why our own: forust-ml 0.8, the pure-Rust candidate, offers only squared
//! and log loss; household minute data needs absolute loss on the change
//! target to beat persistence. This is the XGBoost `hist` recipe: features
//! binned to bytes ([`binning`]), gradient/hessian histograms with the
//! subtraction trick ([`grow`]), L2-regularized Newton leaves, learned
//! default directions for missing values, row subsampling, and early
//! stopping on a validation tail. For absolute loss the tree shape comes
//! from gradient signs (hessian 1) and each leaf is then set to the median
//! residual of its rows, as XGBoost's `reg:absoluteerror` does.
//!
//! Optional per-row sample weights ([`train_weighted`]) follow XGBoost's
//! meaning: a row of weight w counts as w copies of itself. Its gradient and
//! hessian are scaled by w (so `min_child_weight` bounds a weighted hessian
//! sum), the base score is the weighted mean (squared) or weighted median
//! (absolute), and absolute-loss leaves take the weighted median residual.
//! `gridcast retrain` uses them to weight up rows the champion mispredicted.

pub mod binning;
pub mod grow;

use std::time::Instant;

use gridcast_core::model::Tree;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use binning::Cuts;
use grow::{GrowParams, GrownTree};

/// Training loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    /// Squared error: predicts the mean; RMSE on validation.
    Squared,
    /// Absolute error: predicts the median; MAE on validation. Robust to spikes.
    Absolute,
}

/// Boosting knobs. Defaults are the ones that beat persistence on the UCI data.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainParams {
    /// Most trees to grow (fewer if early stopping triggers).
    pub n_trees: usize,
    /// Deepest split level (6 = up to 64 leaves).
    pub max_depth: usize,
    /// Shrinkage applied to every leaf.
    pub learning_rate: f64,
    /// Least hessian sum in a child: rows for both losses when unweighted,
    /// the sum of the rows' weights with sample weights.
    pub min_child_weight: f64,
    /// L2 regularization on leaf values.
    pub lambda: f64,
    /// Fraction of rows drawn for each tree (1 = all).
    pub subsample: f64,
    /// Value bins per feature (2..=255).
    pub max_bins: usize,
    pub loss: Loss,
    /// Stop after this many trees without validation improvement (0 = off).
    pub early_stopping_rounds: usize,
    /// Chronological tail of the training rows held out for early stopping.
    pub validation_fraction: f64,
    /// After early stopping has chosen the number of trees, train again on
    /// all rows (validation tail included) with that many trees. The tail is
    /// the most recent data, the most useful for forecasting the next days.
    pub refit: bool,
    /// Worker threads (0 = all cores).
    pub threads: usize,
    pub seed: u64,
}

impl Default for TrainParams {
    fn default() -> Self {
        TrainParams {
            n_trees: 600,
            max_depth: 6,
            learning_rate: 0.05,
            min_child_weight: 20.0,
            lambda: 1.0,
            subsample: 1.0,
            max_bins: 255,
            loss: Loss::Absolute,
            early_stopping_rounds: 50,
            validation_fraction: 0.1,
            refit: true,
            threads: 0,
            seed: 42,
        }
    }
}

/// A trained ensemble and how training went.
#[derive(Debug, Clone)]
pub struct Trained {
    pub trees: Vec<Tree>,
    pub base_score: f32,
    /// Validation metric (MAE or RMSE) after the kept trees; None without a
    /// validation tail. With `refit`, measured before the refit.
    pub validation_metric: Option<f64>,
    /// Rows the final trees were trained on (all rows after a refit).
    pub train_rows: usize,
    pub validation_rows: usize,
    pub seconds: f64,
}

/// Train on row-major `x` (`n_features` per row, NaN = missing) and `y`.
/// `progress(trees_done, validation_metric)` is called after every tree.
pub fn train(
    x: &[f32],
    n_features: usize,
    y: &[f32],
    p: &TrainParams,
    progress: &mut (dyn FnMut(usize, Option<f64>) + Send),
) -> anyhow::Result<Trained> {
    train_weighted(x, n_features, y, None, p, progress)
}

/// [`train`] with optional sample weights, one per row of `y` (finite, > 0).
/// `None`, or all weights 1.0, trains exactly (bit for bit) as [`train`].
///
/// The early-stopping metric on the validation tail stays unweighted: the
/// weights say which rows training should try harder on, but the number of
/// trees is chosen for plain forecast error, the same error the retrain gate
/// scores challenger and champion with on the holdout. A weighted metric
/// would let a few heavily weighted rows pick a tree count that overfits them.
pub fn train_weighted(
    x: &[f32],
    n_features: usize,
    y: &[f32],
    weights: Option<&[f32]>,
    p: &TrainParams,
    progress: &mut (dyn FnMut(usize, Option<f64>) + Send),
) -> anyhow::Result<Trained> {
    anyhow::ensure!(
        n_features > 0 && x.len() == y.len() * n_features,
        "x holds {} values, not {} rows x {n_features}",
        x.len(),
        y.len()
    );
    anyhow::ensure!(y.iter().all(|v| v.is_finite()), "targets must be finite (drop unlabelled rows first)");
    if let Some(w) = weights {
        check_weights(w, y.len())?;
    }
    let n = y.len();
    let n_valid = if p.early_stopping_rounds > 0 { (n as f64 * p.validation_fraction) as usize } else { 0 };
    let n_train = n - n_valid;
    anyhow::ensure!(n_train >= 2, "need at least 2 training rows, got {n_train}");
    let pool = rayon::ThreadPoolBuilder::new().num_threads(p.threads).build()?;
    pool.install(|| {
        let first = Booster::new(x, n_features, y, weights, n_train, p).run(progress);
        if n_valid == 0 || !p.refit {
            return Ok(first);
        }
        let again = TrainParams { n_trees: first.trees.len(), early_stopping_rounds: 0, ..p.clone() };
        let mut full = Booster::new(x, n_features, y, weights, n, &again).run(progress);
        full.validation_metric = first.validation_metric;
        full.seconds += first.seconds;
        Ok(full)
    })
}

/// Sample weights must match the rows and be finite and positive; the
/// error names the first bad one so the caller can find where it came from.
fn check_weights(w: &[f32], rows: usize) -> anyhow::Result<()> {
    anyhow::ensure!(w.len() == rows, "{} sample weights for {rows} rows: give one weight per row", w.len());
    if let Some((i, v)) = w.iter().enumerate().find(|(_, v)| !(v.is_finite() && **v > 0.0)) {
        anyhow::bail!("sample weight of row {i} is {v}: weights must be finite and greater than 0");
    }
    Ok(())
}

struct Booster<'a> {
    p: &'a TrainParams,
    nf: usize,
    y: &'a [f32],
    /// Sample weights of all rows (training and validation), if any.
    w: Option<&'a [f32]>,
    n_train: usize,
    cuts: Cuts,
    bins: Vec<u8>,
    /// `bins` transposed (feature-major), for partitioning rows.
    columns: Vec<u8>,
    pred: Vec<f32>,
    start: Instant,
}

impl<'a> Booster<'a> {
    fn new(x: &'a [f32], nf: usize, y: &'a [f32], w: Option<&'a [f32]>, n_train: usize, p: &'a TrainParams) -> Self {
        let start = Instant::now();
        let cuts = Cuts::fit(&x[..n_train * nf], nf, p.max_bins, 200_000);
        let bins = cuts.bin_matrix(x, nf);
        let n = y.len();
        let mut columns = vec![0u8; bins.len()];
        columns.par_chunks_mut(n).enumerate().for_each(|(f, col)| {
            for (r, c) in col.iter_mut().enumerate() {
                *c = bins[r * nf + f];
            }
        });
        Booster { p, nf, y, w, n_train, cuts, bins, columns, pred: vec![], start }
    }

    fn base_score(&self) -> f32 {
        let yt = &self.y[..self.n_train];
        let Some(w) = self.w.map(|w| &w[..self.n_train]) else {
            return match self.p.loss {
                Loss::Squared => (yt.iter().map(|&v| v as f64).sum::<f64>() / yt.len() as f64) as f32,
                Loss::Absolute => median(&mut yt.to_vec()),
            };
        };
        // with unit weights both sums are exact, so this equals the above
        match self.p.loss {
            Loss::Squared => {
                let wy = yt.iter().zip(w).map(|(&v, &w)| w as f64 * v as f64).sum::<f64>();
                (wy / w.iter().map(|&w| w as f64).sum::<f64>()) as f32
            }
            Loss::Absolute => weighted_median(&mut yt.iter().copied().zip(w.iter().copied()).collect::<Vec<_>>()),
        }
    }

    fn run(mut self, progress: &mut (dyn FnMut(usize, Option<f64>) + Send)) -> Trained {
        let p = self.p;
        let n = self.y.len();
        let base = self.base_score();
        self.pred = vec![base; n];
        let gp = GrowParams {
            max_depth: p.max_depth,
            min_child_weight: p.min_child_weight,
            lambda: p.lambda,
            min_split_gain: 1e-12,
        };
        let mut rng = SplitMix(p.seed);
        let mut gh = vec![[0f32; 2]; self.n_train];
        let mut trees: Vec<Tree> = Vec::new();
        let (mut best, mut best_len) = (f64::INFINITY, 0usize);
        for _ in 0..p.n_trees {
            self.gradients(&mut gh);
            let rows: Vec<u32> = if p.subsample < 1.0 {
                (0..self.n_train as u32).filter(|_| rng.unit() < p.subsample).collect()
            } else {
                (0..self.n_train as u32).collect()
            };
            let all_rows = rows.len() == self.n_train;
            let mut g = grow::grow(&self.bins, &self.columns, self.nf, &self.cuts, &gh, rows, &gp);
            if p.loss == Loss::Absolute {
                self.median_leaves(&mut g);
            }
            for v in g.tree.value.iter_mut() {
                *v = (*v as f64 * p.learning_rate) as f32;
            }
            self.update_predictions(&g, all_rows);
            trees.push(g.tree);
            let metric = self.validation_metric();
            if let Some(m) = metric {
                if m < best - 1e-9 {
                    (best, best_len) = (m, trees.len());
                } else if trees.len() - best_len >= p.early_stopping_rounds {
                    progress(trees.len(), metric);
                    break;
                }
            }
            progress(trees.len(), metric);
        }
        let n_valid = n - self.n_train;
        if n_valid > 0 {
            trees.truncate(best_len.max(1));
        }
        Trained {
            trees,
            base_score: base,
            validation_metric: (n_valid > 0).then_some(best),
            train_rows: self.n_train,
            validation_rows: n_valid,
            seconds: self.start.elapsed().as_secs_f64(),
        }
    }

    /// Gradient and hessian of every training row. The unweighted loop is
    /// the hot one and stays free of weights; the weighted loop scales both
    /// by the row's weight (exact for a weight of 1.0).
    fn gradients(&self, gh: &mut [[f32; 2]]) {
        let loss = self.p.loss;
        let (pred, y) = (&self.pred[..self.n_train], &self.y[..self.n_train]);
        match self.w {
            None => gh.par_iter_mut().zip(pred).zip(y).for_each(|((o, &pr), &y)| *o = loss_gh(loss, pr - y)),
            Some(w) => gh.par_iter_mut().zip(pred).zip(y).zip(&w[..self.n_train]).for_each(|(((o, &pr), &y), &w)| {
                let [g, h] = loss_gh(loss, pr - y);
                *o = [g * w, h * w];
            }),
        }
    }

    /// Absolute loss: each leaf's value is the (weighted) median residual of
    /// its rows.
    fn median_leaves(&self, g: &mut GrownTree) {
        let residual = |i: u32| self.y[i as usize] - self.pred[i as usize];
        let vals: Vec<(usize, f32)> = g
            .leaves
            .par_iter()
            .map(|(node, rows)| {
                let v = if rows.is_empty() {
                    0.0
                } else if let Some(w) = self.w {
                    weighted_median(&mut rows.iter().map(|&i| (residual(i), w[i as usize])).collect::<Vec<_>>())
                } else {
                    median(&mut rows.iter().map(|&i| residual(i)).collect::<Vec<_>>())
                };
                (*node, v)
            })
            .collect();
        for (node, v) in vals {
            g.tree.value[node] = v;
        }
    }

    /// Add the new tree's output to every row's prediction. When the tree
    /// was grown on all training rows its leaves already list them; only
    /// the validation rows (or unsampled rows) need a walk down the tree.
    fn update_predictions(&mut self, g: &GrownTree, all_rows: bool) {
        let nf = self.nf;
        let bins = &self.bins;
        let walk_from = if all_rows {
            for (node, rows) in &g.leaves {
                let v = g.tree.value[*node];
                for &r in rows {
                    self.pred[r as usize] += v;
                }
            }
            self.n_train
        } else {
            0
        };
        self.pred[walk_from..].par_iter_mut().enumerate().with_min_len(4096).for_each(|(i, pr)| {
            let i = i + walk_from;
            *pr += g.tree.value[g.leaf_of(&bins[i * nf..i * nf + nf])];
        });
    }

    /// Unweighted even with sample weights (see [`train_weighted`]).
    fn validation_metric(&self) -> Option<f64> {
        let (pv, yv) = (&self.pred[self.n_train..], &self.y[self.n_train..]);
        if pv.is_empty() {
            return None;
        }
        let n = pv.len() as f64;
        Some(match self.p.loss {
            Loss::Absolute => pv.iter().zip(yv).map(|(a, b)| (a - b).abs() as f64).sum::<f64>() / n,
            Loss::Squared => (pv.iter().zip(yv).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>() / n).sqrt(),
        })
    }
}

/// Unweighted gradient and hessian of one row with residual `r` = prediction - target.
#[inline(always)]
fn loss_gh(loss: Loss, r: f32) -> [f32; 2] {
    match loss {
        Loss::Squared => [r, 1.0],
        Loss::Absolute => [
            if r > 0.0 {
                1.0
            } else if r < 0.0 {
                -1.0
            } else {
                0.0
            },
            1.0,
        ],
    }
}

/// Median (lower middle for even counts, like a 0.5 quantile pick).
pub fn median(v: &mut [f32]) -> f32 {
    if v.is_empty() {
        return f32::NAN;
    }
    let mid = (v.len() - 1) / 2;
    let (_, m, _) = v.select_nth_unstable_by(mid, f32::total_cmp);
    *m
}

/// Lower weighted median of (value, weight) pairs, weights > 0: in value
/// order, the first value at which the running weight reaches half the
/// total. With all weights 1 (or any equal weights whose sums are exact)
/// this is [`median`], the lower middle. NaN if empty. Reorders the slice.
///
/// A quickselect on weights rather than a sort: each round partitions around
/// the middle element and keeps the side holding the half-weight point, so
/// the cost stays linear like [`median`]'s.
pub fn weighted_median(values_and_weights: &mut [(f32, f32)]) -> f32 {
    if values_and_weights.is_empty() {
        return f32::NAN;
    }
    let total: f64 = values_and_weights.iter().map(|&(_, w)| w as f64).sum();
    let weight = |s: &[(f32, f32)]| s.iter().map(|&(_, w)| w as f64).sum::<f64>();
    // weight of the values known to lie below `s`; always under half the total
    let mut below = 0.0f64;
    let mut s = values_and_weights;
    loop {
        let mid = (s.len() - 1) / 2;
        let (left, &mut (v, w), right) = s.select_nth_unstable_by(mid, |a, b| a.0.total_cmp(&b.0));
        let left_weight = weight(left);
        // (`left` can only be empty here if weights are not positive)
        if !left.is_empty() && 2.0 * (below + left_weight) >= total {
            s = left;
        } else if 2.0 * (below + left_weight + w as f64) >= total || right.is_empty() {
            // (an empty `right` here is rounding in the sums: `v` is the last value)
            return v;
        } else {
            below += left_weight + w as f64;
            s = right;
        }
    }
}

/// Small, seedable generator for row subsampling (no cryptographic needs).
struct SplitMix(u64);

impl SplitMix {
    fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridcast_core::model::Forest;

    fn data(n: usize) -> (Vec<f32>, Vec<f32>) {
        let mut rng = SplitMix(1);
        let mut x = Vec::new();
        let mut y = Vec::new();
        for _ in 0..n {
            let a = rng.unit() as f32 * 10.0;
            let b = rng.unit() as f32 * 10.0;
            let c = if rng.unit() < 0.1 { f32::NAN } else { rng.unit() as f32 };
            x.extend([a, b, c]);
            y.push(if a > 5.0 { 10.0 } else { 0.0 } + b + if c.is_nan() { 5.0 } else { 0.0 });
        }
        (x, y)
    }

    #[test]
    fn boosting_learns_a_step_and_missing_values() {
        let (x, y) = data(4000);
        for loss in [Loss::Squared, Loss::Absolute] {
            let p = TrainParams { n_trees: 200, learning_rate: 0.2, loss, threads: 2, ..Default::default() };
            let t = train(&x, 3, &y, &p, &mut |_, _| {}).unwrap();
            let f = Forest::compile(&t.trees, t.base_score, 3);
            let mae = (0..4000).map(|i| (f.predict_row(&x[i * 3..i * 3 + 3]) - y[i]).abs()).sum::<f32>() / 4000.0;
            assert!(mae < 0.5, "{loss:?}: MAE {mae}");
            assert!(f.predict_row(&[7.0, 2.0, f32::NAN]) > 15.0, "{loss:?}: missing c not learned");
        }
    }

    #[test]
    fn trained_thresholds_give_same_leaves_as_bins() {
        let (x, y) = data(2000);
        let p = TrainParams { n_trees: 5, early_stopping_rounds: 0, threads: 1, ..Default::default() };
        let cuts = Cuts::fit(&x, 3, 255, 10_000);
        let bins = cuts.bin_matrix(&x, 3);
        let gh: Vec<[f32; 2]> = y.iter().map(|&v| [-v, 1.0]).collect();
        let gp = GrowParams { max_depth: 6, min_child_weight: 1.0, lambda: 1.0, min_split_gain: 1e-12 };
        let columns: Vec<u8> =
            (0..3).flat_map(|f| (0..2000).map(move |r| (f, r))).map(|(f, r)| bins[r * 3 + f]).collect();
        let g = grow::grow(&bins, &columns, 3, &cuts, &gh, (0..2000).collect(), &gp);
        for i in 0..2000 {
            let leaf = g.leaf_of(&bins[i * 3..i * 3 + 3]);
            assert_eq!(g.tree.predict(&x[i * 3..i * 3 + 3]), g.tree.value[leaf], "row {i}");
        }
        let _ = p;
    }

    fn predictions(t: &Trained, x: &[f32], nf: usize) -> Vec<f32> {
        let f = Forest::compile(&t.trees, t.base_score, nf);
        x.chunks_exact(nf).map(|r| f.predict_row(r)).collect()
    }

    #[test]
    fn unit_weights_train_bit_identically_to_no_weights() {
        let (x, y) = data(3000);
        let ones = vec![1.0f32; y.len()];
        for loss in [Loss::Squared, Loss::Absolute] {
            for subsample in [1.0, 0.7] {
                // early stopping and refit on, so the validation tail and both boosters are covered
                let p =
                    TrainParams { n_trees: 40, learning_rate: 0.2, loss, subsample, threads: 2, ..Default::default() };
                let plain = train(&x, 3, &y, &p, &mut |_, _| {}).unwrap();
                let unit = train_weighted(&x, 3, &y, Some(&ones), &p, &mut |_, _| {}).unwrap();
                assert_eq!(plain.base_score.to_bits(), unit.base_score.to_bits(), "{loss:?}");
                assert_eq!(plain.trees, unit.trees, "{loss:?} subsample {subsample}");
                assert_eq!(plain.validation_metric, unit.validation_metric, "{loss:?}");
                let (a, b) = (predictions(&plain, &x, 3), predictions(&unit, &x, 3));
                assert!(a.iter().zip(&b).all(|(a, b)| a.to_bits() == b.to_bits()), "{loss:?}: predictions differ");
            }
        }
    }

    /// 40 of 4000 rows follow another rule (y + 20), told apart only by a
    /// flag. With min_child_weight 100 the unweighted trees may not give
    /// them a leaf of their own; weighted 10, their hessian sum (400) may.
    #[test]
    fn heavily_weighted_rows_are_fitted_better() {
        let mut rng = SplitMix(7);
        let (mut x, mut y, mut w, mut group) = (vec![], vec![], vec![], vec![]);
        for i in 0..4000 {
            let a = rng.unit() as f32 * 10.0;
            let odd = i % 100 == 7;
            x.extend([a, odd as u8 as f32]);
            y.push(a + if odd { 20.0 } else { 0.0 });
            w.push(if odd { 10.0 } else { 1.0 });
            if odd {
                group.push(i);
            }
        }
        let group_mae = |t: &Trained| {
            let pr = predictions(t, &x, 2);
            group.iter().map(|&i| (pr[i] - y[i]).abs()).sum::<f32>() / group.len() as f32
        };
        for loss in [Loss::Squared, Loss::Absolute] {
            let p = TrainParams {
                n_trees: 100,
                learning_rate: 0.3,
                min_child_weight: 100.0,
                early_stopping_rounds: 0,
                loss,
                threads: 2,
                ..Default::default()
            };
            let plain = group_mae(&train(&x, 2, &y, &p, &mut |_, _| {}).unwrap());
            let weighted = group_mae(&train_weighted(&x, 2, &y, Some(&w), &p, &mut |_, _| {}).unwrap());
            assert!(weighted < plain / 5.0, "{loss:?}: group MAE {weighted} weighted, {plain} not");
        }
    }

    #[test]
    fn invalid_weights_are_refused_naming_the_row() {
        let (x, y) = data(100);
        let p = TrainParams { n_trees: 2, threads: 1, ..Default::default() };
        let err = |w: &[f32]| train_weighted(&x, 3, &y, Some(w), &p, &mut |_, _| {}).unwrap_err().to_string();
        assert!(err(&[1.0; 99]).contains("99 sample weights for 100 rows"), "{}", err(&[1.0; 99]));
        for bad in [0.0, -1.0, f32::NAN, f32::INFINITY] {
            let mut w = vec![1.0; 100];
            w[42] = bad;
            let e = err(&w);
            assert!(e.contains("row 42") && e.contains("finite and greater than 0"), "{bad}: {e}");
        }
    }

    #[test]
    fn weighted_median_with_equal_weights_is_the_lower_median() {
        let mut rng = SplitMix(3);
        for n in 1..60 {
            // few distinct values, so ties are common
            let v: Vec<f32> = (0..n).map(|_| (rng.unit() * 8.0).floor() as f32 - 3.0).collect();
            let m = median(&mut v.clone());
            for w in [1.0, 2.5] {
                let mut vw: Vec<(f32, f32)> = v.iter().map(|&v| (v, w)).collect();
                assert_eq!(weighted_median(&mut vw), m, "n {n}, weight {w}: {v:?}");
            }
        }
    }

    #[test]
    fn weighted_median_follows_the_weights() {
        assert!(weighted_median(&mut []).is_nan());
        assert_eq!(weighted_median(&mut [(5.0, 0.5)]), 5.0);
        // lower median of an even split
        assert_eq!(weighted_median(&mut [(2.0, 1.0), (1.0, 1.0)]), 1.0);
        assert_eq!(weighted_median(&mut [(3.0, 10.0), (1.0, 1.0), (2.0, 1.0)]), 3.0);
        // running weight 3 of 6 reaches half at the first value
        assert_eq!(weighted_median(&mut [(4.0, 1.0), (1.0, 3.0), (3.0, 1.0), (2.0, 1.0)]), 1.0);
        assert_eq!(weighted_median(&mut [(4.0, 1.0), (1.0, 2.9), (3.0, 1.0), (2.0, 1.0)]), 2.0);
        // an integer weight k acts as the value repeated k times
        let mut rng = SplitMix(9);
        for n in 1..40 {
            let vw: Vec<(f32, f32)> = (0..n).map(|i| (rng.unit() as f32, (i % 3 + 1) as f32)).collect();
            let mut expanded: Vec<f32> = vw.iter().flat_map(|&(v, k)| std::iter::repeat_n(v, k as usize)).collect();
            assert_eq!(weighted_median(&mut vw.clone()), median(&mut expanded), "n {n}: {vw:?}");
        }
    }
}
