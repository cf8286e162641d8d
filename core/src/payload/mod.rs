//! Payload decoding: MQTT message bytes in, [`Reading`]s out.
//!
//! This is the first step of the ingest flow (MQTT -> decode -> windows ->
//! InfluxDB): the ingest crate hands every message body to [`Decoder::decode`]
//! and pushes the readings into [`crate::window::Windows`]. The layouts are the
//! Clemap meter's (`shared/clemap/README.md`):
//!
//! - binary feature 16 (ten-second means) and 17 (one-minute means),
//! - our raw 12 Hz readings: feature 18 by default, the type-16 layout, one or
//!   more 70-byte records per message ([`binary`]),
//! - JSON objects or arrays of objects with a configurable key map ([`json`]).
//!
//! Decoding never panics and is all-or-nothing per payload: a message that
//! fails leaves `out` untouched, so a half-good batch is never half-counted.

mod binary;
mod json;
pub(crate) mod rfc3339;

#[cfg(test)]
mod json_tests;
#[cfg(test)]
mod tests;

pub use binary::{encode_one_minute, encode_raw, encode_ten_second};
pub use json::{JsonFormat, TsUnit};

use crate::reading::Reading;

/// Feature type of the meter's ten-second means.
pub const FEATURE_TEN_SECOND: u8 = 16;
/// Feature type of the meter's one-minute means.
pub const FEATURE_ONE_MINUTE: u8 = 17;
/// Default feature type of raw readings (configurable: [`DecoderConfig::raw_feature_type`]).
pub const FEATURE_RAW: u8 = 18;
/// One raw record: the type-16 layout, `=Bd12sBqqqqqq`.
pub const RAW_RECORD_LEN: usize = 70;
/// A type-16 message, `=Bd12sBqqqqqq`.
pub const TEN_SECOND_LEN: usize = 70;
/// A type-17 message, `=Bd12sB21i3q`.
pub const ONE_MINUTE_LEN: usize = 130;

/// Timestamps outside [2000-01-01, 2100-01-01) are a meter with a broken
/// clock or a misread field, never real data; accepting them would open
/// windows decades away and poison the watermark.
const MIN_TS_SECS: f64 = 946_684_800.0;
const MAX_TS_SECS: f64 = 4_102_444_800.0;

/// Default [`DecoderConfig::max_payload_bytes`]: 1 MiB, about 15,000 raw
/// records (100 meters' 12 Hz readings for 12 s in one message).
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 1 << 20;
/// Default [`DecoderConfig::max_readings_per_message`].
pub const DEFAULT_MAX_READINGS_PER_MESSAGE: usize = 20_000;

/// How to read payloads; part of the ingest config file.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DecoderConfig {
    /// First byte that marks a raw binary payload (default 18).
    pub raw_feature_type: u8,
    /// Key map for JSON payloads.
    pub json: JsonFormat,
    /// A larger payload is rejected before it is read (counted, kept
    /// truncated in the rejected log): memory per message stays bounded.
    pub max_payload_bytes: usize,
    /// A payload with more readings is rejected, and a JSON array stops
    /// being read at the first reading over the limit.
    pub max_readings_per_message: usize,
}

impl Default for DecoderConfig {
    fn default() -> Self {
        DecoderConfig {
            raw_feature_type: FEATURE_RAW,
            json: JsonFormat::default(),
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            max_readings_per_message: DEFAULT_MAX_READINGS_PER_MESSAGE,
        }
    }
}

impl DecoderConfig {
    /// Reject configs that would make payloads ambiguous. [`Decoder::new`]
    /// cannot fail, so config loading should call this.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let t = self.raw_feature_type;
        if t == FEATURE_TEN_SECOND || t == FEATURE_ONE_MINUTE || t == b'{' || t == b'[' || t.is_ascii_whitespace() {
            return Err(ConfigError::RawTypeCollides(t));
        }
        if self.max_payload_bytes < ONE_MINUTE_LEN {
            return Err(ConfigError::TooSmall { key: "max_payload_bytes", min: ONE_MINUTE_LEN });
        }
        if self.max_readings_per_message == 0 {
            return Err(ConfigError::TooSmall { key: "max_readings_per_message", min: 1 });
        }
        let j = &self.json;
        if j.ts_key == j.sensor_key {
            return Err(ConfigError::KeyCollides(j.ts_key.clone()));
        }
        for key in [&j.ts_key, &j.sensor_key] {
            if j.fields.contains_key(key) {
                return Err(ConfigError::KeyCollides(key.clone()));
            }
        }
        Ok(())
    }
}

/// A [`DecoderConfig`] that cannot work.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum ConfigError {
    #[error("raw_feature_type {0} collides with feature 16/17 or with the start of a JSON payload")]
    RawTypeCollides(u8),
    #[error("JSON key {0:?} is used for more than one of ts_key, sensor_key and fields")]
    KeyCollides(String),
    #[error("{key} must be at least {min}")]
    TooSmall { key: &'static str, min: usize },
}

/// Why a payload was rejected. The ingest loop counts these by [`DecodeError::kind`]
/// and logs the message, which names the offending input.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum DecodeError {
    #[error("empty payload")]
    Empty,
    #[error("payload of {bytes} bytes is over the limit of {max} ([decode] max_payload_bytes)")]
    TooLarge { bytes: usize, max: usize },
    #[error("payload has more than {max} readings ([decode] max_readings_per_message)")]
    TooManyReadings { max: usize },
    #[error("unknown feature type {0} (first byte 0x{0:02x}), and the payload is not JSON")]
    UnknownType(u8),
    #[error(
        "payload of feature type {feature_type} is {actual} bytes, expected {}{expected}",
        if *feature_type == FEATURE_TEN_SECOND || *feature_type == FEATURE_ONE_MINUTE {
            ""
        } else {
            "a positive multiple of "
        }
    )]
    WrongLength { feature_type: u8, expected: usize, actual: usize },
    #[error("record {record} of a raw batch has feature type {found}, expected {expected}")]
    BatchTypeMismatch { record: usize, expected: u8, found: u8 },
    #[error("{field} is not a finite number")]
    NotFinite { field: &'static str },
    #[error("timestamp {0} s is outside 2000-01-01..2100-01-01")]
    BadTimestamp(f64),
    #[error("timestamp {0:?} is not an RFC 3339 date-time")]
    BadTimestampText(String),
    #[error("invalid JSON payload: {0}")]
    Json(String),
    #[error("JSON reading has no {0:?} key")]
    MissingKey(String),
    #[error("JSON reading of sensor {0:?} has none of the configured field keys")]
    NoFields(String),
}

impl DecodeError {
    /// A short stable label, for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::Empty => "empty",
            DecodeError::TooLarge { .. } => "too_large",
            DecodeError::TooManyReadings { .. } => "too_many_readings",
            DecodeError::UnknownType(_) => "unknown_type",
            DecodeError::WrongLength { .. } => "wrong_length",
            DecodeError::BatchTypeMismatch { .. } => "batch_type_mismatch",
            DecodeError::NotFinite { .. } => "not_finite",
            DecodeError::BadTimestamp(_) | DecodeError::BadTimestampText(_) => "bad_timestamp",
            DecodeError::Json(_) => "json",
            DecodeError::MissingKey(_) => "missing_key",
            DecodeError::NoFields(_) => "no_fields",
        }
    }
}

/// Turns payloads into readings. Holds only the config: cheap to share
/// between tasks (`Sync`), no per-call state.
#[derive(Debug, Clone)]
pub struct Decoder {
    config: DecoderConfig,
}

impl Decoder {
    pub fn new(config: DecoderConfig) -> Decoder {
        Decoder { config }
    }

    pub fn config(&self) -> &DecoderConfig {
        &self.config
    }

    /// Append the payload's readings to `out` and return how many. On error
    /// `out` is left as it was.
    pub fn decode(&self, payload: &[u8], out: &mut Vec<Reading>) -> Result<usize, DecodeError> {
        let before = out.len();
        let result = self.decode_into(payload, out);
        match result {
            Ok(()) => Ok(out.len() - before),
            Err(e) => {
                out.truncate(before);
                Err(e)
            }
        }
    }

    fn decode_into(&self, payload: &[u8], out: &mut Vec<Reading>) -> Result<(), DecodeError> {
        let Some(&first) = payload.first() else {
            return Err(DecodeError::Empty);
        };
        let max = self.config.max_payload_bytes;
        if payload.len() > max {
            return Err(DecodeError::TooLarge { bytes: payload.len(), max });
        }
        let max_readings = self.config.max_readings_per_message;
        if first == self.config.raw_feature_type && payload.len() / RAW_RECORD_LEN > max_readings {
            return Err(DecodeError::TooManyReadings { max: max_readings });
        }
        // Binary types first: their first byte is never whitespace or a
        // bracket (validate() keeps the raw type clear of those).
        match first {
            FEATURE_TEN_SECOND => binary::decode_ten_second(payload, out),
            FEATURE_ONE_MINUTE => binary::decode_one_minute(payload, out),
            t if t == self.config.raw_feature_type => binary::decode_raw(t, payload, out),
            _ => match payload.iter().find(|b| !b.is_ascii_whitespace()) {
                Some(b'{' | b'[') => json::decode(&self.config.json, max_readings, payload, out),
                None => Err(DecodeError::Empty),
                Some(_) => Err(DecodeError::UnknownType(first)),
            },
        }
    }
}

/// Event time in ms from a timestamp in seconds (binary payloads, JSON numbers).
fn ts_ms_from_secs(secs: f64) -> Result<i64, DecodeError> {
    check_secs(secs)?;
    Ok((secs * 1000.0).round() as i64)
}

/// Event time in ms from a timestamp already in ms (JSON with `ts_unit = millis`).
fn ts_ms_from_millis(ms: f64) -> Result<i64, DecodeError> {
    check_secs(ms / 1000.0)?;
    Ok(ms.round() as i64)
}

fn check_secs(secs: f64) -> Result<(), DecodeError> {
    if !secs.is_finite() {
        return Err(DecodeError::NotFinite { field: "timestamp" });
    }
    if !(MIN_TS_SECS..MAX_TS_SECS).contains(&secs) {
        return Err(DecodeError::BadTimestamp(secs));
    }
    Ok(())
}
