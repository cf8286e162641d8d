//! One sensor's forecasting state machine: closed interval in, outcome out.
//!
//! For every closed interval, in order: judge the prediction that targeted
//! it (if any), feed it to the features, predict the interval `horizon`
//! ahead, and remember it. No I/O, no clock: the consumer in `run.rs`
//! persists [`SensorState`] in the spool, in the same transaction as the
//! triplets it produced and the batch behind them, and a restart rebuilds
//! the feature state by replaying the stored history.
//!
//! An interval at or before the last one seen is ignored: judging one twice
//! would duplicate a triplet. (The one-transaction spool already keeps a
//! redelivery from closing an interval twice; this is the second line.)
//!
//! The feature state runs the model's row layout's spec; the model's row is
//! the columns its layout picks (all of them for a model gridcast trained,
//! the mapped ones in the model's order for an imported model).

use std::collections::VecDeque;

use gridcast_core::features::{FeatureState, Interval};
use serde::{Deserialize, Serialize};

use crate::judge::{Judge, JudgeState, Verdict};
use crate::model_source::LoadedModel;
use crate::triplet::Triplet;

/// A prediction waiting for its interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    pub target_start_ms: i64,
    pub features_start_ms: i64,
    pub predicted: f64,
    pub features: Vec<Option<f32>>,
    pub model_version: String,
    /// The persistence forecast made at the same time (the total of the
    /// features interval): what the model's error is compared with.
    #[serde(default)]
    pub persistence: Option<f64>,
}

/// What a sensor must remember across restarts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SensorState {
    /// Recent intervals (start in Unix s, phase powers), oldest first.
    pub history: VecDeque<(i64, [Option<f32>; 3])>,
    pub pending: VecDeque<Pending>,
    pub judge: JudgeState,
    /// Start of the newest interval processed, Unix ms.
    pub last_interval_ms: Option<i64>,
}

/// One judged prediction.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    pub pending: Pending,
    pub actual: f64,
    pub verdict: Verdict,
}

/// What one interval produced.
#[derive(Debug, Default)]
pub struct Step {
    pub judged: Vec<Judged>,
    /// Predictions whose target interval was skipped (a gap in the data).
    pub dropped: u64,
    pub predicted: bool,
}

/// A sensor's live state: the persisted part plus the feature state.
pub struct Forecaster {
    pub state: SensorState,
    features: FeatureState,
    history_cap: usize,
}

fn to_opt(v: f32) -> Option<f32> {
    if v.is_nan() { None } else { Some(v) }
}

impl Forecaster {
    /// Rebuild from a stored state for `model` (replays the history).
    pub fn new(state: SensorState, model: &LoadedModel) -> Forecaster {
        let spec = model.layout.spec.clone();
        let features = FeatureState::new(spec.clone()).expect("validated models have a valid feature spec");
        let mut f = Forecaster { state, features, history_cap: spec.history_len() + 1 };
        f.replay();
        f
    }

    /// A new model (maybe a different feature spec): rebuild the features.
    pub fn swap_model(&mut self, model: &LoadedModel) {
        let state = std::mem::take(&mut self.state);
        *self = Forecaster::new(state, model);
    }

    fn replay(&mut self) {
        for (ts, p) in self.state.history.clone() {
            let iv = Interval { ts, p: p.map(|v| v.unwrap_or(f32::NAN)) };
            let _ = self.features.push(&iv);
        }
    }

    /// Process one closed interval. `None` when it was seen before.
    pub fn step(&mut self, iv: &Interval, model: &LoadedModel, judge: &Judge) -> Option<Step> {
        let ts_ms = iv.ts * 1000;
        if self.state.last_interval_ms.is_some_and(|last| ts_ms <= last) {
            return None;
        }
        if self.features.spec() != &model.layout.spec {
            // A model computed from another spec (a swap between two imported
            // models looks the same by their empty feature specs).
            self.swap_model(model);
        }
        let mut step = Step::default();
        let actual = iv.total() as f64;
        while let Some(p) = self.state.pending.front() {
            if p.target_start_ms > ts_ms {
                break;
            }
            let p = self.state.pending.pop_front().expect("front exists");
            if p.target_start_ms < ts_ms || actual.is_nan() {
                step.dropped += 1;
                continue;
            }
            let verdict = judge.judge(&mut self.state.judge, p.predicted, actual);
            step.judged.push(Judged { pending: p, actual, verdict });
        }
        let row = match self.features.push(iv) {
            Ok(row) => model.layout.model_row(row),
            Err(_) => return Some(step), // cannot happen: ordering is checked above
        };
        self.state.last_interval_ms = Some(ts_ms);
        self.state.history.push_back((iv.ts, iv.p.map(to_opt)));
        while self.state.history.len() > self.history_cap {
            self.state.history.pop_front();
        }
        let spec = self.features.spec();
        let predicted = model.model.predict_level(&row) as f64;
        if predicted.is_finite() {
            let width_ms = spec.interval_secs as i64 * 1000;
            self.state.pending.push_back(Pending {
                target_start_ms: ts_ms + spec.horizon as i64 * width_ms,
                features_start_ms: ts_ms,
                predicted,
                features: row.into_iter().map(to_opt).collect(),
                model_version: model.version.clone(),
                persistence: Some(iv.total() as f64).filter(|v| v.is_finite()),
            });
            step.predicted = true;
        }
        Some(step)
    }

    /// The triplet of a mispredicted judgement (its `seq` is set by the spool).
    pub fn triplet(sensor: &str, j: &Judged, model: &LoadedModel, width_ms: i64, rule: &str) -> Triplet {
        let horizon = ((j.pending.target_start_ms - j.pending.features_start_ms) / width_ms.max(1)) as u32;
        Triplet {
            seq: 0,
            sensor: sensor.to_string(),
            model_version: j.pending.model_version.clone(),
            feature_names: model.model.meta.feature_names.clone(),
            features: j.pending.features.clone(),
            predicted: j.pending.predicted,
            actual: j.actual,
            error: j.verdict.error,
            features_start_ms: j.pending.features_start_ms,
            interval_start_ms: j.pending.target_start_ms,
            interval_end_ms: j.pending.target_start_ms + width_ms,
            horizon,
            rule: rule.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::Rule;

    fn model() -> LoadedModel {
        let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../models/default.gcm")).unwrap();
        crate::model_source::load_model(&bytes, 60).unwrap()
    }

    fn iv(minute: i64, w: f32) -> Interval {
        Interval { ts: 1_763_683_200 + minute * 60, p: [w, w, w] }
    }

    #[test]
    fn each_interval_judges_the_prediction_made_for_it_and_predicts_the_next() {
        let (m, judge) = (model(), Judge::new(Rule::Absolute { threshold_w: 100.0 }));
        let mut f = Forecaster::new(SensorState::default(), &m);
        let s = f.step(&iv(0, 300.0), &m, &judge).unwrap();
        assert!(s.judged.is_empty() && s.predicted);
        let s = f.step(&iv(1, 1000.0), &m, &judge).unwrap();
        assert_eq!(s.judged.len(), 1);
        let j = &s.judged[0];
        assert_eq!(j.actual, 3000.0);
        assert_eq!(j.pending.target_start_ms, iv(1, 0.0).ts * 1000);
        assert!(j.verdict.mispredicted, "a jump from 900 W to 3000 W is not predictable: {j:?}");
        let t = Forecaster::triplet("s1", j, &m, 60_000, "absolute");
        assert_eq!((t.horizon, t.interval_end_ms - t.interval_start_ms), (1, 60_000));
        assert_eq!(t.features.len(), t.feature_names.len());
    }

    /// The shipped model's trees under a 10 s feature spec: a stand-in for a
    /// model trained on 10 s intervals (same feature list).
    fn ten_second_model() -> LoadedModel {
        let shipped = model().model;
        let mut meta = shipped.meta.clone();
        meta.feature_spec.as_mut().unwrap().interval_secs = 10;
        let bytes = gridcast_core::model::Model::new(meta, shipped.trees().to_vec()).unwrap().to_bytes();
        crate::model_source::load_model(&bytes, 10).unwrap()
    }

    #[test]
    fn ten_second_intervals_predict_and_judge_ten_seconds_ahead() {
        let (m, judge) = (ten_second_model(), Judge::new(Rule::Absolute { threshold_w: 1.0 }));
        let mut f = Forecaster::new(SensorState::default(), &m);
        let at = |i: i64, w: f32| Interval { ts: 1_763_683_200 + i * 10, p: [w, w, w] };
        for i in 0..6 {
            let s = f.step(&at(i, 300.0 + i as f32), &m, &judge).unwrap();
            assert!(s.predicted);
            assert_eq!(f.state.pending.back().unwrap().target_start_ms, (at(i, 0.0).ts + 10) * 1000);
            if i > 0 {
                assert_eq!((s.judged.len(), s.dropped), (1, 0), "interval {i}");
                let t = Forecaster::triplet("s", &s.judged[0], &m, 10_000, "absolute");
                assert_eq!((t.horizon, t.interval_end_ms - t.interval_start_ms), (1, 10_000));
                assert_eq!(t.interval_start_ms - t.features_start_ms, 10_000);
            }
        }
        assert!(load_model_fails_for(&m, 60), "a 10 s model is refused by a 60 s predictor");
    }

    fn load_model_fails_for(m: &LoadedModel, interval_secs: u32) -> bool {
        crate::model_source::load_model(&m.model.to_bytes(), interval_secs).is_err()
    }

    #[test]
    fn an_imported_model_predicts_its_trees_output_from_the_mapped_columns() {
        let bytes = crate::model_source::imported_prototype(&[]);
        let (m, judge) =
            (crate::model_source::load_model(&bytes, 10).unwrap(), Judge::new(Rule::Absolute { threshold_w: 1.0 }));
        let mut f = Forecaster::new(SensorState::default(), &m);
        let at = |i: i64, p: [f32; 3]| Interval { ts: 1_763_683_200 + i * 10, p };
        // The trees (core/tests/xgboost_mapping.rs), by hand: base 1000;
        // p_l1 < 500 ? (p_l1-1 < 300 ? 100 : 200) : 400; p_l3-2 < 250 ? -50 : 75;
        // p_l2 < 150 ? 10 : 20. Missing lags: p_l1-1 goes right, p_l3-2 right.
        let steps = [
            ([100.0, 200.0, 300.0], 1295.0),
            ([250.0, 100.0, 200.0], 1185.0),
            ([600.0, 180.0, 260.0], 1495.0),
            ([f32::NAN, 100.0, 100.0], 1160.0),
        ];
        for (i, (p, want)) in steps.into_iter().enumerate() {
            let s = f.step(&at(i as i64, p), &m, &judge).unwrap();
            assert!(s.predicted, "interval {i}");
            let pending = f.state.pending.back().unwrap();
            assert_eq!(pending.predicted, want, "interval {i}: {:?}", pending.features);
            assert_eq!(pending.target_start_ms - pending.features_start_ms, 10_000);
        }
        let p = f.state.pending.back().unwrap();
        let row = [
            None,
            Some(100.0),
            Some(100.0),
            Some(600.0),
            Some(180.0),
            Some(260.0),
            Some(250.0),
            Some(100.0),
            Some(200.0),
        ];
        assert_eq!(p.features, row, "the model's row: its inputs in its order");

        // the next interval judges that prediction; a misprediction's triplet
        // carries the model's own feature names beside that row
        let s = f.step(&at(4, [900.0, 900.0, 900.0]), &m, &judge).unwrap();
        let t = Forecaster::triplet("s", &s.judged[0], &m, 10_000, "absolute");
        assert_eq!(t.feature_names, m.model.meta.feature_names);
        assert_eq!(t.feature_names[..4], ["p_l1", "p_l2", "p_l3", "p_l1-1"]);
        assert_eq!((t.features, t.predicted, t.actual), (row.to_vec(), 1160.0, 2700.0));
    }

    #[test]
    fn a_swap_to_an_imported_model_of_another_spec_rebuilds_the_features() {
        let judge = Judge::new(Rule::Absolute { threshold_w: 1.0 });
        let a = crate::model_source::load_model(&crate::model_source::imported_prototype(&[]), 10).unwrap();
        // the same trees, their last input declared as phase 3 four intervals back
        let b = crate::model_source::imported_prototype(&["p_l3-2=p_l3-4"]);
        let b = crate::model_source::load_model(&b, 10).unwrap();
        assert_eq!((a.model.meta.feature_spec.clone(), b.layout.spec.phase_lags), (None, 4));
        let mut f = Forecaster::new(SensorState::default(), &a);
        let at = |i: i64, w: f32| Interval { ts: 1_763_683_200 + i * 10, p: [w, w, w] };
        for i in 0..5 {
            f.step(&at(i, 100.0 * (i + 1) as f32), &a, &judge).unwrap();
        }
        // no swap_model call (the loop sees two models without a feature spec)
        f.step(&at(5, 600.0), &b, &judge).unwrap();
        let features = &f.state.pending.back().unwrap().features;
        assert_eq!(features.len(), 9);
        assert_eq!(features[8], Some(200.0), "p_l3 four intervals before interval 5");
    }

    #[test]
    fn a_replayed_interval_is_ignored_and_a_gap_drops_the_prediction() {
        let (m, judge) = (model(), Judge::new(Rule::Absolute { threshold_w: 100.0 }));
        let mut f = Forecaster::new(SensorState::default(), &m);
        f.step(&iv(0, 300.0), &m, &judge).unwrap();
        assert!(f.step(&iv(0, 300.0), &m, &judge).is_none());
        let s = f.step(&iv(2, 300.0), &m, &judge).unwrap();
        assert_eq!((s.judged.len(), s.dropped), (0, 1));
    }

    #[test]
    fn a_restored_state_predicts_exactly_as_the_live_one() {
        let (m, judge) = (model(), Judge::new(Rule::Absolute { threshold_w: 100.0 }));
        let mut live = Forecaster::new(SensorState::default(), &m);
        for i in 0..70 {
            live.step(&iv(i, 200.0 + (i % 7) as f32 * 30.0), &m, &judge);
        }
        let stored: SensorState = serde_json::from_slice(&serde_json::to_vec(&live.state).unwrap()).unwrap();
        let mut restored = Forecaster::new(stored, &m);
        let a = live.step(&iv(70, 500.0), &m, &judge).unwrap();
        let b = restored.step(&iv(70, 500.0), &m, &judge).unwrap();
        assert_eq!(a.judged, b.judged);
        assert_eq!(live.state.pending, restored.state.pending);
    }
}
