//! An imported XGBoost model served through a declared feature map: its
//! inputs are columns the shared feature code computes, by name.
//!
//! `data/xgb_prototype_10s.json` is hand-written in XGBoost 3.x's
//! `save_model` layout, with the prototype's input names (`p_l1..p_l3` and
//! `p_l{p}-{k}` lags, 10 s intervals, level target), base score 1000 and
//! three trees (`x < t` goes left; a missing value goes to `default_left`):
//!
//! - tree 0: `p_l1 < 500` (missing: left) ? (`p_l1-1 < 300` (missing: right) ? 100 : 200) : 400
//! - tree 1: `p_l3-2 < 250` (missing: right) ? -50 : 75
//! - tree 2: `p_l2 < 150` (missing: left) ? 10 : 20

use gridcast_core::features::{FeatureState, Interval, TargetKind};
use gridcast_core::model::xgboost::{self, Serving};
use gridcast_core::model::{Model, ModelError};

const PROTOTYPE: &[u8] = include_bytes!("data/xgb_prototype_10s.json");

fn serving(features: Option<&[&str]>) -> Serving {
    Serving {
        target: TargetKind::Level,
        interval_secs: 10,
        horizon: 1,
        features: features.map(|f| f.iter().map(|s| s.to_string()).collect()),
    }
}

/// Four 10 s intervals and the prediction the trees give after each, by hand.
fn intervals_and_outputs() -> Vec<(Interval, f32)> {
    let at = |i: i64, p: [f32; 3]| Interval { ts: 1_700_000_000 + 10 * i, p };
    vec![
        // lags missing: 100 < 500, p_l1-1 missing -> right 200; p_l3-2 missing -> 75; 200 >= 150 -> 20
        (at(0, [100.0, 200.0, 300.0]), 1000.0 + 200.0 + 75.0 + 20.0),
        // 250 < 500, p_l1-1 = 100 < 300 -> 100; p_l3-2 missing -> 75; 100 < 150 -> 10
        (at(1, [250.0, 100.0, 200.0]), 1000.0 + 100.0 + 75.0 + 10.0),
        // 600 >= 500 -> 400; p_l3-2 = 300 >= 250 -> 75; 180 >= 150 -> 20
        (at(2, [600.0, 180.0, 260.0]), 1000.0 + 400.0 + 75.0 + 20.0),
        // p_l1 missing -> left, p_l1-1 = 600 >= 300 -> 200; p_l3-2 = 200 < 250 -> -50; 100 < 150 -> 10
        (at(3, [f32::NAN, 100.0, 100.0]), 1000.0 + 200.0 - 50.0 + 10.0),
    ]
}

fn check_predictions(model: &Model) {
    let layout = model.row_layout().expect("a mapped model has a row layout");
    assert_eq!(layout.width(), model.meta.feature_names.len());
    let mut state = FeatureState::new(layout.spec.clone()).unwrap();
    for (i, (iv, want)) in intervals_and_outputs().into_iter().enumerate() {
        let row = layout.model_row(state.push(&iv).unwrap());
        assert_eq!(model.predict_level(&row), want, "interval {i}, row {row:?}");
    }
}

#[test]
fn the_prototypes_model_is_imported_with_its_own_names_and_predicts_the_trees_outputs() {
    let m = xgboost::import_json_mapped(PROTOTYPE, &serving(None)).unwrap();
    assert_eq!(m.meta.feature_names[3], "p_l1-1");
    let map = m.feature_map().unwrap();
    assert_eq!((map.interval_secs, map.horizon), (10, 1));
    assert_eq!(map.columns[..4], ["p_l1", "p_l2", "p_l3", "p_l1_lag1"]);
    assert_eq!(map.columns[8], "p_l3_lag2");
    let spec = m.row_layout().unwrap().spec;
    assert_eq!((spec.phase_lags, spec.total_lags, spec.windows.len(), spec.calendar), (2, 0, 0, false));
    check_predictions(&m);
}

#[test]
fn the_feature_map_survives_the_native_file() {
    let m = xgboost::import_json_mapped(PROTOTYPE, &serving(None)).unwrap();
    let back = Model::from_bytes(&m.to_bytes()).unwrap();
    assert_eq!(back.feature_map(), m.feature_map());
    assert_eq!(back.meta, m.meta);
    check_predictions(&back);
}

#[test]
fn declared_names_must_be_the_files_in_order_and_may_rename_to_our_columns() {
    let names = ["p_l1", "p_l2", "p_l3", "p_l1-1", "p_l2-1", "p_l3-1", "p_l1-2", "p_l2-2", "p_l3-2"];
    let m = xgboost::import_json_mapped(PROTOTYPE, &serving(Some(&names))).unwrap();
    check_predictions(&m);
    let mut renamed: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    renamed[3] = "p_l1-1=p_l1_lag1".into();
    let m = xgboost::import_json_mapped(PROTOTYPE, &Serving { features: Some(renamed), ..serving(None) }).unwrap();
    assert_eq!(
        (m.meta.feature_names[3].as_str(), m.feature_map().unwrap().columns[3].as_str()),
        ("p_l1-1", "p_l1_lag1")
    );

    let mut swapped = names;
    swapped.swap(0, 1);
    let e = xgboost::import_json_mapped(PROTOTYPE, &serving(Some(&swapped))).unwrap_err().to_string();
    assert!(e.contains("model input 0 is \"p_l1\"") && e.contains("\"p_l2\""), "{e}");
    let e = xgboost::import_json_mapped(PROTOTYPE, &serving(Some(&names[..8]))).unwrap_err().to_string();
    assert!(e.contains("9 inputs") && e.contains("8 feature names"), "{e}");
}

#[test]
fn an_unknown_feature_name_is_refused_at_import_naming_it_and_the_grammar() {
    let file = String::from_utf8(PROTOTYPE.to_vec()).unwrap().replace("\"p_l3-1\"", "\"q_l3-1\"");
    let e = xgboost::import_json_mapped(file.as_bytes(), &serving(None)).unwrap_err();
    assert!(matches!(e, ModelError::FeatureMap(_)), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("\"q_l3-1\"") && msg.contains("model input 5"), "{msg}");
    assert!(msg.contains("p_l{p}-{k}") && msg.contains("total-{k}"), "the accepted grammar is in the message: {msg}");

    // a declared column is checked the same way
    let mut names: Vec<String> = ["p_l1", "p_l2", "p_l3", "p_l1-1", "p_l2-1", "p_l3-1", "p_l1-2", "p_l2-2"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    names.push("p_l3-2=p_l3-two".into());
    let e = xgboost::import_json_mapped(PROTOTYPE, &Serving { features: Some(names), ..serving(None) }).unwrap_err();
    assert!(e.to_string().contains("\"p_l3-two\""), "{e}");
}

#[test]
fn a_file_without_names_needs_declared_ones() {
    let mut doc: serde_json::Value = serde_json::from_slice(PROTOTYPE).unwrap();
    doc["learner"]["feature_names"] = serde_json::json!([]);
    let file = serde_json::to_vec(&doc).unwrap();
    let e = xgboost::import_json_mapped(&file, &serving(None)).unwrap_err().to_string();
    assert!(e.contains("does not name its 9 inputs") && e.contains("--features"), "{e}");
    let names = ["p_l1", "p_l2", "p_l3", "p_l1-1", "p_l2-1", "p_l3-1", "p_l1-2", "p_l2-2", "p_l3-2"];
    check_predictions(&xgboost::import_json_mapped(&file, &serving(Some(&names))).unwrap());
    let named: Vec<String> = names.iter().enumerate().map(|(i, n)| format!("f{i}={n}")).collect();
    let m = xgboost::import_json_mapped(&file, &Serving { features: Some(named), ..serving(None) }).unwrap();
    assert_eq!(m.meta.feature_names[8], "f8");
    check_predictions(&m);
}

#[test]
fn a_change_target_needs_a_mapped_total() {
    let e = xgboost::import_json_mapped(PROTOTYPE, &Serving { target: TargetKind::Change, ..serving(None) })
        .unwrap_err()
        .to_string();
    assert!(e.contains("`total`"), "{e}");
}

#[test]
fn a_native_models_file_is_unchanged_by_the_feature_map_field() {
    let bytes = include_bytes!("../../models/default.gcm");
    let m = Model::from_bytes(bytes).unwrap();
    assert!(m.feature_map().is_none());
    assert_eq!(m.to_bytes(), bytes.to_vec(), "a native model's file (and its version) must not change");
}
