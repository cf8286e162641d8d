//! Quantile binning: each feature's values become one byte, so histograms
//! are small arrays indexed by bin and split search scans at most 255 bins.
//!
//! A split "bin <= b goes left" is the same as "x < cuts[b] goes left" on the
//! raw value (bin(x) = number of cuts <= x), which is XGBoost's comparison,
//! so trained trees carry float thresholds the evaluator understands.

use rayon::prelude::*;

/// Bin of a missing (NaN) value.
pub const MISSING_BIN: u8 = 255;
/// Most value bins per feature (bins 0..=254; 255 is missing).
pub const MAX_BINS: usize = 255;

/// Cut points per feature, ascending.
#[derive(Debug, Clone)]
pub struct Cuts {
    pub cuts: Vec<Vec<f32>>,
}

impl Cuts {
    /// Quantile cuts from (a sample of) the training rows.
    pub fn fit(x: &[f32], n_features: usize, max_bins: usize, sample_rows: usize) -> Cuts {
        let max_bins = max_bins.clamp(2, MAX_BINS);
        let n = x.len() / n_features.max(1);
        let stride = (n / sample_rows.max(1)).max(1);
        let cuts = (0..n_features)
            .into_par_iter()
            .map(|f| {
                let mut v: Vec<f32> =
                    (0..n).step_by(stride).map(|r| x[r * n_features + f]).filter(|v| !v.is_nan()).collect();
                v.sort_unstable_by(f32::total_cmp);
                let mut distinct = v.clone();
                distinct.dedup();
                if distinct.len() <= max_bins {
                    return distinct.into_iter().skip(1).collect();
                }
                let mut c: Vec<f32> = (1..max_bins).map(|i| v[i * v.len() / max_bins]).collect();
                c.dedup();
                c.retain(|&cut| cut > v[0]);
                c
            })
            .collect();
        Cuts { cuts }
    }

    #[inline]
    pub fn bin(&self, f: usize, v: f32) -> u8 {
        if v.is_nan() { MISSING_BIN } else { self.cuts[f].partition_point(|&c| c <= v) as u8 }
    }

    /// Row-major bins of a row-major matrix.
    pub fn bin_matrix(&self, x: &[f32], n_features: usize) -> Vec<u8> {
        let mut out = vec![0u8; x.len()];
        out.par_chunks_mut(n_features * 1024).zip(x.par_chunks(n_features * 1024)).for_each(|(o, xs)| {
            for (i, (b, &v)) in o.iter_mut().zip(xs).enumerate() {
                *b = self.bin(i % n_features, v);
            }
        });
        out
    }

    /// The raw-value threshold equivalent to "bin <= b goes left".
    pub fn threshold(&self, f: usize, b: u8) -> f32 {
        self.cuts[f][b as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bin_split_equals_threshold_split() {
        let x: Vec<f32> = (0..1000).map(|i| ((i * 37) % 101) as f32 * 0.5).collect();
        let cuts = Cuts::fit(&x, 1, 16, 10_000);
        for b in 0..cuts.cuts[0].len() as u8 {
            let t = cuts.threshold(0, b);
            for &v in &x {
                assert_eq!(cuts.bin(0, v) <= b, v < t, "v {v} b {b} t {t}");
            }
        }
        assert_eq!(cuts.bin(0, f32::NAN), MISSING_BIN);
    }
}
