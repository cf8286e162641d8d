//! XGBoost JSON import (`gridcast import-xgboost`, `booster.save_model`
//! files of 1.x and 2.x/3.x), with and without a feature map: as a level
//! and a change model, and mapped by the file's own feature names.
//!
//! A model that imports must save and load back the same as a native file,
//! and its compiled forest must predict what walking the trees does
//! ([`gridcast_fuzz::check_model`]).
#![no_main]

use gridcast_core::features::TargetKind;
use gridcast_core::model::xgboost::{self, Serving};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for target in [TargetKind::Level, TargetKind::Change] {
        check(xgboost::import_json(data, target), data);
    }
    let serving = Serving { target: TargetKind::Level, interval_secs: 60, horizon: 1, features: None };
    check(xgboost::import_json_mapped(data, &serving), data);
});

fn check(imported: Result<gridcast_core::model::Model, gridcast_core::model::ModelError>, data: &[u8]) {
    match imported {
        Ok(model) => gridcast_fuzz::check_model(&model, data),
        Err(e) => {
            let _ = e.to_string();
        }
    }
}
