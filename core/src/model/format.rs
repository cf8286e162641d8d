//! The native model file: one JSON header line, then a JSON payload.
//!
//! ```text
//! {"format":"gridcast-model","format_version":1,"payload_len":N,"payload_sha256":"..."}\n
//! {"format":...,"payload_sha256":"...","signature":{"alg":"ed25519","public_key":"...","sig":"..."}}\n  (signed)
//! {"meta":{...},"trees":[...]}
//! {"meta":{...},"feature_map":{...},"trees":[...]}     (an imported model)
//! ```
//! The header is read first, so a wrong file, a newer format or a truncated
//! or edited payload is refused with a message saying which, before any tree
//! is trusted. Both parts stay readable with `head` and `jq`.
//!
//! The optional `signature` (see [`super::signature`]) sits in the header so a
//! signed model stays one artifact through blob storage and the image's model
//! layer; a file without one is written byte for byte as before it existed.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::signature::HeaderSignature;
use super::{Model, ModelError, ModelMetadata, Tree};
use crate::features::FeatureMap;

pub const FORMAT_NAME: &str = "gridcast-model";
pub const FORMAT_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Header {
    pub format: String,
    pub format_version: u32,
    pub payload_len: u64,
    pub payload_sha256: String,
    /// Who signed the payload, and the signature; absent in unsigned files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<HeaderSignature>,
}

impl Header {
    /// The header line, newline included, then the payload.
    pub(crate) fn file(&self, payload: &[u8]) -> Vec<u8> {
        let mut out = serde_json::to_vec(self).expect("header serializes");
        out.push(b'\n');
        out.extend_from_slice(payload);
        out
    }
}

/// The header and payload of a file whose header, length and checksum check
/// out (the payload is not parsed).
pub(crate) fn split(bytes: &[u8]) -> Result<(Header, &[u8]), ModelError> {
    let nl = bytes.iter().position(|&b| b == b'\n').ok_or_else(|| ModelError::NotAModel("no header line".into()))?;
    let header: Header = serde_json::from_slice(&bytes[..nl])
        .map_err(|e| ModelError::NotAModel(format!("header is not a gridcast model header ({e})")))?;
    if header.format != FORMAT_NAME {
        return Err(ModelError::NotAModel(format!("format is {:?}, expected {FORMAT_NAME:?}", header.format)));
    }
    if header.format_version != FORMAT_VERSION {
        return Err(ModelError::UnsupportedVersion { found: header.format_version, supported: FORMAT_VERSION });
    }
    let payload = &bytes[nl + 1..];
    if payload.len() as u64 != header.payload_len {
        return Err(ModelError::Invalid(format!(
            "payload is {} bytes, header says {} (truncated or appended to?)",
            payload.len(),
            header.payload_len
        )));
    }
    let actual = hex::encode(Sha256::digest(payload));
    if actual != header.payload_sha256 {
        return Err(ModelError::ChecksumMismatch { expected: header.payload_sha256, actual });
    }
    Ok((header, payload))
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload {
    meta: ModelMetadata,
    /// Absent for models gridcast trained, so their files (and versions)
    /// are what they were before imports could be served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    feature_map: Option<FeatureMap>,
    trees: Vec<Tree>,
}

impl Model {
    /// Serialize to the native format.
    pub fn to_bytes(&self) -> Vec<u8> {
        let payload = serde_json::to_vec(&Payload {
            meta: self.meta.clone(),
            feature_map: self.feature_map().cloned(),
            trees: self.trees().to_vec(),
        })
        .expect("model payload serializes");
        let header = Header {
            format: FORMAT_NAME.into(),
            format_version: FORMAT_VERSION,
            payload_len: payload.len() as u64,
            payload_sha256: hex::encode(Sha256::digest(&payload)),
            signature: None,
        };
        header.file(&payload)
    }

    /// Parse and check a native model file.
    /// A signature, if any, is not checked here (see
    /// [`super::signature::verify`]): an unsigned or signed file loads alike.
    pub fn from_bytes(bytes: &[u8]) -> Result<Model, ModelError> {
        let (_, payload) = split(bytes)?;
        let p: Payload = serde_json::from_slice(payload)?;
        Model::build(p.meta, p.feature_map, p.trees)
    }

    /// sha256 of the payload, hex: the model's identity in logs and metadata.
    pub fn payload_sha256(&self) -> String {
        let bytes = self.to_bytes();
        let nl = bytes.iter().position(|&b| b == b'\n').unwrap_or(0);
        hex::encode(Sha256::digest(&bytes[nl + 1..]))
    }
}
