//! Champion vs challenger on the holdout (pure): both predict every
//! labelled holdout interval one step ahead at their horizon, with the
//! shared feature code, and are scored against the actual total and against
//! persistence. The verdict ships the challenger only when it wins by the
//! margin.

use std::collections::BTreeMap;
use std::fmt;

use gridcast_core::features::{FeatureTable, Interval};
use gridcast_core::model::Model;

/// Holdout scores, W.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    pub rows: usize,
    pub mae: f64,
    pub rmse: f64,
    pub persistence_mae: f64,
    /// 1 - MAE / persistence MAE: > 0 beats persistence.
    pub skill: f64,
}

impl Scores {
    pub fn as_map(&self) -> BTreeMap<String, f64> {
        [("mae", self.mae), ("rmse", self.rmse), ("persistence_mae", self.persistence_mae), ("skill", self.skill)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    }
}

/// The labelled rows of `table` before `holdout_from` (Unix s) and from it on.
pub fn split_at(table: &FeatureTable, holdout_from: i64) -> (Vec<usize>, Vec<usize>) {
    table.labelled_rows().into_iter().partition(|&i| table.ts[i] < holdout_from)
}

/// Score `model` on the intervals of `series` from `holdout_from` on.
pub fn score(model: &Model, series: &[Interval], holdout_from: i64) -> anyhow::Result<Scores> {
    // A model's row: its own spec's columns, or those an imported model's
    // declared feature map picks from the shared feature code.
    let Some(layout) = model.row_layout() else {
        anyhow::bail!(
            "the model has neither a feature spec nor a feature map (an XGBoost model imported without \
             --features): its columns cannot be computed"
        );
    };
    let table = FeatureTable::build(&layout.spec, series)?;
    let (_, holdout) = split_at(&table, holdout_from);
    anyhow::ensure!(!holdout.is_empty(), "the holdout has no interval with a known next total");
    let (mut abs, mut sq, mut persist_abs) = (0.0, 0.0, 0.0);
    // Persistence: a missing current total (a gap) carries the last known one.
    let mut last = f64::NAN;
    for &i in &holdout {
        let actual = table.next_total[i] as f64;
        let error = model.predict_level(&layout.model_row(table.row(i).to_vec())) as f64 - actual;
        abs += error.abs();
        sq += error * error;
        let current = table.current_total[i] as f64;
        if !current.is_nan() {
            last = current;
        }
        persist_abs += (if last.is_nan() { 0.0 } else { last } - actual).abs();
    }
    let n = holdout.len() as f64;
    let (mae, persistence_mae) = (abs / n, persist_abs / n);
    Ok(Scores { rows: holdout.len(), mae, rmse: (sq / n).sqrt(), persistence_mae, skill: 1.0 - mae / persistence_mae })
}

/// Ship or keep, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub ship: bool,
    pub reason: String,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", if self.ship { "ship the challenger" } else { "keep the champion" }, self.reason)
    }
}

/// The challenger ships only if its MAE is below the champion's by `margin`.
pub fn verdict(champion: &Scores, challenger: &Scores, margin: f64) -> Verdict {
    let gain = 1.0 - challenger.mae / champion.mae;
    let (a, b, need) = (challenger.mae, champion.mae, 100.0 * margin);
    let versus =
        if gain >= 0.0 { format!("{:.1} % below", 100.0 * gain) } else { format!("{:.1} % above", -100.0 * gain) };
    if challenger.mae.is_finite() && gain > margin {
        Verdict {
            ship: true,
            reason: format!("its MAE {a:.1} W is {versus} the champion's {b:.1} W (margin {need:.1} %)"),
        }
    } else {
        Verdict {
            ship: false,
            reason: format!(
                "the challenger's MAE {a:.1} W is {versus} the champion's {b:.1} W; shipping needs {need:.1} % below"
            ),
        }
    }
}

/// Both models' scores, side by side.
pub fn side_by_side(champion: &Scores, challenger: &Scores) -> String {
    let row = |name: &str, a: f64, b: f64| format!("  {name:<16} {a:>12.1} {b:>12.1}\n");
    let mut s = format!("holdout: {} intervals\n  {:<16} {:>12} {:>12}\n", champion.rows, "", "champion", "challenger");
    s += &row("MAE (W)", champion.mae, challenger.mae);
    s += &row("RMSE (W)", champion.rmse, challenger.rmse);
    s += &row("persistence MAE", champion.persistence_mae, challenger.persistence_mae);
    s += &format!("  {:<16} {:>12.3} {:>12.3}", "skill", champion.skill, challenger.skill);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores(mae: f64) -> Scores {
        Scores { rows: 10, mae, rmse: mae, persistence_mae: 100.0, skill: 1.0 - mae / 100.0 }
    }

    #[test]
    fn the_challenger_ships_only_beyond_the_margin_and_ties_keep_the_champion() {
        assert!(verdict(&scores(100.0), &scores(97.0), 0.02).ship);
        assert!(!verdict(&scores(100.0), &scores(98.5), 0.02).ship, "1.5 % is inside the 2 % margin");
        assert!(!verdict(&scores(100.0), &scores(100.0), 0.0).ship, "a tie keeps the champion");
        assert!(!verdict(&scores(100.0), &scores(f64::NAN), 0.0).ship);
        let v = verdict(&scores(100.0), &scores(120.0), 0.02);
        assert!(v.reason.contains("120.0 W") && v.reason.contains("100.0 W") && v.reason.contains("2.0 %"), "{v}");
    }
}
