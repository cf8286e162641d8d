//! Publishing a shipped model where the edge polls it, version first, then
//! `current.gcm`. A retrain killed at any point leaves the old `current.gcm`
//! whole and valid.
//!
//! - **A folder** (a path or `file://`): the version file (`{version}.gcm`)
//!   is written to a temp file, synced, then linked in under its name, so it
//!   is never overwritten nor seen half-written; then `current.gcm` is
//!   replaced by a rename. Before the rename the old one is untouched, after
//!   it it is the new one.
//! - **A bucket** (`s3://`, `az://`, `gs://`): the versioned object is put
//!   only when no object has that name (a version is the sha256 of the
//!   payload, so an existing one with other bytes is an error, never
//!   overwritten); then `current.gcm` is put. A put is atomic in these
//!   stores: a reader sees the old object or the new one, never a part.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use gridcast_core::model::Model;
use gridcast_core::model::signature::SigningKey;
use gridcast_edge::store;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::config::PublishConfig;

/// Where a model was published (paths or URLs).
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    pub version: String,
    pub versioned: String,
    pub current: String,
}

/// The name of the file the edge polls, beside the versions.
pub const CURRENT: &str = "current.gcm";

/// A model file as it is published: its bytes (signed when a key is
/// configured) and its version (the payload sha256, signed or not).
#[derive(Debug, Clone)]
pub struct ModelFile {
    pub version: String,
    pub bytes: Vec<u8>,
}

impl ModelFile {
    /// `model`'s file, signed by `key` if there is one.
    pub fn new(model: &Model, key: Option<&SigningKey>) -> ModelFile {
        let bytes = match key {
            Some(key) => model.to_signed_bytes(key),
            None => model.to_bytes(),
        };
        ModelFile { version: model.payload_sha256(), bytes }
    }
}

pub async fn publish(config: &PublishConfig, file: &ModelFile) -> anyhow::Result<Published> {
    if store::is_object_url(&config.store) && !config.store.starts_with("file://") {
        return publish_to_bucket(config, file).await;
    }
    let config = config.clone();
    let file = file.clone();
    tokio::task::spawn_blocking(move || publish_to_folder(&config, &file)).await?
}

/// `{store}/{prefix}/{site}/models/` in a bucket.
async fn publish_to_bucket(config: &PublishConfig, file: &ModelFile) -> anyhow::Result<Published> {
    let (bucket, base) = store::open_with(&config.store, &config.options)?;
    let mut dir = base.as_ref().trim_matches('/').to_string();
    for part in [&config.prefix, &config.site, &"models".to_string()] {
        let part = part.trim_matches('/');
        if !part.is_empty() {
            dir = if dir.is_empty() { part.to_string() } else { format!("{dir}/{part}") };
        }
    }
    let root = config.store.trim_end_matches('/');
    let root = root.strip_suffix(base.as_ref()).unwrap_or(root).trim_end_matches('/');
    let url = |key: &object_store::path::Path| format!("{root}/{key}");

    let (version, bytes) = (file.version.clone(), file.bytes.clone());
    let versioned = store::join(&object_store::path::Path::from(dir.as_str()), &format!("{version}.gcm"));
    put_version(bucket.as_ref(), &versioned, &bytes)
        .await
        .with_context(|| format!("publishing {}", url(&versioned)))?;
    let current = store::join(&object_store::path::Path::from(dir.as_str()), CURRENT);
    bucket
        .put(&current, PutPayload::from(bytes))
        .await
        .with_context(|| format!("replacing {} (the version {} is published)", url(&current), url(&versioned)))?;
    Ok(Published { version, versioned: url(&versioned), current: url(&current) })
}

/// Put a version unless it is there; one that is there must hold the same bytes.
async fn put_version(bucket: &dyn ObjectStore, key: &object_store::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    match bucket.get(key).await {
        Ok(existing) => {
            let existing = existing.bytes().await?;
            anyhow::ensure!(existing.as_ref() == bytes, "the object exists with other contents");
            Ok(())
        }
        Err(object_store::Error::NotFound { .. }) => {
            bucket.put(key, PutPayload::from(bytes.to_vec())).await?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

fn publish_to_folder(config: &PublishConfig, file: &ModelFile) -> anyhow::Result<Published> {
    let dir = config.models_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    remove_stale_temp_files(&dir);
    let (version, bytes) = (file.version.clone(), file.bytes.clone());
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
    Ok(Published { version, versioned: versioned.display().to_string(), current: current.display().to_string() })
}

/// Delete the temp files of earlier publishes that were killed (their
/// process is gone). Best effort: a file that cannot be deleted stays.
fn remove_stale_temp_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(pid) = name.strip_prefix(".publish-").and_then(|rest| rest.split('-').next()) else { continue };
        // Running, unless gone or a zombie (killed, not reaped yet: a
        // container's pid 1 may never reap it).
        let stat = std::fs::read_to_string(Path::new("/proc").join(pid).join("stat")).unwrap_or_default();
        let state = stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next());
        if state.is_some_and(|s| s != 'Z') {
            continue; // a publish still running (or a reused pid: the file is left)
        }
        match std::fs::remove_file(entry.path()) {
            Ok(()) => eprintln!("publish: removed {name}, left by a publish that did not finish"),
            Err(e) => eprintln!("publish: cannot remove {name}: {e}"),
        }
    }
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
