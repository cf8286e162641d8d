//! The mispredictions the predictor uploaded, as training weights.
//!
//! The predictor writes batches of triplets as compressed NDJSON under
//! `{prefix}/device={d}/date=YYYY-MM-DD/{spool}-{first}-{last}.ndjson.gz`
//! (or `.zst`). A triplet names the sensor, the model's feature names and
//! the start of the interval its features describe: the row of the feature
//! table the champion got wrong. Retrain weights those rows up, so the
//! challenger learns most where the champion failed.
//!
//! Listing follows the partitions: devices, then only the dates the history
//! covers, then their objects. Nothing here is fatal: an object that does
//! not decode, a line that is not a triplet, a triplet of another feature
//! spec or another sensor are counted ([`TripletTally`]) and skipped.

use std::collections::BTreeSet;

use futures::TryStreamExt;
use gridcast_edge::store;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::Deserialize;

use super::config::TripletsConfig;

/// What retrain needs of a triplet. Unknown fields are ignored: a newer
/// predictor may add some.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Misprediction {
    pub sensor: String,
    pub feature_names: Vec<String>,
    /// Start of the interval the features describe, Unix ms.
    pub features_start_ms: i64,
}

/// What was read, and why the rest was skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TripletTally {
    pub objects: u64,
    /// Objects that did not decompress (named in the log).
    pub corrupt_objects: u64,
    /// Lines that are not a triplet.
    pub bad_lines: u64,
    pub triplets: u64,
    pub other_sensor: u64,
    /// Triplets whose feature names are not the spec being trained.
    pub other_spec: u64,
    /// Triplets that marked a training row (outside the holdout).
    pub used: u64,
}

impl std::fmt::Display for TripletTally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} triplets in {} objects: {} weighted training rows, skipped {} of other sensors, \
             {} of another feature spec, {} unreadable lines, {} corrupt objects",
            self.triplets,
            self.objects,
            self.used,
            self.other_sensor,
            self.other_spec,
            self.bad_lines,
            self.corrupt_objects
        )
    }
}

/// The mispredictions of `sensor` (all sensors when `None`) in the
/// partitions dated `from_day..=to_day` (`YYYY-MM-DD`), with feature names
/// `names`. Returns the start (Unix s) of every mispredicted features row.
pub async fn load(
    config: &TripletsConfig,
    sensor: Option<&str>,
    names: &[String],
    (from_day, to_day): (&str, &str),
    tally: &mut TripletTally,
) -> anyhow::Result<BTreeSet<i64>> {
    let Some(url) = &config.store else { return Ok(BTreeSet::new()) };
    let (bucket, base) = store::open_with(url, &config.options)?;
    let mut marked = BTreeSet::new();
    for key in object_keys(bucket.as_ref(), &base, config, (from_day, to_day)).await? {
        let bytes = bucket
            .get(&key)
            .await
            .map_err(|e| anyhow::anyhow!("reading triplets {url}/{key}: {e}"))?
            .bytes()
            .await
            .map_err(|e| anyhow::anyhow!("reading triplets {url}/{key}: {e}"))?;
        tally.objects += 1;
        let raw = match decompress(key.as_ref(), &bytes) {
            Ok(raw) => raw,
            Err(e) => {
                tally.corrupt_objects += 1;
                eprintln!("triplets: skipped {url}/{key}: {e}");
                continue;
            }
        };
        for m in parse_lines(&raw, tally) {
            if sensor.is_some_and(|s| s != m.sensor) {
                tally.other_sensor += 1;
            } else if m.feature_names != names {
                tally.other_spec += 1;
            } else {
                marked.insert(m.features_start_ms.div_euclid(1000));
            }
        }
    }
    Ok(marked)
}

/// The triplet objects under `{base}/{prefix}/device=*/date=*` for the days asked.
async fn object_keys(
    bucket: &dyn ObjectStore,
    base: &Path,
    config: &TripletsConfig,
    (from_day, to_day): (&str, &str),
) -> anyhow::Result<Vec<Path>> {
    let mut keys = Vec::new();
    for (_, device) in device_folders(bucket, base, config).await? {
        for day in subfolders(bucket, &device).await? {
            let Some(date) = last_part(&day).strip_prefix("date=").map(str::to_string) else { continue };
            if date.as_str() < from_day || date.as_str() > to_day {
                continue;
            }
            let objects: Vec<_> = bucket.list(Some(&day)).try_collect().await?;
            keys.extend(objects.into_iter().map(|o| o.location));
        }
    }
    keys.sort();
    Ok(keys)
}

/// The `{base}/{prefix}/device=<name>` folders `config` asks for (every
/// device, or its `device`): (`device=<name>`, folder).
pub async fn device_folders(
    bucket: &dyn ObjectStore,
    base: &Path,
    config: &TripletsConfig,
) -> anyhow::Result<Vec<(String, Path)>> {
    let root = store::join(base, config.prefix.trim_matches('/'));
    let mut devices = Vec::new();
    for folder in subfolders(bucket, &root).await? {
        let name = last_part(&folder);
        let Some(device) = name.strip_prefix("device=") else { continue };
        if config.device.is_empty() || device == config.device {
            devices.push((name, folder));
        }
    }
    Ok(devices)
}

async fn subfolders(bucket: &dyn ObjectStore, under: &Path) -> anyhow::Result<Vec<Path>> {
    let under = if under.as_ref().is_empty() { None } else { Some(under) };
    Ok(bucket.list_with_delimiter(under).await?.common_prefixes)
}

fn last_part(path: &Path) -> String {
    path.as_ref().rsplit('/').next().unwrap_or_default().to_string()
}

/// Most bytes one triplets object may decompress to. The predictor uploads
/// batches of a few hundred KiB; the bucket is writable by others, and a
/// few KiB of zstd can expand to gigabytes: beyond this the object is
/// refused (counted as corrupt), not read on.
pub const MAX_DECOMPRESSED_BYTES: u64 = 256 << 20;

/// The NDJSON of an object, by its extension (`.gz` or `.zst`; else as is).
pub fn decompress(key: &str, bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    decompress_within(key, bytes, MAX_DECOMPRESSED_BYTES)
}

fn decompress_within(key: &str, bytes: &[u8], max_bytes: u64) -> anyhow::Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    let read = if key.ends_with(".gz") {
        flate2::read::GzDecoder::new(bytes)
            .take(max_bytes + 1)
            .read_to_end(&mut out)
            .map_err(|e| anyhow::anyhow!("not gzip: {e}"))
    } else if key.ends_with(".zst") {
        let decoder = zstd::stream::read::Decoder::new(bytes).map_err(|e| anyhow::anyhow!("not zstd: {e}"))?;
        decoder.take(max_bytes + 1).read_to_end(&mut out).map_err(|e| anyhow::anyhow!("not zstd: {e}"))
    } else {
        out = bytes.to_vec();
        Ok(out.len())
    };
    read?;
    anyhow::ensure!(
        out.len() as u64 <= max_bytes,
        "decompresses to more than {max_bytes} bytes ({} compressed): refused unread",
        bytes.len()
    );
    Ok(out)
}

/// The triplets of NDJSON text; lines that are not one are counted.
pub fn parse_lines(raw: &[u8], tally: &mut TripletTally) -> Vec<Misprediction> {
    let mut out = Vec::new();
    for line in raw.split(|b| *b == b'\n').filter(|l| !l.iter().all(u8::is_ascii_whitespace)) {
        match serde_json::from_slice::<Misprediction>(line) {
            Ok(m) => {
                tally.triplets += 1;
                out.push(m);
            }
            Err(_) => tally.bad_lines += 1,
        }
    }
    out
}

/// One weight per training row: `weight` where the row's features start is
/// marked, 1 elsewhere. Counts the marked rows in `tally.used`.
pub fn row_weights(
    row_ts: impl Iterator<Item = i64>,
    marked: &BTreeSet<i64>,
    weight: f64,
    tally: &mut TripletTally,
) -> Vec<f32> {
    row_ts
        .map(|ts| {
            if marked.contains(&ts) {
                tally.used += 1;
                weight as f32
            } else {
                1.0
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"seq":1,"sensor":"m1","model_version":"ab","feature_names":["a","b"],"features":[1.0,null],"predicted":1.0,"actual":2.0,"error":-1.0,"features_start_ms":1700000040000,"interval_start_ms":1700000100000,"interval_end_ms":1700000160000,"horizon":1,"rule":"absolute","a_newer_field":true}"#;

    #[test]
    fn lines_that_are_not_triplets_are_counted_and_the_rest_read() {
        let text = format!("{LINE}\nnot json\n{{\"sensor\":\"m1\"}}\n\n{LINE}\n");
        let mut tally = TripletTally::default();
        let got = parse_lines(text.as_bytes(), &mut tally);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].features_start_ms, 1_700_000_040_000);
        assert_eq!((tally.triplets, tally.bad_lines), (2, 2));
    }

    #[test]
    fn an_object_that_does_not_decompress_is_an_error_not_a_panic() {
        assert!(decompress("x.ndjson.gz", b"garbage").is_err());
        assert!(decompress("x.ndjson.zst", b"garbage").is_err());
        let gz = {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            std::io::Write::write_all(&mut enc, LINE.as_bytes()).unwrap();
            enc.finish().unwrap()
        };
        assert_eq!(decompress("x.ndjson.gz", &gz).unwrap(), LINE.as_bytes());
    }

    #[test]
    fn an_object_that_decompresses_beyond_the_bound_is_refused() {
        let zeros = vec![b'\n'; 1 << 20];
        let zst = zstd::encode_all(&zeros[..], 19).unwrap();
        assert!(zst.len() < 1 << 10, "a bomb: {} bytes", zst.len());
        let error = decompress_within("x.ndjson.zst", &zst, 64 << 10).unwrap_err().to_string();
        assert!(error.contains("decompresses to more than 65536 bytes"), "{error}");
        let gz = {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            std::io::Write::write_all(&mut enc, &zeros).unwrap();
            enc.finish().unwrap()
        };
        assert!(decompress_within("x.ndjson.gz", &gz, 64 << 10).is_err());
        assert!(decompress_within("x.ndjson", &zeros, 64 << 10).is_err());
        assert_eq!(decompress_within("x.ndjson.zst", &zst, 1 << 20).unwrap().len(), 1 << 20, "at the bound: read");
    }

    #[test]
    fn marked_rows_get_the_weight_and_are_counted() {
        let marked: BTreeSet<i64> = [120, 240].into();
        let mut tally = TripletTally::default();
        let w = row_weights([60, 120, 180, 240].into_iter(), &marked, 3.0, &mut tally);
        assert_eq!(w, vec![1.0, 3.0, 1.0, 3.0]);
        assert_eq!(tally.used, 2);
    }
}
