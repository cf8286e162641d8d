//! Declared feature mappings: how a model that gridcast did not train (an
//! imported XGBoost model) gets its input rows from the shared feature code.
//!
//! A [`FeatureMap`] lists, for each of the model's inputs in order, the
//! column of ours it is, by name (grammar: [`COLUMN_GRAMMAR`]). From it
//! follow the smallest native [`FeatureSpec`] that computes every mapped
//! column ([`FeatureMap::spec`]) and which of that spec's columns the model
//! reads, in its order ([`RowLayout`]). Serving runs the ordinary
//! [`super::FeatureState`] on that spec and picks the columns: nothing is
//! computed twice, nor differently from training.
//!
//! Names are checked when the mapping is declared (at import), so a name the
//! edge cannot compute never reaches a predictor.

use serde::{Deserialize, Serialize};

use super::spec::{FEATURE_VERSION, FeatureSpec, TargetKind};

/// The names a mapped column may have, for error messages and docs.
pub const COLUMN_GRAMMAR: &str = "p_l{p} (phase p = 1..3, mean power of the interval just closed, W); \
p_l{p}-{k} or p_l{p}_lag{k} (the same, k >= 1 intervals back); total (sum of the phases); \
total-{k} or total_lag{k}; total_diff1; p_l{p}_diff1; total_mean{w}; total_std{w} (w >= 1 intervals); \
minute_of_day; tod_sin; tod_cos; day_of_week";

const CALENDAR: [&str; 4] = ["minute_of_day", "tod_sin", "tod_cos", "day_of_week"];

/// A name that is not a column the feature code computes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    #[error("unknown feature name {name:?} (model input {position}); accepted names: {COLUMN_GRAMMAR}")]
    UnknownName { name: String, position: usize },
    #[error("invalid feature map: {0}")]
    Invalid(String),
}

/// One column of [`FeatureSpec::names`], parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    /// Phase `p` (1..=3) `lag` intervals back (0 = the current interval).
    Phase {
        p: u8,
        lag: u32,
    },
    /// Sum of the phases `lag` intervals back.
    Total {
        lag: u32,
    },
    TotalDiff1,
    PhaseDiff1 {
        p: u8,
    },
    TotalMean {
        w: u32,
    },
    TotalStd {
        w: u32,
    },
    Calendar(&'static str),
}

/// A non-empty run of ASCII digits as a number.
fn number(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `1`, `2` or `3`.
fn phase(s: &str) -> Option<u8> {
    matches!(s, "1" | "2" | "3").then(|| s.as_bytes()[0] - b'0')
}

/// `-{k}` or `_lag{k}` with k >= 1; `""` is lag 0.
fn lag(s: &str) -> Option<u32> {
    if s.is_empty() {
        return Some(0);
    }
    let k = s.strip_prefix('-').or_else(|| s.strip_prefix("_lag")).and_then(number)?;
    (k >= 1).then_some(k)
}

impl Column {
    fn parse(name: &str) -> Option<Column> {
        if let Some(&c) = CALENDAR.iter().find(|c| **c == name) {
            return Some(Column::Calendar(c));
        }
        if name == "total_diff1" {
            return Some(Column::TotalDiff1);
        }
        if let Some(w) = name.strip_prefix("total_mean").and_then(number) {
            return (w >= 1).then_some(Column::TotalMean { w });
        }
        if let Some(w) = name.strip_prefix("total_std").and_then(number) {
            return (w >= 1).then_some(Column::TotalStd { w });
        }
        if let Some(rest) = name.strip_prefix("total") {
            return lag(rest).map(|lag| Column::Total { lag });
        }
        let rest = name.strip_prefix("p_l")?;
        let p = phase(rest.get(..1)?)?;
        let rest = &rest[1..];
        if rest == "_diff1" {
            return Some(Column::PhaseDiff1 { p });
        }
        lag(rest).map(|lag| Column::Phase { p, lag })
    }

    /// The name [`FeatureSpec::names`] gives this column.
    fn canonical(&self) -> String {
        match *self {
            Column::Phase { p, lag: 0 } => format!("p_l{p}"),
            Column::Phase { p, lag } => format!("p_l{p}_lag{lag}"),
            Column::Total { lag: 0 } => "total".into(),
            Column::Total { lag } => format!("total_lag{lag}"),
            Column::TotalDiff1 => "total_diff1".into(),
            Column::PhaseDiff1 { p } => format!("p_l{p}_diff1"),
            Column::TotalMean { w } => format!("total_mean{w}"),
            Column::TotalStd { w } => format!("total_std{w}"),
            Column::Calendar(c) => c.into(),
        }
    }
}

/// The column of ours a model input name stands for, by its canonical name
/// (`p_l1-2` -> `p_l1_lag2`); `None` if it is not one ([`COLUMN_GRAMMAR`]).
pub fn canonical_column(name: &str) -> Option<String> {
    Column::parse(name).map(|c| c.canonical())
}

/// A model's inputs as columns of ours, stored in the model's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureMap {
    /// Feature definitions version ([`FEATURE_VERSION`] when declared).
    pub version: u32,
    /// Interval the model was trained on, in seconds: the `k` of a lag
    /// counts these.
    pub interval_secs: u32,
    /// How many intervals ahead the model predicts (1 = the next one).
    pub horizon: u32,
    /// For each model input, in the model's order, the canonical name of
    /// the column it reads ([`FeatureSpec::names`] vocabulary).
    pub columns: Vec<String>,
}

impl FeatureMap {
    /// Declare a map from the model's input names, in order, each in the
    /// [`COLUMN_GRAMMAR`]. An unknown name is an error naming it.
    pub fn declare(interval_secs: u32, horizon: u32, names: &[impl AsRef<str>]) -> Result<FeatureMap, MapError> {
        let columns = names
            .iter()
            .enumerate()
            .map(|(position, n)| {
                canonical_column(n.as_ref())
                    .ok_or_else(|| MapError::UnknownName { name: n.as_ref().to_string(), position })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let map = FeatureMap { version: FEATURE_VERSION, interval_secs, horizon, columns };
        map.validate()?;
        Ok(map)
    }

    /// Check a stored map can be served; says what is wrong.
    pub fn validate(&self) -> Result<(), MapError> {
        if self.version != FEATURE_VERSION {
            return Err(MapError::Invalid(format!(
                "feature map version {} is not supported (this build computes version {FEATURE_VERSION}); import the model again",
                self.version
            )));
        }
        if self.columns.is_empty() {
            return Err(MapError::Invalid("it maps no columns".into()));
        }
        for (position, c) in self.columns.iter().enumerate() {
            if canonical_column(c).as_deref() != Some(c.as_str()) {
                return Err(MapError::UnknownName { name: c.clone(), position });
            }
        }
        self.spec(TargetKind::Level).validate().map_err(MapError::Invalid)
    }

    /// The smallest native spec whose rows hold every mapped column: lags
    /// up to the deepest one mapped, the rolling windows mapped, the
    /// calendar if any calendar column is.
    pub fn spec(&self, target: TargetKind) -> FeatureSpec {
        let mut spec = FeatureSpec {
            version: self.version,
            interval_secs: self.interval_secs,
            horizon: self.horizon,
            total_lags: 0,
            phase_lags: 0,
            windows: Vec::new(),
            calendar: false,
            target,
        };
        for c in self.columns.iter().filter_map(|c| Column::parse(c)) {
            match c {
                Column::Phase { lag, .. } => spec.phase_lags = spec.phase_lags.max(lag),
                Column::Total { lag } => spec.total_lags = spec.total_lags.max(lag),
                Column::TotalMean { w } | Column::TotalStd { w } if !spec.windows.contains(&w) => spec.windows.push(w),
                Column::Calendar(_) => spec.calendar = true,
                _ => {}
            }
        }
        spec.windows.sort_unstable();
        spec
    }

    /// Where the model's rows come from: [`Self::spec`] and the index of
    /// each mapped column in its rows.
    pub fn layout(&self, target: TargetKind) -> RowLayout {
        let spec = self.spec(target);
        let names = spec.names();
        let select = self
            .columns
            .iter()
            .map(|c| names.iter().position(|n| n == c).expect("a validated map's columns are in its spec"))
            .collect();
        RowLayout { spec, select: Some(select) }
    }
}

/// How to compute a model's input rows: run a [`super::FeatureState`] on
/// `spec`, then take its columns `select` in that order (all of them, as
/// they are, when `None`: a model gridcast trained).
#[derive(Debug, Clone, PartialEq)]
pub struct RowLayout {
    pub spec: FeatureSpec,
    pub select: Option<Vec<usize>>,
}

impl RowLayout {
    /// A model trained on `spec`'s rows as they are.
    pub fn native(spec: FeatureSpec) -> RowLayout {
        RowLayout { spec, select: None }
    }

    /// Number of model inputs per row.
    pub fn width(&self) -> usize {
        self.select.as_ref().map_or_else(|| self.spec.len(), Vec::len)
    }

    /// The model's row from a row laid out as `spec.names()` (returned as
    /// it is for a native layout).
    pub fn model_row(&self, spec_row: Vec<f32>) -> Vec<f32> {
        match &self.select {
            None => spec_row,
            Some(idx) => idx.iter().map(|&i| spec_row[i]).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::{FeatureState, Interval};

    #[test]
    fn prototype_and_native_names_map_to_the_same_columns() {
        for (name, want) in [
            ("p_l1", "p_l1"),
            ("p_l3-1", "p_l3_lag1"),
            ("p_l2-12", "p_l2_lag12"),
            ("p_l2_lag12", "p_l2_lag12"),
            ("total", "total"),
            ("total-3", "total_lag3"),
            ("total_lag3", "total_lag3"),
            ("total_diff1", "total_diff1"),
            ("p_l1_diff1", "p_l1_diff1"),
            ("total_mean15", "total_mean15"),
            ("total_std5", "total_std5"),
            ("tod_cos", "tod_cos"),
        ] {
            assert_eq!(canonical_column(name).as_deref(), Some(want), "{name}");
        }
    }

    #[test]
    fn names_outside_the_grammar_are_not_columns() {
        for name in
            ["p_l4", "p_l0", "p_l1-0", "p_l1-", "p_l1+1", "p_l1--1", "p_l1-x", "q_l1", "P_L1", "total-0", "total_mean0"]
        {
            assert_eq!(canonical_column(name), None, "{name}");
        }
        for name in ["p_l1 ", "total_lag", "f0", "", "p_l12", "total_std"] {
            assert_eq!(canonical_column(name), None, "{name:?}");
        }
    }

    #[test]
    fn an_unknown_name_is_refused_naming_it_and_the_grammar() {
        let e = FeatureMap::declare(10, 1, &["p_l1", "p_l1-1", "voltage_l1"]).unwrap_err();
        assert_eq!(e, MapError::UnknownName { name: "voltage_l1".into(), position: 2 });
        let msg = e.to_string();
        assert!(msg.contains("\"voltage_l1\"") && msg.contains("p_l{p}-{k}"), "{msg}");
    }

    #[test]
    fn the_spec_is_the_smallest_that_computes_every_mapped_column() {
        let m = FeatureMap::declare(10, 1, &["p_l2-3", "total_std15", "p_l1", "total_mean5", "total_std5"]).unwrap();
        let s = m.spec(TargetKind::Level);
        assert_eq!((s.interval_secs, s.horizon, s.phase_lags, s.total_lags), (10, 1, 3, 0));
        assert_eq!((s.windows.clone(), s.calendar), (vec![5, 15], false));
        let layout = m.layout(TargetKind::Level);
        let names = s.names();
        let picked: Vec<&str> = layout.select.as_ref().unwrap().iter().map(|&i| names[i].as_str()).collect();
        assert_eq!(picked, ["p_l2_lag3", "total_std15", "p_l1", "total_mean5", "total_std5"]);
    }

    #[test]
    fn mapped_rows_are_the_feature_states_values_in_the_models_order() {
        let names = ["p_l1", "p_l2", "p_l3", "p_l1-1", "p_l2-1", "p_l3-1", "p_l1-2", "total", "total-1"];
        let layout = FeatureMap::declare(10, 1, &names).unwrap().layout(TargetKind::Level);
        let mut state = FeatureState::new(layout.spec.clone()).unwrap();
        let mut row = Vec::new();
        for (i, p) in [[1.0, 2.0, 3.0], [10.0, 20.0, 30.0], [100.0, 200.0, 300.0]].into_iter().enumerate() {
            row = layout.model_row(state.push(&Interval { ts: 1_700_000_000 + 10 * i as i64, p }).unwrap());
        }
        assert_eq!(row, [100.0, 200.0, 300.0, 10.0, 20.0, 30.0, 1.0, 600.0, 60.0]);
        assert_eq!(layout.width(), names.len());
    }

    #[test]
    fn a_stored_map_with_a_non_canonical_or_newer_column_is_invalid() {
        let mut m = FeatureMap::declare(10, 1, &["p_l1-1"]).unwrap();
        assert_eq!(m.columns, ["p_l1_lag1"]);
        m.columns[0] = "p_l1-1".into();
        assert!(m.validate().is_err());
        let m = FeatureMap { version: FEATURE_VERSION + 1, ..FeatureMap::declare(10, 1, &["p_l1"]).unwrap() };
        assert!(m.validate().unwrap_err().to_string().contains("version"));
        assert!(FeatureMap::declare(0, 1, &["p_l1"]).is_err());
        assert!(FeatureMap::declare(10, 0, &["p_l1"]).is_err());
    }
}
