//! `gridcast-model import-xgboost`: an XGBoost JSON model in, a gridcast
//! model file with its declared feature map out; a name the predictor cannot
//! compute is refused here, naming it.

use std::path::{Path, PathBuf};

use gridcast_core::model::Model;
use gridcast_trainer::cli::{self, ImportXgboostArgs, TargetArg};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/tests/data/xgb_prototype_10s.json")
}

fn args(out: &Path, features: Option<&str>) -> ImportXgboostArgs {
    ImportXgboostArgs {
        model: fixture(),
        out: out.to_path_buf(),
        interval_secs: 10,
        horizon: 1,
        target: TargetArg::Level,
        features: features.map(|f| f.split(',').map(String::from).collect()),
    }
}

#[test]
fn the_prototypes_model_is_written_with_its_feature_map() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("prototype.gcm");
    cli::run_import_xgboost(args(&out, None)).unwrap();
    let m = Model::from_bytes(&std::fs::read(&out).unwrap()).unwrap();
    let map = m.feature_map().expect("the imported model carries its map");
    assert_eq!((map.interval_secs, map.horizon), (10, 1));
    assert_eq!(m.meta.feature_names[5], "p_l3-1");
    assert_eq!(map.columns[5], "p_l3_lag1");
    // predict-batch reads it by the model's own names
    assert_eq!(cli::load_model(&out).unwrap().meta.feature_names, m.meta.feature_names);
}

#[test]
fn an_unknown_declared_name_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bad.gcm");
    let declared = "p_l1,p_l2,p_l3,p_l1-1,p_l2-1,p_l3-1,p_l1-2,p_l2-2,p_l3-2=voltage_l3";
    let e = format!("{:#}", cli::run_import_xgboost(args(&out, Some(declared))).unwrap_err());
    assert!(e.contains("xgb_prototype_10s.json") && e.contains("\"voltage_l3\""), "{e}");
    assert!(e.contains("p_l{p}-{k}"), "the message says which names are accepted: {e}");
    assert!(!out.exists());
}
