//! The two pushes of `gridcast ship`, as sequences of pure builds (`layer`,
//! `image`) and registry calls (`registry`). Every input is read and checked
//! before the first request, so a bad binary, model or reference pushes
//! nothing.

use gridcast_core::model::Model;
use gridcast_core::model::signature::{self as model_signature, SigningKey};
use oci_client::Reference;

use crate::ShipError;
use crate::image::{self, BINARY_PATH, CA_CERTIFICATES_PATH, MODEL_PATH, PREDICT_CONFIG_PATH};
use crate::layer::{LayerFile, build_layer};
use crate::registry::{PushReport, Registry, Sent};

/// The predictor config the base image carries unless told otherwise: the
/// one `deploy/docker/Dockerfile` copies too.
pub const DEFAULT_PREDICT_CONFIG: &str = include_str!("../../deploy/docker/predict.toml");

/// What `ship base` builds.
#[derive(Debug, Clone)]
pub struct BaseImage {
    /// Path of the `gridcast` binary (static, for the target's architecture).
    pub binary: String,
    /// The predictor config to put at `/etc/gridcast/predict.toml`.
    pub predict_config: String,
    /// Path of the CA certificate bundle to put at
    /// `/etc/ssl/certs/ca-certificates.crt` (the build machine's).
    pub ca_certificates: String,
    /// `REGISTRY/REPOSITORY:TAG` to push.
    pub image: String,
    /// Labels added to the image config.
    pub labels: Vec<(String, String)>,
    /// Plain HTTP to a registry that is not on this machine.
    pub insecure: bool,
}

/// What `ship model` builds.
#[derive(Debug, Clone)]
pub struct ModelImage {
    /// Path of the `.gcm` model file.
    pub model: String,
    /// The predictor base image, `REGISTRY/REPOSITORY:TAG` (or `@sha256:...`).
    pub base: String,
    /// `REGISTRY/REPOSITORY[:TAG]` to push; without a tag, the model version.
    pub image: String,
    pub insecure: bool,
    /// Sign the model with this key before it goes into the image (`None`:
    /// ship the file as it is, signed or not).
    pub signing_key: Option<std::sync::Arc<SigningKey>>,
}

/// Builds the base image from the binary and pushes it.
pub async fn push_base(base: &BaseImage) -> Result<PushReport, ShipError> {
    let binary = read(&base.binary)?;
    let ca_certificates = read(&base.ca_certificates)?;
    let (architecture, variant) = image::elf_platform(&base.binary, &binary)?;
    let target = parse_reference(&base.image)?;
    let layer = build_layer(&[
        LayerFile::new(BINARY_PATH, 0o755, binary),
        LayerFile::new(PREDICT_CONFIG_PATH, 0o644, base.predict_config.clone().into_bytes()),
        LayerFile::new(CA_CERTIFICATES_PATH, 0o644, ca_certificates),
    ])?;
    let created_by = format!("gridcast ship base: {BINARY_PATH}, {PREDICT_CONFIG_PATH}, {CA_CERTIFICATES_PATH}");
    let config = image::base_config(architecture, variant, &layer.diff_id, &created_by, &base.labels);
    let (manifest, digest) = image::manifest(
        image::OCI_MANIFEST,
        image::descriptor(image::OCI_CONFIG, &config),
        vec![image::descriptor(image::OCI_LAYER_GZIP, &layer.blob)],
    );

    let registry = Registry::connect(&[&target], base.insecure).await?;
    let size = layer.blob.len() as u64;
    let mut report = report(&target, digest);
    report.count(registry.put_blob(&target, layer.blob).await?, size);
    report.config_uploaded = registry.put_blob(&target, config).await? == Sent::Uploaded;
    registry.put_manifest(&target, manifest).await?;
    Ok(report)
}

/// A model checked and named, ready to ship by either path (daemonless here,
/// through an engine in `engine`): nothing has been sent anywhere yet.
#[derive(Debug, Clone)]
pub struct PreparedModel {
    /// The model file's bytes, exactly as they go into the image.
    pub bytes: Vec<u8>,
    /// The model version: the first 12 hex digits of `sha256`.
    pub version: String,
    /// The payload's sha256, hex.
    pub sha256: String,
    /// The base image.
    pub base: Reference,
    /// What to push: the given tag, else the model version.
    pub target: Reference,
}

impl PreparedModel {
    /// The labels a model image carries (version and full sha256).
    pub fn labels(&self) -> [(String, String); 2] {
        [
            (image::LABEL_MODEL_VERSION.to_owned(), self.version.clone()),
            (image::LABEL_MODEL_SHA256.to_owned(), self.sha256.clone()),
        ]
    }
}

/// Reads and validates the model and parses both references: the checks
/// both paths make before the first request, so a corrupt model or a bad
/// reference ships nothing.
pub fn prepare_model(ship: &ModelImage) -> Result<PreparedModel, ShipError> {
    prepare_model_bytes(ship, read(&ship.model)?)
}

/// [`prepare_model`] for a model already in memory (`gridcast retrain`
/// ships the bytes it published); `ship.model` only names it in messages.
pub fn prepare_model_bytes(ship: &ModelImage, bytes: Vec<u8>) -> Result<PreparedModel, ShipError> {
    let bad = |reason| ShipError::BadModel { path: ship.model.clone(), reason };
    let model = Model::from_bytes(&bytes).map_err(bad)?;
    let bytes = match &ship.signing_key {
        Some(key) => model_signature::sign(&bytes, key).map_err(bad)?,
        None => bytes,
    };
    let sha256 = model.payload_sha256();
    let version = sha256[..12].to_owned();
    let base = parse_reference(&ship.base)?;
    let target = if has_tag_or_digest(&ship.image) {
        parse_reference(&ship.image)?
    } else {
        parse_reference(&format!("{}:{version}", ship.image))?
    };
    if target.digest().is_some() {
        return Err(ShipError::BadReference {
            reference: ship.image.clone(),
            reason: "a push needs a tag, not a digest".into(),
        });
    }
    Ok(PreparedModel { bytes, version, sha256, base, target })
}

/// Puts the model on top of the base image as one layer and pushes the
/// result; the base's layers are reused, not sent again.
pub async fn push_model(ship: &ModelImage) -> Result<PushReport, ShipError> {
    push_prepared(&prepare_model(ship)?, ship.insecure).await
}

/// [`push_model`] after the checks: pushes `prepared` as it is (tests use it
/// to ship a model `prepare_model` would refuse).
pub async fn push_prepared(prepared: &PreparedModel, insecure: bool) -> Result<PushReport, ShipError> {
    let labels = prepared.labels();
    let PreparedModel { bytes, version, base, target, .. } = prepared;
    let layer = build_layer(&[LayerFile::new(MODEL_PATH, 0o644, bytes.clone())])?;

    let registry = Registry::connect(&[base, target], insecure).await?;
    let (base_manifest, base_config) = registry.pull_manifest_and_config(base).await?;
    let created_by = format!("gridcast ship model: {MODEL_PATH} (model version {version})");
    let config = image::append_layer(&base_config, &layer, &created_by, &labels)?;

    let manifest_type = base_manifest.media_type.clone().unwrap_or_else(|| image::OCI_MANIFEST.to_owned());
    let layer_type = image::layer_media_type(Some(&manifest_type));
    let mut layers: Vec<serde_json::Value> = Vec::new();
    let mut report = report(target, String::new());
    for base_layer in &base_manifest.layers {
        let size = u64::try_from(base_layer.size).unwrap_or(0);
        report.count(registry.carry_blob(base, target, base_layer).await?, size);
        layers.push(serde_json::to_value(base_layer).expect("a descriptor serializes"));
    }
    layers.push(image::descriptor(layer_type, &layer.blob));
    let (manifest, digest) =
        image::manifest(&manifest_type, image::descriptor(&base_manifest.config.media_type, &config), layers);
    report.digest = digest;

    let size = layer.blob.len() as u64;
    report.count(registry.put_blob(target, layer.blob).await?, size);
    report.config_uploaded = registry.put_blob(target, config).await? == Sent::Uploaded;
    registry.put_manifest(target, manifest).await?;
    Ok(report)
}

fn report(target: &Reference, digest: String) -> PushReport {
    PushReport { image: target.whole(), digest, uploaded: vec![], reused: vec![], config_uploaded: false }
}

fn read(path: &str) -> Result<Vec<u8>, ShipError> {
    std::fs::read(path).map_err(|reason| ShipError::Read { path: path.to_owned(), reason })
}

/// An image reference, or an error naming it.
pub fn parse_reference(reference: &str) -> Result<Reference, ShipError> {
    reference
        .parse::<Reference>()
        .map_err(|e| ShipError::BadReference { reference: reference.to_owned(), reason: e.to_string() })
}

/// Whether `reference` names a tag or digest: a ':' or '@' after the last
/// '/' (a ':' before it is the registry's port).
fn has_tag_or_digest(reference: &str) -> bool {
    let last = reference.rsplit('/').next().unwrap_or(reference);
    last.contains(':') || last.contains('@')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_is_told_from_a_registry_port() {
        assert!(!has_tag_or_digest("127.0.0.1:5000/gridcast/predictor"));
        assert!(has_tag_or_digest("127.0.0.1:5000/gridcast/predictor:v1"));
        assert!(has_tag_or_digest("reg/gridcast@sha256:00"));
        assert!(!has_tag_or_digest("gridcast"));
    }

    #[test]
    fn the_default_predict_config_reads_the_model_from_the_model_layer() {
        // Loaded as `gridcast predict --config` loads it: every key known.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("predict.toml");
        std::fs::write(&path, DEFAULT_PREDICT_CONFIG).unwrap();
        let config = gridcast_predictor::config::load(Some(&path)).unwrap();
        assert_eq!(config.predict.model, MODEL_PATH);
    }
}
