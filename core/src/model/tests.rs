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

mod signed {
    use super::*;
    use crate::model::signature::{self, PublicKey, SignatureError, SigningKey};
    use sha2::Digest;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_seed(&[n; 32])
    }

    #[test]
    fn a_model_signed_by_a_trusted_key_verifies_and_loads_as_the_same_version() {
        let m = model();
        let signed = m.to_signed_bytes(&key(1));
        assert_eq!(
            signature::verify(&signed, &[key(2).public_key(), key(1).public_key()]).unwrap(),
            key(1).public_key()
        );
        let back = Model::from_bytes(&signed).unwrap();
        assert_eq!(back.meta, m.meta);
        assert_eq!(back.payload_sha256(), m.payload_sha256());
        // Signing a file gives the same bytes as signing the model.
        assert_eq!(signature::sign(&m.to_bytes(), &key(1)).unwrap(), signed);
        assert_eq!(signature::claimed_signer(&signed).unwrap(), Some(key(1).public_key()));
    }

    #[test]
    fn an_unsigned_model_loads_but_is_refused_as_unsigned() {
        let b = model().to_bytes();
        assert!(!String::from_utf8_lossy(&b).contains("signature"), "unsigned files are written as before");
        assert!(Model::from_bytes(&b).is_ok());
        let e = signature::verify(&b, &[key(1).public_key()]).unwrap_err();
        assert!(matches!(e, SignatureError::Unsigned), "{e}");
        assert_eq!(e.reason(), "unsigned");
        assert_eq!(signature::claimed_signer(&b).unwrap(), None);
    }

    #[test]
    fn a_model_signed_by_another_key_is_refused_naming_that_key() {
        let b = model().to_signed_bytes(&key(2));
        let e = signature::verify(&b, &[key(1).public_key()]).unwrap_err();
        assert!(matches!(&e, SignatureError::UntrustedKey { key: k } if **k == key(2).public_key()), "{e}");
        assert!(e.to_string().contains(&key(2).public_key().to_string()), "{e}");
        assert!(signature::verify(&b, &[]).is_err());
    }

    #[test]
    fn a_tampered_payload_with_a_fixed_up_checksum_is_refused_as_a_bad_signature() {
        let text = String::from_utf8(model().to_signed_bytes(&key(1))).unwrap();
        let (header, payload) = text.split_once('\n').unwrap();
        let tampered = payload.replacen("12.5", "99.5", 1);
        assert_ne!(tampered, payload);
        let mut h: serde_json::Value = serde_json::from_str(header).unwrap();
        h["payload_sha256"] = hex::encode(sha2::Sha256::digest(tampered.as_bytes())).into();
        let file = format!("{h}\n{tampered}");
        assert!(Model::from_bytes(file.as_bytes()).is_ok(), "the checksum alone is satisfied");
        let e = signature::verify(file.as_bytes(), &[key(1).public_key()]).unwrap_err();
        assert!(matches!(e, SignatureError::BadSignature { .. }), "{e}");
        assert_eq!(e.reason(), "bad_signature");
    }

    #[test]
    fn a_signature_moved_onto_another_payload_is_refused() {
        let a = String::from_utf8(model().to_signed_bytes(&key(1))).unwrap();
        let mut other = model();
        other.meta.source = "someone else".into();
        let b = String::from_utf8(other.to_bytes()).unwrap();
        let (a_header, _) = a.split_once('\n').unwrap();
        let (b_header, b_payload) = b.split_once('\n').unwrap();
        let mut h: serde_json::Value = serde_json::from_str(b_header).unwrap();
        h["signature"] = serde_json::from_str::<serde_json::Value>(a_header).unwrap()["signature"].clone();
        let file = format!("{h}\n{b_payload}");
        let e = signature::verify(file.as_bytes(), &[key(1).public_key()]).unwrap_err();
        assert!(matches!(e, SignatureError::BadSignature { .. }), "{e}");
    }

    #[test]
    fn a_malformed_signature_or_corrupt_file_is_refused_with_a_reason_not_a_panic() {
        let b = String::from_utf8(model().to_signed_bytes(&key(1))).unwrap();
        for (from, to) in [("\"ed25519\"", "\"rsa\""), ("\"sig\":\"", "\"sig\":\"zz")] {
            let e = signature::verify(b.replacen(from, to, 1).as_bytes(), &[key(1).public_key()]).unwrap_err();
            assert!(matches!(e, SignatureError::Malformed(_)), "{e}");
        }
        let e = signature::verify(&b.as_bytes()[..b.len() - 3], &[key(1).public_key()]).unwrap_err();
        assert!(matches!(e, SignatureError::File(_)), "{e}");
        assert!(signature::sign(b"not a model", &key(1)).is_err());
    }

    #[test]
    fn keys_parse_from_hex_and_the_private_one_never_prints() {
        let k = key(7);
        let text = k.expose_hex();
        assert_eq!(SigningKey::from_hex(&format!("{text}\n")).unwrap().public_key(), k.public_key());
        let debug = format!("{k:?}");
        assert!(!debug.contains(&text) && debug.contains("***"), "{debug}");
        let public: PublicKey = k.public_key().to_string().parse().unwrap();
        assert_eq!(public, k.public_key());
        assert!("abc".parse::<PublicKey>().is_err());
        assert!(SigningKey::from_hex("00").is_err());
        let e = SigningKey::from_hex(&format!("{text}zz")).unwrap_err().to_string();
        assert!(!e.contains(&text), "{e}");
        // Small-order points are refused as keys.
        assert!(format!("{:064x}", 0).parse::<PublicKey>().is_err());
    }
}
