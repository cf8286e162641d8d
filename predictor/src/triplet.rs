//! Triplets: a misprediction kept for retraining, (inputs, prediction,
//! actual) plus where and when it happened and which model made it. Also
//! how a batch of them becomes one object in blob storage: newline-delimited
//! JSON, compressed, under a key made only from the batch's spool sequence
//! numbers, so uploading the same batch again writes the same object.
//!
//! Pure code: the spool stores [`Triplet::to_json_line`] bytes, the uploader
//! calls [`encode_batch`] and [`object_key`].

use std::io::Write;

use serde::{Deserialize, Serialize};

/// One misprediction. Feature values are `null` where the feature was
/// missing (NaN in the row: JSON has no NaN).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Triplet {
    /// Spool sequence number: unique per device, the object key is built from it.
    pub seq: u64,
    pub sensor: String,
    /// sha256 of the model file's payload (hex).
    pub model_version: String,
    /// Feature names, in row order.
    pub feature_names: Vec<String>,
    /// The row the prediction was made from (interval `features_start_ms`).
    pub features: Vec<Option<f32>>,
    /// Predicted total power of the target interval, W.
    pub predicted: f64,
    /// Measured total power of the target interval, W.
    pub actual: f64,
    /// `predicted - actual`, W.
    pub error: f64,
    /// Start of the interval the features describe, Unix ms.
    pub features_start_ms: i64,
    /// Start and end of the predicted (target) interval, Unix ms.
    pub interval_start_ms: i64,
    pub interval_end_ms: i64,
    /// Intervals between the features' interval and the target.
    pub horizon: u32,
    /// The misprediction rule that flagged it (`absolute`, `relative`, `adaptive`).
    pub rule: String,
}

impl Triplet {
    /// One line of JSON, newline included: the spool record and the NDJSON line.
    pub fn to_json_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).expect("a triplet serializes");
        line.push(b'\n');
        line
    }

    pub fn from_json(line: &[u8]) -> Result<Triplet, serde_json::Error> {
        serde_json::from_slice(line)
    }
}

/// How a batch object is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    #[default]
    Gzip,
    Zstd,
}

impl Compression {
    pub fn extension(self) -> &'static str {
        match self {
            Compression::Gzip => "ndjson.gz",
            Compression::Zstd => "ndjson.zst",
        }
    }
}

/// Concatenate spooled lines and compress them. Deterministic: the same
/// lines always give the same bytes (gzip header without a timestamp).
pub fn encode_batch(lines: &[Vec<u8>], compression: Compression) -> std::io::Result<Vec<u8>> {
    let raw: Vec<u8> = lines.iter().flat_map(|l| l.iter().copied()).collect();
    match compression {
        Compression::Gzip => {
            let mut enc = flate2::GzBuilder::new().mtime(0).write(Vec::new(), flate2::Compression::default());
            enc.write_all(&raw)?;
            enc.finish()
        }
        Compression::Zstd => zstd::encode_all(&raw[..], 3),
    }
}

/// Decompress a batch object into its triplets (tests, tools).
pub fn decode_batch(bytes: &[u8], compression: Compression) -> anyhow::Result<Vec<Triplet>> {
    let raw = match compression {
        Compression::Gzip => {
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(bytes), &mut out)?;
            out
        }
        Compression::Zstd => zstd::decode_all(bytes)?,
    };
    raw.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| Triplet::from_json(l).map_err(anyhow::Error::from))
        .collect()
}

/// `{prefix}/device={device}/date=YYYY-MM-DD/{spool}-{first:020}-{last:020}.ndjson.gz`.
///
/// The date is the UTC day of the batch's first target interval, so it too
/// depends only on the batch's contents. `spool` is the spool's creation
/// time (Unix ms, 13 digits): sequence numbers restart in a new spool (a
/// device reinstalled, its disk replaced), and without it the new spool's
/// first batch would overwrite an object the old one stored.
pub fn object_key(
    prefix: &str,
    device: &str,
    first_interval_ms: i64,
    spool: u64,
    (first_seq, last_seq): (u64, u64),
    compression: Compression,
) -> String {
    let date = chrono::DateTime::from_timestamp_millis(first_interval_ms)
        .map_or_else(|| "1970-01-01".to_string(), |d| d.format("%Y-%m-%d").to_string());
    let prefix = prefix.trim_matches('/');
    let sep = if prefix.is_empty() { "" } else { "/" };
    format!(
        "{prefix}{sep}device={device}/date={date}/{spool:013}-{first_seq:020}-{last_seq:020}.{}",
        compression.extension()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn triplet(seq: u64) -> Triplet {
        Triplet {
            seq,
            sensor: "meter-1".into(),
            model_version: "d74e6c".into(),
            feature_names: vec!["p_l1".into(), "total_lag1".into()],
            features: vec![Some(230.5), None],
            predicted: 1200.0,
            actual: 1500.0,
            error: -300.0,
            features_start_ms: 1_763_683_140_000,
            interval_start_ms: 1_763_683_200_000,
            interval_end_ms: 1_763_683_260_000,
            horizon: 1,
            rule: "absolute".into(),
        }
    }

    #[test]
    fn triplet_round_trips_through_json_with_missing_features_as_null() {
        let t = triplet(7);
        let line = t.to_json_line();
        assert_eq!(*line.last().unwrap(), b'\n');
        let text = std::str::from_utf8(&line).unwrap();
        assert!(text.contains("\"features\":[230.5,null]"), "{text}");
        assert_eq!(Triplet::from_json(&line).unwrap(), t);
    }

    #[test]
    fn batches_decode_back_for_both_compressions_and_are_deterministic() {
        let lines: Vec<Vec<u8>> = (0..5).map(|i| triplet(i).to_json_line()).collect();
        for c in [Compression::Gzip, Compression::Zstd] {
            let a = encode_batch(&lines, c).unwrap();
            assert_eq!(a, encode_batch(&lines, c).unwrap(), "{c:?} output must not depend on the time");
            let back = decode_batch(&a, c).unwrap();
            assert_eq!(back.iter().map(|t| t.seq).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
        }
    }

    #[test]
    fn object_keys_are_partitioned_and_named_by_sequence_numbers() {
        // 2025-11-21T00:00:00Z
        let key = object_key("triplets/", "pi-7", 1_763_683_200_000, 1_763_000_000_000, (5, 12), Compression::Gzip);
        assert_eq!(
            key,
            "triplets/device=pi-7/date=2025-11-21/1763000000000-00000000000000000005-00000000000000000012.ndjson.gz"
        );
        let key = object_key("", "pi-7", 0, 7, (0, 0), Compression::Zstd);
        assert_eq!(
            key,
            "device=pi-7/date=1970-01-01/0000000000007-00000000000000000000-00000000000000000000.ndjson.zst"
        );
    }

    #[test]
    fn keys_sort_in_upload_order() {
        let a = object_key("p", "d", 0, 1, (9, 10), Compression::Gzip);
        let b = object_key("p", "d", 0, 1, (11, 200), Compression::Gzip);
        let c = object_key("p", "d", 0, 2, (0, 5), Compression::Gzip);
        assert!(a < b && b < c, "by spool, then by sequence number");
    }
}
