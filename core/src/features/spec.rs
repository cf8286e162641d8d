//! What a model's input rows contain, and what it predicts.
//!
//! A [`FeatureSpec`] is stored in every native model file, so the serving
//! side recomputes exactly the columns the model was trained on, in the same
//! order. Changing what a feature means requires bumping [`FEATURE_VERSION`].

use serde::{Deserialize, Serialize};

/// Version of the feature definitions in this file. A model trained with a
/// different version is rejected at load time.
pub const FEATURE_VERSION: u32 = 1;

/// What the trees are trained to predict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// Total power `horizon` intervals ahead, in W.
    Level,
    /// Total power `horizon` intervals ahead minus the current total. On spiky
    /// household data this (with absolute loss) is what beats persistence:
    /// a tree that predicts "no change" is persistence, so it starts from the
    /// baseline and only learns corrections.
    Change,
}

/// Which features are computed from the per-interval series.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeatureSpec {
    /// Feature definitions version ([`FEATURE_VERSION`] when created).
    pub version: u32,
    /// Length of one interval in seconds (10 or 60 in practice).
    pub interval_secs: u32,
    /// How many intervals ahead the target lies (1 = next interval).
    pub horizon: u32,
    /// Lags of the total power: `total_lag1..=total_lagN`.
    pub total_lags: u32,
    /// Lags of each phase's power: `p_lX_lag1..=p_lX_lagN`.
    pub phase_lags: u32,
    /// Rolling windows (in intervals, current one included) for the mean and
    /// standard deviation of the total power.
    pub windows: Vec<u32>,
    /// Time of day (minutes, sin, cos) and day of week (0 = Monday).
    pub calendar: bool,
    /// Target of the trees.
    pub target: TargetKind,
}

impl Default for FeatureSpec {
    fn default() -> Self {
        FeatureSpec {
            version: FEATURE_VERSION,
            interval_secs: 60,
            horizon: 1,
            total_lags: 15,
            phase_lags: 2,
            windows: vec![5, 15, 60],
            calendar: true,
            target: TargetKind::Change,
        }
    }
}

impl FeatureSpec {
    /// Column names, in the order rows are laid out.
    pub fn names(&self) -> Vec<String> {
        let mut n: Vec<String> = vec!["p_l1".into(), "p_l2".into(), "p_l3".into(), "total".into()];
        for k in 1..=self.total_lags {
            n.push(format!("total_lag{k}"));
        }
        for p in 1..=3 {
            for k in 1..=self.phase_lags {
                n.push(format!("p_l{p}_lag{k}"));
            }
        }
        n.push("total_diff1".into());
        for p in 1..=3 {
            n.push(format!("p_l{p}_diff1"));
        }
        for w in &self.windows {
            n.push(format!("total_mean{w}"));
            n.push(format!("total_std{w}"));
        }
        if self.calendar {
            for c in ["minute_of_day", "tod_sin", "tod_cos", "day_of_week"] {
                n.push(c.into());
            }
        }
        n
    }

    /// Number of features per row.
    pub fn len(&self) -> usize {
        4 + self.total_lags as usize
            + 3 * self.phase_lags as usize
            + 4
            + 2 * self.windows.len()
            + if self.calendar { 4 } else { 0 }
    }

    /// Always false: a row has at least the current phases and total.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// How many past intervals (current included) the state must remember.
    pub fn history_len(&self) -> usize {
        let w = self.windows.iter().copied().max().unwrap_or(1);
        (self.total_lags.max(self.phase_lags) as usize + 1).max(w as usize).max(2)
    }

    /// Check the spec can be computed; says which field is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.version != FEATURE_VERSION {
            return Err(format!(
                "feature spec version {} is not supported (this build computes version {FEATURE_VERSION}); retrain the model",
                self.version
            ));
        }
        if self.interval_secs == 0 {
            return Err("interval_secs must be > 0".into());
        }
        if self.horizon == 0 {
            return Err("horizon must be >= 1 interval".into());
        }
        if self.windows.contains(&0) {
            return Err("rolling windows must be >= 1 interval".into());
        }
        if self.history_len() > 100_000 {
            return Err("lags/windows longer than 100000 intervals".into());
        }
        Ok(())
    }
}
