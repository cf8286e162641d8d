//! Black-box tests of the model engine on the shipped sample: train, save,
//! load, backtest, batch prediction, and refusal of a corrupt model file.

use std::path::{Path, PathBuf};

use gridcast_core::features::{FeatureState, FeatureTable};
use gridcast_core::model::Model;
use gridcast_trainer::gbdt::TrainParams;
use gridcast_trainer::{cli, data, pipeline};

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(p)
}

fn sample() -> Vec<gridcast_core::features::Interval> {
    data::load_intervals(&repo("samples/uci_household_2007-01_14d.csv"), 60).unwrap()
}

#[test]
fn shipped_default_model_loads_and_serves_the_sample_stream() {
    let m = Model::from_bytes(&std::fs::read(repo("models/default.gcm")).unwrap()).unwrap();
    let spec = m.meta.feature_spec.clone().expect("default model has a feature spec");
    let mut state = FeatureState::new(spec).unwrap();
    let series = sample();
    let mut err = 0f64;
    let mut n = 0;
    for w in series.windows(2) {
        let row = state.push(&w[0]).unwrap();
        let p = m.predict_level(&row);
        assert!(p.is_finite());
        if w[1].ts - w[0].ts == 60 {
            err += (p - w[1].total()).abs() as f64;
            n += 1;
        }
    }
    assert!(err / (n as f64) < 300.0, "in-sample MAE {}", err / n as f64);
}

#[test]
fn model_trained_here_round_trips_through_a_file() {
    let series = sample();
    let spec = gridcast_core::features::FeatureSpec::default();
    let table = FeatureTable::build(&spec, &series[..5000]).unwrap();
    let rows = table.labelled_rows();
    let p = TrainParams { n_trees: 20, threads: 1, ..Default::default() };
    let (m, _) = pipeline::fit(&spec, &table, &rows, &p, &mut |_, _| {}).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gcm");
    std::fs::write(&path, m.to_bytes()).unwrap();
    let back = cli::load_model(&path).unwrap();
    for &i in rows.iter().take(500) {
        assert_eq!(back.predict_level(table.row(i)), m.predict_level(table.row(i)));
    }
    assert_eq!(back.meta.training_rows, Some(rows.len() as u64));
    assert_eq!(back.meta.training_range.as_ref().unwrap().0, "2007-01-01T00:00:00Z");
}

#[test]
fn corrupt_model_file_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.gcm");
    let mut b = std::fs::read(repo("models/default.gcm")).unwrap();
    let n = b.len();
    b[n - 100] ^= 0x01;
    std::fs::write(&path, b).unwrap();
    let e = format!("{:#}", cli::load_model(&path).unwrap_err());
    assert!(e.contains("bad.gcm") && e.contains("sha256"), "{e}");
}

#[test]
fn backtest_on_the_sample_reports_skill_against_persistence() {
    let series = sample();
    let spec = gridcast_core::features::FeatureSpec::default();
    let p = TrainParams { n_trees: 40, learning_rate: 0.1, threads: 2, ..Default::default() };
    let (r, _, pts) = pipeline::backtest(&spec, &series, &p, 0.8, &mut |_, _| {}).unwrap();
    assert_eq!(pts.len(), r.test_rows);
    assert!((r.skill - (1.0 - r.mae / r.persistence_mae)).abs() < 1e-12);
    assert!(r.mae < r.persistence_mae * 1.02, "{r}");
    let dir = tempfile::tempdir().unwrap();
    gridcast_trainer::plot::write_png(&dir.path().join("p.png"), &pts).unwrap();
}

#[test]
fn predict_batch_reads_columns_by_the_models_feature_names() {
    let m = Model::from_bytes(&std::fs::read(repo("models/default.gcm")).unwrap()).unwrap();
    let mut names = m.meta.feature_names.clone();
    names.reverse(); // column order in the file does not matter
    let mut csv = format!("extra,{}\n", names.join(","));
    let cells: Vec<&str> = names.iter().map(|n| if n == "total" { "500" } else { "" }).collect();
    csv.push_str(&format!("x,{}\n", cells.join(",")));
    let x = data::read_feature_rows(csv.as_bytes(), &m.meta.feature_names).unwrap();
    let total = m.meta.feature_names.iter().position(|n| n == "total").unwrap();
    assert_eq!(x[total], 500.0);
    assert!(x.iter().enumerate().all(|(i, v)| i == total || v.is_nan()));
    assert!(m.predict_level(&x).is_finite());
}

/// A 10-minute meter export (the shipped minute sample averaged to 10
/// minutes), given with no interval: the interval is the data's spacing,
/// and a backtest has rows to learn from. At one minute (what used to be
/// assumed) it is refused, naming the spacing found.
#[test]
fn a_ten_minute_export_backtests_with_no_interval_given() {
    let minutes = sample();
    let mut csv = String::from("timestamp,p_l1,p_l2,p_l3\n");
    for chunk in minutes.chunks_exact(10).filter(|c| c[9].ts - c[0].ts == 540) {
        let mean = |i: usize| chunk.iter().map(|iv| iv.p[i] as f64).sum::<f64>() / 10.0;
        let ts = chrono::DateTime::from_timestamp(chunk[0].ts, 0).unwrap().to_rfc3339();
        csv.push_str(&format!("{ts},{:.3},{:.3},{:.3}\n", mean(0), mean(1), mean(2)));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ten_minutes.csv");
    std::fs::write(&path, csv).unwrap();

    let (interval, series) = data::load_series(&path, None).unwrap();
    assert_eq!(interval, 600);
    let spec = gridcast_core::features::FeatureSpec { interval_secs: interval, ..Default::default() };
    let p = TrainParams { n_trees: 40, learning_rate: 0.1, threads: 2, ..Default::default() };
    let (r, _, _) = pipeline::backtest(&spec, &series, &p, 0.8, &mut |_, _| {}).unwrap();
    assert!(r.train_rows > 1000 && r.test_rows > 300, "{r}");

    let e = format!("{:#}", data::load_series(&path, Some(60)).unwrap_err());
    assert!(e.contains("10 min apart") && e.contains("ten_minutes.csv"), "{e}");
}
