//! Batch features for training and backtests: every interval of a series run
//! through [`FeatureState`], plus the target each row is trained on.

use super::spec::{FeatureSpec, TargetKind};
use super::state::{FeatureError, FeatureState, Interval};

/// Feature rows of a whole series, row-major, with targets.
#[derive(Debug, Clone)]
pub struct FeatureTable {
    pub names: Vec<String>,
    /// `rows() x names.len()` values, row-major; NaN = missing.
    pub values: Vec<f32>,
    /// Start of each row's interval, Unix seconds.
    pub ts: Vec<i64>,
    /// Total power of each row's interval (persistence forecast), W.
    pub current_total: Vec<f32>,
    /// Total power `horizon` intervals later (NaN if that interval is missing).
    pub next_total: Vec<f32>,
    /// What the trees learn: `next_total` or `next_total - current_total`.
    pub target: Vec<f32>,
}

impl FeatureTable {
    /// Compute features and targets for a time-ordered series.
    pub fn build(spec: &FeatureSpec, series: &[Interval]) -> Result<Self, FeatureError> {
        let mut state = FeatureState::new(spec.clone())?;
        let width = spec.len();
        let n = series.len();
        let mut values = vec![0f32; n * width];
        for (iv, out) in series.iter().zip(values.chunks_exact_mut(width)) {
            state.push_into(iv, out)?;
        }
        let slots: Vec<i64> = series.iter().map(|iv| state.slot(iv.ts)).collect();
        let totals: Vec<f32> = series.iter().map(Interval::total).collect();
        let mut next_total = vec![f32::NAN; n];
        let mut j = 0;
        for i in 0..n {
            let want = slots[i] + spec.horizon as i64;
            while j < n && slots[j] < want {
                j += 1;
            }
            if j < n && slots[j] == want {
                next_total[i] = totals[j];
            }
        }
        let target = match spec.target {
            TargetKind::Level => next_total.clone(),
            TargetKind::Change => next_total.iter().zip(&totals).map(|(n, c)| n - c).collect(),
        };
        Ok(FeatureTable {
            names: spec.names(),
            values,
            ts: series.iter().map(|iv| iv.ts).collect(),
            current_total: totals,
            next_total,
            target,
        })
    }

    pub fn rows(&self) -> usize {
        self.ts.len()
    }

    pub fn width(&self) -> usize {
        self.names.len()
    }

    pub fn row(&self, i: usize) -> &[f32] {
        let w = self.width();
        &self.values[i * w..(i + 1) * w]
    }

    /// Indices of rows whose target is known (what can be trained/scored on).
    pub fn labelled_rows(&self) -> Vec<usize> {
        (0..self.rows()).filter(|&i| !self.target[i].is_nan()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series() -> Vec<Interval> {
        let mut s = Vec::new();
        for i in 0..300i64 {
            if (100..104).contains(&i) || i == 200 {
                continue; // gaps
            }
            let x = i as f32;
            let p2 = if i % 50 == 7 { f32::NAN } else { 100.0 + (x * 0.3).cos() * 40.0 };
            s.push(Interval { ts: 1_167_609_600 + i * 60, p: [(x * 0.1).sin() * 500.0 + 600.0, p2, 1000.0 + x] });
        }
        s
    }

    #[test]
    fn batch_and_streaming_rows_are_identical() {
        let spec = FeatureSpec::default();
        let s = series();
        let table = FeatureTable::build(&spec, &s).unwrap();
        let mut state = FeatureState::new(spec.clone()).unwrap();
        for (i, iv) in s.iter().enumerate() {
            let row = state.push(iv).unwrap();
            let batch = table.row(i);
            for (a, b) in row.iter().zip(batch) {
                assert!(a.to_bits() == b.to_bits(), "row {i}: streaming {a} vs batch {b}");
            }
        }
    }

    #[test]
    fn names_match_row_width() {
        let spec = FeatureSpec { phase_lags: 3, windows: vec![3, 10], calendar: false, ..Default::default() };
        assert_eq!(spec.names().len(), spec.len());
        assert_eq!(FeatureSpec::default().names().len(), FeatureSpec::default().len());
    }

    #[test]
    fn gap_makes_lags_missing_not_shifted() {
        let spec = FeatureSpec::default();
        let s = series();
        let table = FeatureTable::build(&spec, &s).unwrap();
        let lag1 = table.names.iter().position(|n| n == "total_lag1").unwrap();
        let after_gap = s.iter().position(|iv| iv.ts == 1_167_609_600 + 104 * 60).unwrap();
        assert!(table.row(after_gap)[lag1].is_nan());
        // the row before the gap has no target: its next interval is missing
        assert!(table.target[after_gap - 1].is_nan());
        assert!(!table.target[after_gap].is_nan());
    }

    #[test]
    fn single_phase_meter_total_is_l1() {
        let iv = Interval { ts: 0, p: [230.0, f32::NAN, f32::NAN] };
        assert_eq!(iv.total(), 230.0);
        let mut st = FeatureState::new(FeatureSpec::default()).unwrap();
        let row = st.push(&iv).unwrap();
        assert_eq!(row[3], 230.0);
    }

    #[test]
    fn out_of_order_interval_is_refused() {
        let mut st = FeatureState::new(FeatureSpec::default()).unwrap();
        st.push(&Interval { ts: 120, p: [1.0; 3] }).unwrap();
        assert!(matches!(st.push(&Interval { ts: 60, p: [1.0; 3] }), Err(FeatureError::OutOfOrder { .. })));
    }

    #[test]
    fn change_target_is_next_minus_current() {
        let spec = FeatureSpec::default();
        let s = series();
        let t = FeatureTable::build(&spec, &s).unwrap();
        assert_eq!(t.target[0], s[1].total() - s[0].total());
    }
}
