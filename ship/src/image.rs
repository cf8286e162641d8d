//! Image configs and manifests: the JSON documents that turn layers into an
//! image, built and extended as values. Pure: the registry shell
//! (`registry.rs`) moves the bytes.
//!
//! Two operations, the two halves of `gridcast ship`:
//! - [`base_config`]: the predictor image, one layer (the binary, its default
//!   config), Entrypoint `/gridcast`, Cmd `predict --config ...`;
//! - [`append_layer`]: what `crane append` does to a config, one more diff_id
//!   and one more history entry, everything else kept as the base had it
//!   (including keys we do not know, so a base built by `docker build` keeps
//!   its Env, WorkingDir, ...).

use serde_json::{Map, Value, json};

use crate::layer::{Layer, sha256_digest};

/// Where the base image puts the binary; its Entrypoint.
pub const BINARY_PATH: &str = "/gridcast";
/// Where the base image puts the predictor config; Cmd passes it.
pub const PREDICT_CONFIG_PATH: &str = "/etc/gridcast/predict.toml";
/// Where the base image puts the CA certificates: where rustls (through
/// reqwest's platform verifier) and OpenSSL look on Linux. Without them the
/// predictor cannot build its HTTPS clients (blob store, InfluxDB over TLS)
/// and exits at start-up: a scratch image has no /etc/ssl.
pub const CA_CERTIFICATES_PATH: &str = "/etc/ssl/certs/ca-certificates.crt";
/// Where the model layer puts the model; the base's predictor config reads it
/// from there (`[predict] model`).
pub const MODEL_PATH: &str = "/models/current.gcm";
/// The predictor's `/metrics` and `/health` port in the base's config.
pub const HTTP_PORT: u16 = 9464;

/// Label on a model image: the model version (first 12 hex of the payload sha256).
pub const LABEL_MODEL_VERSION: &str = "io.gridcast.model.version";
/// Label on a model image: the full payload sha256.
pub const LABEL_MODEL_SHA256: &str = "io.gridcast.model.sha256";

/// Image configs carry a creation time; a fixed one keeps a rebuilt image
/// byte-identical (what reproducible-build tools write by default too).
const CREATED: &str = "1970-01-01T00:00:00Z";

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// A config or manifest we cannot build or extend.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{0} is not an ELF executable, so not a gridcast binary for a Linux image")]
    NotElf(String),
    #[error("{path}: ELF machine {machine:#x} has no OCI architecture name here (amd64, arm64, arm)")]
    UnknownArch { path: String, machine: u16 },
    #[error("the base image config is not an image config: {0}")]
    BadConfig(String),
}

/// The OCI platform a binary runs on, read from its ELF header: an image for
/// the Pi is built from an aarch64 binary on an x86_64 machine, and its
/// config must say arm64 or the engine refuses (or emulates) it.
pub fn elf_platform(path: &str, binary: &[u8]) -> Result<(&'static str, Option<&'static str>), ImageError> {
    if binary.len() < 20 || &binary[..4] != b"\x7fELF" {
        return Err(ImageError::NotElf(path.to_owned()));
    }
    // e_machine is at offset 18, in the file's byte order (EI_DATA at 5).
    let bytes = [binary[18], binary[19]];
    let machine = if binary[5] == 2 { u16::from_be_bytes(bytes) } else { u16::from_le_bytes(bytes) };
    match machine {
        0x3e => Ok(("amd64", None)),
        0xb7 => Ok(("arm64", Some("v8"))),
        0x28 => Ok(("arm", Some("v7"))),
        machine => Err(ImageError::UnknownArch { path: path.to_owned(), machine }),
    }
}

/// The base image's config: one layer (`diff_id`), the predictor as the
/// default command, `labels` added to ours.
pub fn base_config(
    architecture: &str,
    variant: Option<&str>,
    diff_id: &str,
    created_by: &str,
    labels: &[(String, String)],
) -> Vec<u8> {
    let mut all_labels = Map::new();
    all_labels.insert("org.opencontainers.image.title".into(), "gridcast".into());
    all_labels.insert(
        "org.opencontainers.image.description".into(),
        "gridcast predictor: the gridcast binary and a predict config; the model comes as its own top layer".into(),
    );
    all_labels.insert("org.opencontainers.image.licenses".into(), "Apache-2.0".into());
    for (key, value) in labels {
        all_labels.insert(key.clone(), value.clone().into());
    }
    let mut config = json!({
        "created": CREATED,
        "architecture": architecture,
        "os": "linux",
        "config": {
            "Entrypoint": [BINARY_PATH],
            "Cmd": ["predict", "--config", PREDICT_CONFIG_PATH],
            "ExposedPorts": { format!("{HTTP_PORT}/tcp"): {} },
            "Env": ["RUST_LOG=info"],
            "WorkingDir": "/",
            "Labels": all_labels,
        },
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
        "history": [{ "created": CREATED, "created_by": created_by }],
    });
    if let Some(variant) = variant {
        config["variant"] = variant.into();
    }
    serde_json::to_vec(&config).expect("a JSON value serializes")
}

/// The base's config with `layer` on top: its diff_id appended to
/// `rootfs.diff_ids`, a history entry for it, `labels` set; every other key
/// kept as the base had it.
pub fn append_layer(
    base_config: &[u8],
    layer: &Layer,
    created_by: &str,
    labels: &[(String, String)],
) -> Result<Vec<u8>, ImageError> {
    let mut config: Value =
        serde_json::from_slice(base_config).map_err(|e| ImageError::BadConfig(format!("not JSON ({e})")))?;
    let object = config.as_object_mut().ok_or_else(|| ImageError::BadConfig("not a JSON object".into()))?;
    let diff_ids = object
        .get_mut("rootfs")
        .and_then(|r| r.get_mut("diff_ids"))
        .and_then(Value::as_array_mut)
        .ok_or_else(|| ImageError::BadConfig("no rootfs.diff_ids".into()))?;
    diff_ids.push(layer.diff_id.clone().into());
    let history = object.entry("history").or_insert_with(|| Value::Array(vec![]));
    if let Some(history) = history.as_array_mut() {
        history.push(json!({ "created": CREATED, "created_by": created_by }));
    }
    if !labels.is_empty() {
        let runtime = object.entry("config").or_insert_with(|| json!({}));
        let runtime = runtime.as_object_mut().ok_or_else(|| ImageError::BadConfig("config is not an object".into()))?;
        let existing = runtime.entry("Labels").or_insert_with(|| json!({}));
        if existing.is_null() {
            *existing = json!({});
        }
        let existing =
            existing.as_object_mut().ok_or_else(|| ImageError::BadConfig("Labels is not an object".into()))?;
        for (key, value) in labels {
            existing.insert(key.clone(), value.clone().into());
        }
    }
    Ok(serde_json::to_vec(&config).expect("a JSON value serializes"))
}

/// A descriptor, as manifests list their config and layers.
pub fn descriptor(media_type: &str, blob: &[u8]) -> Value {
    json!({ "mediaType": media_type, "digest": sha256_digest(blob), "size": blob.len() })
}

/// An image manifest (OCI or Docker schema 2, by `media_type`) and its digest.
/// The digest is of exactly these bytes, which are what is PUT.
pub fn manifest(media_type: &str, config: Value, layers: Vec<Value>) -> (Vec<u8>, String) {
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": config,
        "layers": layers,
    });
    let bytes = serde_json::to_vec(&manifest).expect("a JSON value serializes");
    let digest = sha256_digest(&bytes);
    (bytes, digest)
}

/// The layer media type that fits a base manifest's kind: a Docker schema 2
/// manifest with an OCI layer in it is refused by some registries.
pub fn layer_media_type(manifest_media_type: Option<&str>) -> &'static str {
    match manifest_media_type {
        Some(DOCKER_MANIFEST) => DOCKER_LAYER_GZIP,
        _ => OCI_LAYER_GZIP,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::{LayerFile, build_layer};

    #[test]
    fn elf_machine_gives_the_platform() {
        let mut elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0\x3e\0".to_vec();
        assert_eq!(elf_platform("x", &elf).unwrap(), ("amd64", None));
        elf[18] = 0xb7;
        assert_eq!(elf_platform("x", &elf).unwrap(), ("arm64", Some("v8")));
        assert!(matches!(elf_platform("x.sh", b"#!/bin/sh\nexit 0\n"), Err(ImageError::NotElf(_))));
    }

    #[test]
    fn appending_a_layer_extends_diff_ids_and_history_and_keeps_the_rest() {
        let base = base_config("amd64", None, "sha256:aa", "base", &[]);
        let layer = build_layer(&[LayerFile::new(MODEL_PATH, 0o644, b"m".to_vec())]).unwrap();
        let labels = [(LABEL_MODEL_VERSION.to_owned(), "0123456789ab".to_owned())];
        let appended: Value = serde_json::from_slice(&append_layer(&base, &layer, "model", &labels).unwrap()).unwrap();
        assert_eq!(appended["rootfs"]["diff_ids"], json!(["sha256:aa", layer.diff_id]));
        assert_eq!(appended["history"].as_array().unwrap().len(), 2);
        assert_eq!(appended["config"]["Entrypoint"], json!([BINARY_PATH]));
        assert_eq!(appended["config"]["Labels"][LABEL_MODEL_VERSION], "0123456789ab");
        assert_eq!(appended["config"]["Labels"]["org.opencontainers.image.title"], "gridcast");
    }

    #[test]
    fn a_config_without_diff_ids_is_refused() {
        let layer = build_layer(&[LayerFile::new(MODEL_PATH, 0o644, b"m".to_vec())]).unwrap();
        assert!(matches!(append_layer(b"{\"os\":\"linux\"}", &layer, "x", &[]), Err(ImageError::BadConfig(_))));
        assert!(matches!(append_layer(b"[]", &layer, "x", &[]), Err(ImageError::BadConfig(_))));
    }

    #[test]
    fn the_manifest_digest_is_of_the_bytes_pushed() {
        let (bytes, digest) = manifest(OCI_MANIFEST, descriptor(OCI_CONFIG, b"{}"), vec![]);
        assert_eq!(digest, sha256_digest(&bytes));
        let parsed: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(parsed["config"]["size"], 2);
        assert_eq!(layer_media_type(Some(DOCKER_MANIFEST)), DOCKER_LAYER_GZIP);
        assert_eq!(layer_media_type(None), OCI_LAYER_GZIP);
    }
}
