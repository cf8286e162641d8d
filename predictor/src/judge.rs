//! The misprediction rule: given a prediction and what actually happened,
//! was the model wrong enough that the example is worth keeping for
//! retraining (a *triplet*)?
//!
//! Pure code, fed by values: the predictor loop calls [`Judge::judge`] once
//! per (sensor, interval) and persists the [`JudgeState`] with the sensor.
//!
//! The prototype compared `predicted == actual`, which flags every
//! prediction of a continuous quantity (floats never match). Every rule here
//! is a threshold on the error's size instead.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// How a prediction is judged. Part of the predictor config (`[judge]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case", deny_unknown_fields)]
pub enum Rule {
    /// Mispredicted when `|predicted - actual| > threshold_w`.
    Absolute {
        /// Largest acceptable error, in W.
        threshold_w: f64,
    },
    /// Mispredicted when `|predicted - actual| > threshold * max(|actual|, floor_w)`.
    Relative {
        /// Largest acceptable error as a fraction of the actual value (0.2 = 20 %).
        threshold: f64,
        /// Below this actual power (W) the error is compared with `floor_w`
        /// instead, so a near-zero load does not make every error "infinite".
        #[serde(default = "default_floor_w")]
        floor_w: f64,
    },
    /// Mispredicted when the error is beyond `mean + k * std` of the sensor's
    /// last `window` absolute errors (the outlier test of the Sparks-Edge
    /// paper). Nothing is flagged during the first `warmup` judgements.
    Adaptive {
        /// How many standard deviations above the mean counts as an outlier.
        k: f64,
        /// How many recent errors the mean and std are taken over.
        window: usize,
        /// Judgements before the first flag (at least 2 are needed for a std).
        warmup: usize,
    },
}

fn default_floor_w() -> f64 {
    50.0
}

impl Default for Rule {
    fn default() -> Self {
        Rule::Adaptive { k: 3.0, window: 120, warmup: 30 }
    }
}

impl Rule {
    /// Values that parse but cannot work.
    pub fn validate(&self) -> Result<(), String> {
        let ok = match self {
            Rule::Absolute { threshold_w } => threshold_w.is_finite() && *threshold_w >= 0.0,
            Rule::Relative { threshold, floor_w } => {
                threshold.is_finite() && *threshold >= 0.0 && floor_w.is_finite() && *floor_w >= 0.0
            }
            Rule::Adaptive { k, window, warmup } => k.is_finite() && *k >= 0.0 && *window >= 2 && *warmup >= 2,
        };
        if ok {
            Ok(())
        } else {
            Err(format!("{self:?}: thresholds must be finite and >= 0; adaptive needs window >= 2 and warmup >= 2"))
        }
    }

    /// Short name for logs and metrics labels.
    pub fn name(&self) -> &'static str {
        match self {
            Rule::Absolute { .. } => "absolute",
            Rule::Relative { .. } => "relative",
            Rule::Adaptive { .. } => "adaptive",
        }
    }
}

/// A sensor's recent absolute errors (only the adaptive rule uses them).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JudgeState {
    recent: VecDeque<f64>,
    judged: u64,
}

/// The outcome of one judgement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    /// `predicted - actual`, in W.
    pub error: f64,
    pub mispredicted: bool,
    /// The error size the verdict was compared with, in W (for logs).
    pub limit_w: f64,
}

/// Applies a [`Rule`].
#[derive(Debug, Clone)]
pub struct Judge {
    rule: Rule,
}

impl Judge {
    pub fn new(rule: Rule) -> Judge {
        Judge { rule }
    }

    pub fn rule(&self) -> &Rule {
        &self.rule
    }

    /// Judge one prediction and remember its error in `state`. A non-finite
    /// prediction is always a misprediction (the model produced garbage).
    pub fn judge(&self, state: &mut JudgeState, predicted: f64, actual: f64) -> Verdict {
        let error = predicted - actual;
        let abs = error.abs();
        let (mispredicted, limit_w) = match &self.rule {
            Rule::Absolute { threshold_w } => (abs > *threshold_w, *threshold_w),
            Rule::Relative { threshold, floor_w } => {
                let limit = threshold * actual.abs().max(*floor_w);
                (abs > limit, limit)
            }
            Rule::Adaptive { k, window, warmup } => {
                let verdict = if (state.judged as usize) < *warmup || state.recent.len() < 2 {
                    (false, f64::INFINITY)
                } else {
                    let n = state.recent.len() as f64;
                    let mean = state.recent.iter().sum::<f64>() / n;
                    let var = state.recent.iter().map(|e| (e - mean) * (e - mean)).sum::<f64>() / n;
                    let limit = mean + k * var.sqrt();
                    (abs > limit, limit)
                };
                if abs.is_finite() {
                    if state.recent.len() == *window {
                        state.recent.pop_front();
                    }
                    state.recent.push_back(abs);
                }
                verdict
            }
        };
        state.judged += 1;
        Verdict { error, mispredicted: mispredicted || !error.is_finite(), limit_w }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_rule_flags_only_errors_beyond_the_threshold() {
        let judge = Judge::new(Rule::Absolute { threshold_w: 100.0 });
        let mut s = JudgeState::default();
        assert!(!judge.judge(&mut s, 1000.0, 1000.0).mispredicted);
        assert!(!judge.judge(&mut s, 1099.9, 1000.0).mispredicted);
        assert!(judge.judge(&mut s, 1100.1, 1000.0).mispredicted);
        assert!(judge.judge(&mut s, 800.0, 1000.0).mispredicted);
        assert_eq!(judge.judge(&mut s, 800.0, 1000.0).error, -200.0);
    }

    #[test]
    fn a_close_float_is_not_a_misprediction_unlike_the_prototypes_equality_test() {
        // The prototype flagged `predicted != actual`: this pair would be a triplet.
        let (predicted, actual) = (1000.0001_f64, 1000.0_f64);
        assert_ne!(predicted, actual);
        for rule in [Rule::Absolute { threshold_w: 1.0 }, Rule::Relative { threshold: 0.01, floor_w: 50.0 }] {
            assert!(!Judge::new(rule).judge(&mut JudgeState::default(), predicted, actual).mispredicted);
        }
    }

    #[test]
    fn relative_rule_scales_with_the_load_and_has_a_floor() {
        let judge = Judge::new(Rule::Relative { threshold: 0.1, floor_w: 50.0 });
        let mut s = JudgeState::default();
        assert!(!judge.judge(&mut s, 2150.0, 2000.0).mispredicted); // 7.5 %
        assert!(judge.judge(&mut s, 2250.0, 2000.0).mispredicted); // 12.5 %
        // Near zero: 4 W off on 1 W is 400 %, but within 10 % of the 50 W floor.
        assert!(!judge.judge(&mut s, 5.0, 1.0).mispredicted);
        assert!(judge.judge(&mut s, 7.0, 1.0).mispredicted);
    }

    #[test]
    fn adaptive_rule_waits_for_warmup_then_flags_outliers() {
        let judge = Judge::new(Rule::Adaptive { k: 3.0, window: 50, warmup: 10 });
        let mut s = JudgeState::default();
        // Huge error during warm-up: not flagged.
        assert!(!judge.judge(&mut s, 5000.0, 0.0).mispredicted);
        for i in 0..30 {
            let e = 90.0 + (i % 5) as f64 * 5.0; // 90..110 W
            assert!(!judge.judge(&mut s, 1000.0 + e, 1000.0).mispredicted, "error {e} at {i}");
        }
        // The warm-up outlier (5000 W) is still in the window; push it out.
        for _ in 0..30 {
            judge.judge(&mut s, 1100.0, 1000.0);
        }
        let v = judge.judge(&mut s, 2000.0, 1000.0);
        assert!(v.mispredicted, "{v:?}");
        assert!(v.limit_w < 1000.0);
    }

    #[test]
    fn adaptive_rule_keeps_only_the_last_window_errors() {
        let judge = Judge::new(Rule::Adaptive { k: 1.0, window: 3, warmup: 2 });
        let mut s = JudgeState::default();
        for e in [1.0, 2.0, 3.0, 4.0, 5.0] {
            judge.judge(&mut s, e, 0.0);
        }
        assert_eq!(s.recent.iter().copied().collect::<Vec<_>>(), vec![3.0, 4.0, 5.0]);
    }

    #[test]
    fn non_finite_prediction_is_always_mispredicted() {
        let judge = Judge::new(Rule::Absolute { threshold_w: 1e9 });
        assert!(judge.judge(&mut JudgeState::default(), f64::NAN, 1.0).mispredicted);
    }

    #[test]
    fn rules_parse_from_toml_and_validate() {
        let rule: Rule = toml::from_str("rule = \"relative\"\nthreshold = 0.2\n").unwrap();
        assert_eq!(rule, Rule::Relative { threshold: 0.2, floor_w: 50.0 });
        assert!(Rule::Adaptive { k: 3.0, window: 1, warmup: 5 }.validate().is_err());
        assert!(Rule::Absolute { threshold_w: -1.0 }.validate().is_err());
        assert!(Rule::default().validate().is_ok());
    }
}
