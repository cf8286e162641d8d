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

#[test]
fn a_file_claiming_too_many_inputs_is_refused_before_naming_them() {
    // Out of memory under fuzz/'s xgboost_json target: 400 million inputs,
    // each named f0, f1, ... by the importer, from 200 bytes.
    let json = br#"{"learner": {"objective": {"name": "reg:squarederror"},
        "learner_model_param": {"base_score": "5E-1", "num_feature": "400000000"},
        "gradient_booster": {"name": "gbtree", "model": {"trees": []}}}}"#;
    let e = xgboost::import_json(json, TargetKind::Level).unwrap_err();
    assert!(matches!(e, ModelError::Xgboost(_)), "{e}");
    assert!(e.to_string().contains("num_feature is 400000000"), "{e}");
    let at_most = String::from_utf8(json.to_vec()).unwrap().replace("400000000", &xgboost::MAX_FEATURES.to_string());
    assert!(xgboost::import_json(at_most.as_bytes(), TargetKind::Level).is_ok());
}

#[test]
fn a_split_condition_beyond_f32_is_refused_not_saved_as_an_unreadable_model() {
    // Caught by fuzz/'s xgboost_json check (an import saves and loads
    // again): -1e39 became an f32 -inf threshold, which the model file
    // writes as null and cannot read back.
    let json = |condition: &str| {
        format!(
            r#"{{"learner": {{"objective": {{"name": "reg:squarederror"}},
            "learner_model_param": {{"base_score": "[5E-1]", "num_feature": "1"}},
            "gradient_booster": {{"name": "gbtree", "model": {{"trees": [{{"left_children": [1, -1, -1],
            "right_children": [2, -1, -1], "split_conditions": [{condition}, 1, 2], "split_indices": [0, 0, 0],
            "default_left": [0, 0, 0]}}]}}}}}}}}"#
        )
    };
    let fine = xgboost::import_json(json("-1e38").as_bytes(), TargetKind::Level).unwrap();
    assert!(Model::from_bytes(&fine.to_bytes()).is_ok());
    let e = xgboost::import_json(json("-1e39").as_bytes(), TargetKind::Level).unwrap_err();
    assert!(e.to_string().contains("tree 0: node 0 has a non-finite threshold (-inf)"), "{e}");
}
