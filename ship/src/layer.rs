//! Image layers: a gzipped tar of a few files, built in memory, the same bytes
//! for the same files every time.
//!
//! Determinism is what makes shipping cheap: the base layer built twice from
//! the same binary has the same digest, so a registry that has it already is
//! not sent it again, and a rebuilt image is byte-identical. So every header
//! field that would carry the build machine's state is fixed: mtime 0, uid and
//! gid 0, user and group names "root", mode from the entry, entries sorted by
//! path with their parent directories first; the gzip header carries mtime 0
//! and no file name (flate2's defaults).
//!
//! Compression is gzip's default level (6), as Docker's: level 9 made the
//! static binary's layer 0.5 % smaller (9.87 MB against 9.93 MB) for several
//! times the CPU time, which a debug build of the tests pays on a 300 MB
//! binary.
//!
//! Pure: no I/O beyond the in-memory buffers.

use std::collections::BTreeMap;
use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

/// One file to put in a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerFile {
    /// Absolute path in the image, e.g. `/gridcast` or `/models/current.gcm`.
    pub path: String,
    /// Unix permission bits, e.g. `0o755` for a program.
    pub mode: u32,
    pub contents: Vec<u8>,
}

impl LayerFile {
    pub fn new(path: impl Into<String>, mode: u32, contents: impl Into<Vec<u8>>) -> Self {
        Self { path: path.into(), mode, contents: contents.into() }
    }
}

/// A built layer: the compressed blob a registry stores, and the digest of
/// the uncompressed tar that an image config lists in `rootfs.diff_ids`.
#[derive(Debug, Clone)]
pub struct Layer {
    /// The tar.gz bytes.
    pub blob: Vec<u8>,
    /// `sha256:<hex>` of `blob`: the layer's name in the registry.
    pub digest: String,
    /// `sha256:<hex>` of the uncompressed tar.
    pub diff_id: String,
}

/// A path in the image that a layer cannot hold.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("layer path {0:?} must be absolute, without `.`/`..` or empty parts")]
    BadPath(String),
    #[error("layer path {0:?} is given twice")]
    Duplicate(String),
    #[error("writing the layer tar: {0}")]
    Tar(#[from] std::io::Error),
    #[error("{path} in the layer is {size} bytes, over the limit of {max}")]
    TooLarge { path: String, size: u64, max: u64 },
}

/// The contents of the file at `path` (e.g. [`crate::image::MODEL_PATH`]) in
/// a layer blob (tar, gzipped or not); `None` when the layer has no such
/// file. A file over `max` bytes is an error, read no further: a layer is
/// untrusted input.
pub fn read_file(blob: &[u8], path: &str, max: u64) -> Result<Option<Vec<u8>>, LayerError> {
    use std::io::Read;
    let reader: Box<dyn Read + '_> =
        if blob.starts_with(&[0x1f, 0x8b]) { Box::new(flate2::read::GzDecoder::new(blob)) } else { Box::new(blob) };
    let wanted = path.trim_start_matches('/');
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries()? {
        let entry = entry?;
        let name = entry.path()?.to_string_lossy().trim_start_matches("./").trim_start_matches('/').to_owned();
        if name != wanted || entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let size = entry.header().size()?;
        if size > max {
            return Err(LayerError::TooLarge { path: path.to_owned(), size, max });
        }
        let mut contents = Vec::with_capacity(size as usize);
        entry.take(max + 1).read_to_end(&mut contents)?;
        return Ok(Some(contents));
    }
    Ok(None)
}

/// `sha256:<hex>` of `bytes`, the form registries and image configs use.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Builds the tar.gz layer holding `files` (and the directories above them).
pub fn build_layer(files: &[LayerFile]) -> Result<Layer, LayerError> {
    let tar = build_tar(files)?;
    let diff_id = sha256_digest(&tar);
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(&tar)?;
    let blob = gz.finish()?;
    Ok(Layer { digest: sha256_digest(&blob), diff_id, blob })
}

/// The uncompressed tar: directories (mode 0755) and files, sorted by path.
fn build_tar(files: &[LayerFile]) -> Result<Vec<u8>, LayerError> {
    // Relative path in the tar (no leading '/', as image layers have it) ->
    // Some(file) or None for a directory. BTreeMap sorts, and "a/" < "a/b".
    let mut entries: BTreeMap<String, Option<&LayerFile>> = BTreeMap::new();
    for file in files {
        let relative = file.path.strip_prefix('/').unwrap_or("");
        let parts: Vec<&str> = relative.split('/').collect();
        if relative.is_empty() || parts.iter().any(|p| p.is_empty() || *p == "." || *p == "..") {
            return Err(LayerError::BadPath(file.path.clone()));
        }
        for depth in 1..parts.len() {
            entries.entry(format!("{}/", parts[..depth].join("/"))).or_insert(None);
        }
        if entries.insert(relative.to_owned(), Some(file)).is_some() {
            return Err(LayerError::Duplicate(file.path.clone()));
        }
    }
    let mut builder = tar::Builder::new(Vec::new());
    for (path, file) in &entries {
        let mut header = tar::Header::new_ustar();
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_username("root")?;
        header.set_groupname("root")?;
        match file {
            None => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                builder.append_data(&mut header, path, std::io::empty())?;
            }
            Some(file) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(file.mode);
                header.set_size(file.contents.len() as u64);
                builder.append_data(&mut header, path, file.contents.as_slice())?;
            }
        }
    }
    Ok(builder.into_inner()?)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn a_file_is_read_back_from_a_layer_and_a_missing_or_oversized_one_is_told() {
        let layer = build_layer(&[
            LayerFile::new("/gridcast", 0o755, b"elf".to_vec()),
            LayerFile::new("/models/current.gcm", 0o644, b"model bytes".to_vec()),
        ])
        .unwrap();
        assert_eq!(read_file(&layer.blob, "/models/current.gcm", 64).unwrap().unwrap(), b"model bytes");
        assert_eq!(read_file(&layer.blob, "/models/other.gcm", 64).unwrap(), None);
        assert!(matches!(read_file(&layer.blob, "/models/current.gcm", 4), Err(LayerError::TooLarge { .. })));
        assert!(read_file(b"\x1f\x8bnot gzip", "/models/current.gcm", 64).is_err());
        assert_eq!(read_file(b"", "/models/current.gcm", 64).unwrap(), None);
    }

    fn unpack(layer: &Layer) -> Vec<(String, u32, u64, Vec<u8>)> {
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(layer.blob.as_slice()).read_to_end(&mut tar).unwrap();
        assert_eq!(sha256_digest(&tar), layer.diff_id, "diff_id is the digest of the uncompressed tar");
        let mut archive = tar::Archive::new(tar.as_slice());
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let header = e.header().clone();
                let mut contents = Vec::new();
                e.read_to_end(&mut contents).unwrap();
                let path = e.path().unwrap().to_string_lossy().into_owned();
                (path, header.mode().unwrap(), header.mtime().unwrap(), contents)
            })
            .collect()
    }

    #[test]
    fn same_files_give_the_same_digest_whatever_their_order() {
        let a = LayerFile::new("/etc/gridcast/predict.toml", 0o644, b"x = 1\n".to_vec());
        let b = LayerFile::new("/gridcast", 0o755, b"\x7fELF".to_vec());
        let one = build_layer(&[a.clone(), b.clone()]).unwrap();
        let two = build_layer(&[b, a]).unwrap();
        assert_eq!(one.digest, two.digest);
        assert_eq!(one.blob, two.blob);
        assert_eq!(one.digest, sha256_digest(&one.blob));
    }

    #[test]
    fn entries_are_sorted_with_parent_directories_and_fixed_metadata() {
        let layer = build_layer(&[LayerFile::new("/models/current.gcm", 0o644, b"model".to_vec())]).unwrap();
        let entries = unpack(&layer);
        let summary: Vec<(&str, u32, u64)> = entries.iter().map(|(p, m, t, _)| (p.as_str(), *m, *t)).collect();
        assert_eq!(summary, [("models/", 0o755, 0), ("models/current.gcm", 0o644, 0)]);
        assert_eq!(entries[1].3, b"model");
    }

    #[test]
    fn relative_dotted_and_duplicate_paths_are_refused() {
        for bad in ["gridcast", "/", "/a/../b", "/a//b"] {
            assert!(matches!(build_layer(&[LayerFile::new(bad, 0o644, vec![])]), Err(LayerError::BadPath(_))), "{bad}");
        }
        let f = LayerFile::new("/a", 0o644, vec![]);
        assert!(matches!(build_layer(&[f.clone(), f]), Err(LayerError::Duplicate(_))));
    }
}
