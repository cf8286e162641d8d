//! Publishing a shipped model to a folder the edge polls: the version file
//! first (`{version}.gcm`, written to a temp file, synced, then linked in
//! under its name, so it is never overwritten nor seen half-written), then
//! `current.gcm` replaced by a rename. A retrain killed at any point leaves
//! the old `current.gcm` whole: before the rename it is untouched, after it
//! it is the new one.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use gridcast_core::model::Model;

use super::config::PublishConfig;

/// Where a model was published.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    pub version: String,
    pub versioned: PathBuf,
    pub current: PathBuf,
}

/// The name of the file the edge polls, beside the versions.
pub const CURRENT: &str = "current.gcm";

pub fn publish(config: &PublishConfig, model: &Model) -> anyhow::Result<Published> {
    let dir = config.models_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let version = model.payload_sha256();
    let bytes = model.to_bytes();
    let versioned = dir.join(format!("{version}.gcm"));
    let staged = write_synced(&dir, &bytes)?;
    // A hard link fails if the name exists: a version is never overwritten.
    match std::fs::hard_link(&staged, &versioned) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let existing = std::fs::read(&versioned).with_context(|| format!("reading {}", versioned.display()))?;
            anyhow::ensure!(existing == bytes, "{} exists with other contents", versioned.display());
        }
        Err(e) => return Err(e).with_context(|| format!("publishing {}", versioned.display())),
    }
    let current = dir.join(CURRENT);
    std::fs::rename(&staged, &current).with_context(|| format!("replacing {}", current.display()))?;
    sync_dir(&dir)?;
    Ok(Published { version, versioned, current })
}

/// `bytes` in a new temp file in `dir`, synced to disk.
fn write_synced(dir: &Path, bytes: &[u8]) -> anyhow::Result<PathBuf> {
    let path = dir.join(format!(".publish-{}-{}.tmp", std::process::id(), nanos()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes).and_then(|_| file.sync_all()).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).with_context(|| format!("syncing {}", dir.display()))
}

fn nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}
