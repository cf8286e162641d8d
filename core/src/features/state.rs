//! Streaming feature computation: one interval in, one feature row out.
//!
//! This is the only place features are computed. Training's batch form
//! ([`super::FeatureTable`]) feeds its intervals through a `FeatureState` one
//! at a time, so training and serving cannot drift apart.
//!
//! Gaps: intervals are placed on a grid of `interval_secs`. A missing interval
//! is remembered as NaN (missing), so `total_lag1` always means "one interval
//! ago", never "the previous row". Trees route NaN by a learned default side.

use std::collections::VecDeque;

use super::spec::FeatureSpec;

/// One interval's average power per phase, in W. A phase that the meter does
/// not have (single-phase meter) or did not report is `f32::NAN`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    /// Start of the interval, Unix seconds (UTC).
    pub ts: i64,
    /// Power of L1, L2, L3 in W; NaN = missing.
    pub p: [f32; 3],
}

impl Interval {
    /// Sum of the phases that are present; NaN if none is.
    pub fn total(&self) -> f32 {
        self.p.iter().filter(|v| !v.is_nan()).fold(f32::NAN, |acc, &v| if acc.is_nan() { v } else { acc + v })
    }
}

/// Why an interval was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeatureError {
    #[error("interval at {ts} is not after the previous one at {prev}: intervals must arrive in time order")]
    OutOfOrder { ts: i64, prev: i64 },
    #[error("invalid feature spec: {0}")]
    Spec(String),
}

/// Remembers the recent past of one meter and turns each new interval into a
/// feature row laid out as [`FeatureSpec::names`].
#[derive(Debug, Clone)]
pub struct FeatureState {
    spec: FeatureSpec,
    /// Most recent last: `[p_l1, p_l2, p_l3, total]` per interval slot.
    hist: VecDeque<[f32; 4]>,
    cap: usize,
    last_slot: Option<i64>,
}

impl FeatureState {
    pub fn new(spec: FeatureSpec) -> Result<Self, FeatureError> {
        spec.validate().map_err(FeatureError::Spec)?;
        let cap = spec.history_len();
        Ok(FeatureState { spec, hist: VecDeque::with_capacity(cap + 1), cap, last_slot: None })
    }

    pub fn spec(&self) -> &FeatureSpec {
        &self.spec
    }

    /// Grid slot of a timestamp (interval index since the epoch).
    pub fn slot(&self, ts: i64) -> i64 {
        ts.div_euclid(self.spec.interval_secs as i64)
    }

    /// Take the next interval and return its feature row.
    pub fn push(&mut self, iv: &Interval) -> Result<Vec<f32>, FeatureError> {
        let mut row = vec![0.0; self.spec.len()];
        self.push_into(iv, &mut row)?;
        Ok(row)
    }

    /// Like [`push`](Self::push) without allocating; `out.len()` must be
    /// `spec.len()`.
    pub fn push_into(&mut self, iv: &Interval, out: &mut [f32]) -> Result<(), FeatureError> {
        assert_eq!(out.len(), self.spec.len(), "feature row buffer has the wrong length");
        let slot = self.slot(iv.ts);
        if let Some(prev) = self.last_slot {
            if slot <= prev {
                return Err(FeatureError::OutOfOrder { ts: iv.ts, prev: prev * self.spec.interval_secs as i64 });
            }
            let missing = ((slot - prev - 1) as usize).min(self.cap);
            for _ in 0..missing {
                self.remember([f32::NAN; 4]);
            }
        }
        self.last_slot = Some(slot);
        self.remember([iv.p[0], iv.p[1], iv.p[2], iv.total()]);
        self.write_row(iv.ts, out);
        Ok(())
    }

    fn remember(&mut self, v: [f32; 4]) {
        if self.hist.len() == self.cap {
            self.hist.pop_front();
        }
        self.hist.push_back(v);
    }

    /// Value `k` intervals ago (0 = current); NaN before the history starts.
    fn ago(&self, k: usize, col: usize) -> f32 {
        let n = self.hist.len();
        if k < n { self.hist[n - 1 - k][col] } else { f32::NAN }
    }

    fn write_row(&self, ts: i64, out: &mut [f32]) {
        let s = &self.spec;
        let mut i = 0;
        let mut put = |v: f32| {
            out[i] = v;
            i += 1;
        };
        for col in 0..4 {
            put(self.ago(0, col));
        }
        for k in 1..=s.total_lags as usize {
            put(self.ago(k, 3));
        }
        for col in 0..3 {
            for k in 1..=s.phase_lags as usize {
                put(self.ago(k, col));
            }
        }
        for col in [3, 0, 1, 2] {
            put(self.ago(0, col) - self.ago(1, col));
        }
        for &w in &s.windows {
            let (mean, std) = self.rolling_total(w as usize);
            put(mean);
            put(std);
        }
        if s.calendar {
            let minute = ts.rem_euclid(86_400) as f32 / 60.0;
            let angle = minute / 1440.0 * std::f32::consts::TAU;
            // 1970-01-01 was a Thursday: day 0 + 3 = Monday-based index 3.
            let dow = (ts.div_euclid(86_400) + 3).rem_euclid(7) as f32;
            put(minute);
            put(angle.sin());
            put(angle.cos());
            put(dow);
        }
    }

    /// Mean and population standard deviation of the total over the last `w`
    /// intervals, ignoring missing ones; NaN when all are missing.
    fn rolling_total(&self, w: usize) -> (f32, f32) {
        let (mut n, mut sum, mut sq) = (0u32, 0f64, 0f64);
        for k in 0..w {
            let v = self.ago(k, 3);
            if !v.is_nan() {
                n += 1;
                sum += v as f64;
                sq += (v as f64) * (v as f64);
            }
        }
        if n == 0 {
            return (f32::NAN, f32::NAN);
        }
        let mean = sum / n as f64;
        let var = (sq / n as f64 - mean * mean).max(0.0);
        (mean as f32, var.sqrt() as f32)
    }
}
