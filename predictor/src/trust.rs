//! Which models the predictor will serve: who signed them.
//!
//! With trusted keys configured (`[predict] trusted_keys`,
//! `trusted_keys_file`), a model is served only if it is signed by one of
//! them (core's `model::signature`), or if it is the shipped default model
//! (`models/default.gcm`, known by its payload sha256, compiled in: it
//! comes with the binary, not through the bucket). With none, every valid
//! model is served, as before signing existed, and start-up says once that
//! models are not verified.
//!
//! The check runs on the file's bytes before its trees are parsed: a model
//! from an unknown signer is refused without being read further.

use std::fmt;

use gridcast_core::model::signature::{self, Accepted, PublicKey, SignatureError};

use crate::config::PredictSection;

/// Why a model is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provenance {
    /// No trusted keys are configured: nothing was checked.
    NotVerified,
    /// Signed by this trusted key.
    SignedBy(PublicKey),
    /// The shipped default model.
    ShippedDefault,
}

impl fmt::Display for Provenance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Provenance::NotVerified => f.write_str("not verified"),
            Provenance::SignedBy(key) => write!(f, "signed by {}", key.id()),
            Provenance::ShippedDefault => f.write_str("the shipped default"),
        }
    }
}

/// The keys a model must be signed by (none: any model).
#[derive(Debug, Clone, Default)]
pub struct Trust {
    keys: Vec<PublicKey>,
}

impl Trust {
    pub fn new(keys: Vec<PublicKey>) -> Trust {
        Trust { keys }
    }

    /// `trusted_keys` and the keys in `trusted_keys_file`.
    pub fn from_config(predict: &PredictSection) -> anyhow::Result<Trust> {
        let mut keys = predict.trusted_keys.clone();
        if let Some(file) = &predict.trusted_keys_file {
            let text = std::fs::read_to_string(file)
                .map_err(|e| anyhow::anyhow!("reading [predict] trusted_keys_file {}: {e}", file.display()))?;
            let more = signature::parse_public_keys(&text)
                .map_err(|e| anyhow::anyhow!("[predict] trusted_keys_file {}: {e}", file.display()))?;
            anyhow::ensure!(
                !more.is_empty(),
                "[predict] trusted_keys_file {} holds no key: with none, every model would be refused but the \
                 shipped default; list a key (gridcast model keygen writes signing.pub), or remove the setting",
                file.display()
            );
            keys.extend(more);
        }
        Ok(Trust { keys })
    }

    /// Whether models must be signed.
    pub fn is_enforced(&self) -> bool {
        !self.keys.is_empty()
    }

    pub fn keys(&self) -> &[PublicKey] {
        &self.keys
    }

    /// Whether the model file `bytes` may be served, and why.
    pub fn check(&self, bytes: &[u8]) -> Result<Provenance, SignatureError> {
        if !self.is_enforced() {
            return Ok(Provenance::NotVerified);
        }
        Ok(match signature::accept(bytes, &self.keys)? {
            Accepted::SignedBy(key) => Provenance::SignedBy(key),
            Accepted::ShippedDefault => Provenance::ShippedDefault,
        })
    }
}

#[cfg(test)]
mod tests {
    use gridcast_core::model::Model;
    use gridcast_core::model::signature::SigningKey;

    use super::*;

    fn shipped() -> Vec<u8> {
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../models/default.gcm")).unwrap()
    }

    /// Another model: the shipped one with other metadata.
    fn other() -> Model {
        let mut m = Model::from_bytes(&shipped()).unwrap();
        m.meta.source = "another trainer".into();
        m
    }

    #[test]
    fn the_compiled_in_version_is_the_shipped_default_models() {
        let version = Model::from_bytes(&shipped()).unwrap().payload_sha256();
        assert_eq!(version, signature::SHIPPED_DEFAULT_VERSION);
    }

    #[test]
    fn with_keys_only_a_model_signed_by_one_or_the_shipped_default_is_served() {
        let (ours, theirs) = (SigningKey::from_seed(&[1; 32]), SigningKey::from_seed(&[2; 32]));
        let trust = Trust::new(vec![ours.public_key()]);
        assert_eq!(trust.check(&shipped()).unwrap(), Provenance::ShippedDefault);
        assert_eq!(trust.check(&other().to_signed_bytes(&ours)).unwrap(), Provenance::SignedBy(ours.public_key()));
        assert_eq!(trust.check(&other().to_bytes()).unwrap_err().reason(), "unsigned");
        assert_eq!(trust.check(&other().to_signed_bytes(&theirs)).unwrap_err().reason(), "untrusted_key");
        // The shipped default stays served, even signed by a stranger.
        let resigned = signature::sign(&shipped(), &theirs).unwrap();
        assert_eq!(trust.check(&resigned).unwrap(), Provenance::ShippedDefault);
    }

    #[test]
    fn without_keys_nothing_is_checked() {
        assert_eq!(Trust::default().check(&other().to_bytes()).unwrap(), Provenance::NotVerified);
    }
}
