//! Model file round trips and the refusals a corrupt file must get.

use super::*;

fn model() -> Model {
    let spec = FeatureSpec::default();
    let meta = ModelMetadata {
        feature_names: spec.names(),
        feature_spec: Some(spec),
        target: TargetKind::Change,
        base_score: 1.5,
        loss: "absolute".into(),
        source: "test".into(),
        training_range: Some(("2007-01-01T00:00:00Z".into(), "2007-01-14T23:59:00Z".into())),
        training_rows: Some(100),
        params: Default::default(),
        metrics: [("validation_mae".to_string(), 12.5)].into_iter().collect(),
        lineage: None,
    };
    let t = Tree {
        feature: vec![3, 0, 0],
        threshold: vec![500.0, 0.0, 0.0],
        default_left: vec![true, false, false],
        left: vec![1, LEAF, LEAF],
        right: vec![2, LEAF, LEAF],
        value: vec![0.0, -10.0, 20.0],
    };
    Model::new(meta, vec![t, Tree::leaf(0.25)]).unwrap()
}

#[test]
fn native_format_round_trips_metadata_and_predictions() {
    let m = model();
    let back = Model::from_bytes(&m.to_bytes()).unwrap();
    assert_eq!(back.meta, m.meta);
    let mut row = vec![0f32; m.meta.feature_names.len()];
    row[3] = 400.0;
    assert_eq!(back.predict_raw(&row), 1.5 - 10.0 + 0.25);
    assert_eq!(back.predict_level(&row), 400.0 + 1.5 - 10.0 + 0.25);
    assert_eq!(back.payload_sha256(), m.payload_sha256());
}

#[test]
fn flipped_byte_in_payload_is_rejected_as_checksum_mismatch() {
    let mut b = model().to_bytes();
    let n = b.len();
    let i = b[..n - 5].iter().rposition(|&c| c == b'5').unwrap();
    b[i] = b'6';
    let e = Model::from_bytes(&b).unwrap_err();
    assert!(matches!(e, ModelError::ChecksumMismatch { .. }), "{e}");
}

#[test]
fn truncated_file_is_rejected() {
    let b = model().to_bytes();
    let e = Model::from_bytes(&b[..b.len() - 10]).unwrap_err();
    assert!(e.to_string().contains("truncated"), "{e}");
}

#[test]
fn newer_format_version_is_rejected() {
    let b = String::from_utf8(model().to_bytes()).unwrap().replacen("\"format_version\":1", "\"format_version\":9", 1);
    let e = Model::from_bytes(b.as_bytes()).unwrap_err();
    assert!(matches!(e, ModelError::UnsupportedVersion { found: 9, .. }), "{e}");
}

#[test]
fn other_file_is_not_a_model() {
    assert!(matches!(Model::from_bytes(b"timestamp,p_l1\n1,2\n"), Err(ModelError::NotAModel(_))));
    assert!(matches!(Model::from_bytes(b"{\"learner\":{}}"), Err(ModelError::NotAModel(_))));
}

#[test]
fn feature_names_not_matching_spec_are_rejected() {
    let m = model();
    let mut meta = m.meta.clone();
    meta.feature_names.swap(0, 1);
    assert!(matches!(Model::new(meta, m.trees().to_vec()), Err(ModelError::Invalid(_))));
}

#[test]
fn tree_using_missing_feature_is_rejected() {
    let m = model();
    let mut t = m.trees()[0].clone();
    t.feature[0] = 999;
    let e = Model::new(m.meta.clone(), vec![t]).unwrap_err();
    assert!(e.to_string().contains("feature 999"), "{e}");
}
