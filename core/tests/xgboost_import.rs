//! An XGBoost model saved by pip xgboost (3.x layout, and the same trees in
//! the 1.x layout) must predict what xgboost predicted, to 1e-5 relative.
//! Fixtures are made by `bench/model/make_xgb_fixture.py`.

use gridcast_core::features::TargetKind;
use gridcast_core::model::{Model, ModelError, xgboost};

const ROWS: &str = include_str!("data/xgb_small_rows.csv");

fn rows() -> Vec<(Vec<f32>, f32)> {
    ROWS.lines()
        .skip(1)
        .map(|l| {
            let v: Vec<&str> = l.split(',').collect();
            let (x, y) = v.split_at(v.len() - 1);
            let x = x.iter().map(|s| if s.is_empty() { f32::NAN } else { s.parse().unwrap() }).collect();
            (x, y[0].parse().unwrap())
        })
        .collect()
}

fn check(model: &Model) {
    let rows = rows();
    assert!(rows.iter().any(|(x, _)| x.iter().any(|v| v.is_nan())), "fixture must have missing values");
    for (i, (x, want)) in rows.iter().enumerate() {
        let got = model.predict_raw(x);
        let rel = ((got - want) / want.abs().max(1e-6)).abs();
        assert!(rel <= 1e-5, "row {i}: ours {got}, xgboost {want}");
    }
}

#[test]
fn xgboost_3x_json_predicts_like_xgboost() {
    let m = xgboost::import_json(include_bytes!("data/xgb3_small.json"), TargetKind::Level).unwrap();
    assert_eq!(m.meta.base_score, 900.0);
    assert_eq!(m.meta.feature_names[0], "x0");
    assert_eq!(m.forest().n_trees(), 20);
    check(&m);
}

#[test]
fn xgboost_1x_json_predicts_like_xgboost() {
    let m = xgboost::import_json(include_bytes!("data/xgb1_small.json"), TargetKind::Level).unwrap();
    assert_eq!(m.meta.base_score, 900.0);
    check(&m);
}

#[test]
fn imported_model_survives_native_round_trip() {
    let m = xgboost::import_json(include_bytes!("data/xgb3_small.json"), TargetKind::Level).unwrap();
    let back = Model::from_bytes(&m.to_bytes()).unwrap();
    check(&back);
}

#[test]
fn classifier_objective_is_refused() {
    let s = String::from_utf8(include_bytes!("data/xgb3_small.json").to_vec())
        .unwrap()
        .replace("reg:squarederror", "binary:logistic");
    let e = xgboost::import_json(s.as_bytes(), TargetKind::Level).unwrap_err();
    assert!(matches!(e, ModelError::Xgboost(_)), "{e}");
    assert!(e.to_string().contains("binary:logistic"), "{e}");
}

#[test]
fn truncated_xgboost_json_is_refused() {
    let b = include_bytes!("data/xgb3_small.json");
    assert!(xgboost::import_json(&b[..b.len() / 2], TargetKind::Level).is_err());
}
