//! Signed model files: who may ship a model.
//!
//! A model file's sha256 only says its payload is what its own header says;
//! anyone who can write the bucket can write both. A signature says that the
//! holder of a private key vouched for this payload: ed25519 over a
//! domain-separated message binding the format version, the payload length
//! and the payload's sha256 ([`message`]), so a signature made for one
//! payload fits no other, nor anything else the same key may sign.
//!
//! The signature sits in the header (`"signature":{"alg":"ed25519",
//! "public_key":HEX,"sig":HEX}`), so a signed model stays one file through
//! blob storage and an image's model layer, and its version (the payload
//! sha256) is the same signed or not. Signing never touches the payload.
//!
//! Keys as text are hex: a private key is its 32-byte seed (64 hex digits),
//! a public key its 32-byte compressed point (64 hex digits). A private key
//! never prints: [`SigningKey`]'s `Debug` shows its public half only.
//!
//! ed25519-dalek (RustCrypto's, audited, pure Rust, no C library on the
//! edge) with `verify_strict`: no malleable signatures, no weak keys.

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::Signer as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::format::{self, Header};
use super::{Model, ModelError};

/// The version (payload sha256) of `models/default.gcm`, the model gridcast
/// ships with the binary (not through a bucket): accepted with or without a
/// signature ([`accept`]). A test in the predictor checks it is that file's.
pub const SHIPPED_DEFAULT_VERSION: &str = "d74e6c361a14ec268e10ebe460e66f2f99aed4b57e876d76d0a0589d0a3ab64e";

/// The one algorithm a header may name.
pub const ALGORITHM: &str = "ed25519";

/// What a signature's message starts with: a signature over a model file
/// is never one over anything else.
const DOMAIN: &[u8] = b"gridcast-model-signature-v1\0";

/// The header's `signature` field, as text.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HeaderSignature {
    alg: String,
    public_key: String,
    sig: String,
}

/// Why a model's signature was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    #[error("the model is not signed (sign it with `gridcast model sign --key-file KEY MODEL`)")]
    Unsigned,
    #[error("the model is signed by key {key}, which is not one of the trusted keys")]
    UntrustedKey { key: Box<PublicKey> },
    #[error(
        "the model's signature by key {key} does not verify: the file was changed after it was signed, or the \
         signature is forged"
    )]
    BadSignature { key: Box<PublicKey> },
    #[error("the model's signature is malformed: {0}")]
    Malformed(String),
    #[error(transparent)]
    File(#[from] ModelError),
}

impl SignatureError {
    /// A short label for metrics (`reason="unsigned"`).
    pub fn reason(&self) -> &'static str {
        match self {
            SignatureError::Unsigned => "unsigned",
            SignatureError::UntrustedKey { .. } => "untrusted_key",
            SignatureError::BadSignature { .. } => "bad_signature",
            SignatureError::Malformed(_) => "malformed_signature",
            SignatureError::File(_) => "invalid",
        }
    }
}

/// A key text that is not a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(String);

fn key_bytes(text: &str, what: &str) -> Result<[u8; 32], KeyError> {
    let text = text.trim();
    // The error never quotes the text, nor hex's message (it names the
    // first bad character): the text may be a private key with a typo.
    let bytes = hex::decode(text).map_err(|_| {
        KeyError(format!("{what} is not hex: expected 64 hex digits, as `gridcast model keygen` writes"))
    })?;
    bytes.try_into().map_err(|b: Vec<u8>| KeyError(format!("{what} is {} bytes, expected 32 (64 hex digits)", b.len())))
}

/// An ed25519 public key: who may sign the models a predictor serves.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PublicKey(ed25519_dalek::VerifyingKey);

impl PublicKey {
    /// The first 16 hex digits: enough to tell keys apart in a log line.
    pub fn id(&self) -> String {
        hex::encode(&self.0.as_bytes()[..8])
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;
    fn from_str(text: &str) -> Result<Self, KeyError> {
        let bytes = key_bytes(text, "the public key")?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
            .map_err(|_| KeyError("the public key is not a point of the curve".into()))?;
        if key.is_weak() {
            return Err(KeyError("the public key is a weak key (of small order): refused".into()));
        }
        Ok(PublicKey(key))
    }
}

impl TryFrom<String> for PublicKey {
    type Error = KeyError;
    fn try_from(text: String) -> Result<Self, KeyError> {
        text.parse()
    }
}

impl From<PublicKey> for String {
    fn from(key: PublicKey) -> String {
        key.to_string()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0.as_bytes()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

/// An ed25519 private key (zeroed when dropped). Never printed: `Debug`
/// names its public key only; [`SigningKey::expose_hex`] is for the one
/// place that writes it to its file.
pub struct SigningKey(ed25519_dalek::SigningKey);

impl SigningKey {
    /// The key of a 32-byte seed (from the OS's random source for a new one).
    pub fn from_seed(seed: &[u8; 32]) -> SigningKey {
        SigningKey(ed25519_dalek::SigningKey::from_bytes(seed))
    }

    /// A key file's or variable's text: 64 hex digits, surrounding
    /// whitespace ignored. The error never quotes the text.
    pub fn from_hex(text: &str) -> Result<SigningKey, KeyError> {
        Ok(SigningKey::from_seed(&key_bytes(text, "the signing key")?))
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// The seed as hex: what the private key file holds.
    pub fn expose_hex(&self) -> String {
        hex::encode(self.0.to_bytes())
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey(public {}, private ***)", self.public_key())
    }
}

/// What is signed: the domain, the format version, the payload's length and
/// its sha256.
fn message(format_version: u32, payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + 4 + 8 + 32);
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(&format_version.to_be_bytes());
    m.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    m.extend_from_slice(&Sha256::digest(payload));
    m
}

fn signed(mut header: Header, payload: &[u8], key: &SigningKey) -> Vec<u8> {
    let sig = key.0.sign(&message(header.format_version, payload));
    header.signature = Some(HeaderSignature {
        alg: ALGORITHM.into(),
        public_key: key.public_key().to_string(),
        sig: hex::encode(sig.to_bytes()),
    });
    header.file(payload)
}

/// A model file, signed by `key`: the same payload, a header with the
/// signature (replacing any earlier one). The file must load as a model
/// first: a corrupt or invalid model is never signed.
pub fn sign(bytes: &[u8], key: &SigningKey) -> Result<Vec<u8>, ModelError> {
    Model::from_bytes(bytes)?;
    let (header, payload) = format::split(bytes)?;
    Ok(signed(header, payload, key))
}

impl Model {
    /// [`Model::to_bytes`], signed by `key`.
    pub fn to_signed_bytes(&self, key: &SigningKey) -> Vec<u8> {
        let bytes = self.to_bytes();
        let (header, payload) = format::split(&bytes).expect("a model's own bytes split");
        signed(header, payload, key)
    }
}

/// The key a file says signed it, not verified (`None`: unsigned).
pub fn claimed_signer(bytes: &[u8]) -> Result<Option<PublicKey>, SignatureError> {
    let (header, _) = format::split(bytes)?;
    header.signature.map(|s| parse_signature(&s).map(|(key, _)| key)).transpose()
}

fn parse_signature(s: &HeaderSignature) -> Result<(PublicKey, ed25519_dalek::Signature), SignatureError> {
    if s.alg != ALGORITHM {
        return Err(SignatureError::Malformed(format!("algorithm {:?}, expected {ALGORITHM:?}", s.alg)));
    }
    let key: PublicKey = s.public_key.parse().map_err(|e: KeyError| SignatureError::Malformed(e.0))?;
    let sig = hex::decode(&s.sig)
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .ok_or_else(|| SignatureError::Malformed("`sig` is not 128 hex digits".into()))?;
    Ok((key, ed25519_dalek::Signature::from_bytes(&sig)))
}

/// Check that a model file is signed by one of `trusted`; the key that
/// signed it. The file's header, length and checksum are checked too (not
/// its trees: [`Model::from_bytes`] does that).
pub fn verify(bytes: &[u8], trusted: &[PublicKey]) -> Result<PublicKey, SignatureError> {
    let (header, payload) = format::split(bytes)?;
    let Some(signature) = &header.signature else { return Err(SignatureError::Unsigned) };
    let (key, sig) = parse_signature(signature)?;
    if !trusted.contains(&key) {
        return Err(SignatureError::UntrustedKey { key: Box::new(key) });
    }
    key.0
        .verify_strict(&message(header.format_version, payload), &sig)
        .map_err(|_| SignatureError::BadSignature { key: Box::new(key) })?;
    Ok(key)
}

/// Public keys as a keys file holds them: one a line (64 hex digits), `#`
/// comments and blank lines ignored; a bad line is named by its number.
pub fn parse_public_keys(text: &str) -> Result<Vec<PublicKey>, KeyError> {
    text.lines()
        .enumerate()
        .map(|(i, line)| (i, line.split('#').next().unwrap_or("").trim()))
        .filter(|(_, line)| !line.is_empty())
        .map(|(i, line)| line.parse().map_err(|KeyError(e)| KeyError(format!("line {}: {e}", i + 1))))
        .collect()
}

/// Why a model file may be served where keys are trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// Signed by this trusted key.
    SignedBy(PublicKey),
    /// The shipped default model ([`SHIPPED_DEFAULT_VERSION`]).
    ShippedDefault,
}

/// [`verify`], and the shipped default model accepted signed or not: what
/// the predictor and the agent serve when they trust `trusted`.
pub fn accept(bytes: &[u8], trusted: &[PublicKey]) -> Result<Accepted, SignatureError> {
    match verify(bytes, trusted) {
        Ok(key) => Ok(Accepted::SignedBy(key)),
        Err(SignatureError::File(e)) => Err(SignatureError::File(e)),
        Err(e) => {
            let (header, _) = format::split(bytes)?;
            if header.payload_sha256 == SHIPPED_DEFAULT_VERSION { Ok(Accepted::ShippedDefault) } else { Err(e) }
        }
    }
}
