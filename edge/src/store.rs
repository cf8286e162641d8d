//! Blob storage by URL: `s3://bucket[/path]`, `az://container[/path]`,
//! `gs://bucket[/path]`, `file://folder`. Credentials and endpoints come
//! from the environment through object_store's `from_env` builders:
//!
//! - S3 and compatible servers: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//!   `AWS_REGION`, `AWS_ENDPOINT` (MinIO, moto, ...), `AWS_ALLOW_HTTP=true`.
//! - Azure: `AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY`, or the
//!   emulator with `AZURE_STORAGE_USE_EMULATOR=true` (and
//!   `AZURITE_BLOB_STORAGE_URL` when it is not on 127.0.0.1:10000).
//! - GCS: `GOOGLE_SERVICE_ACCOUNT` / `GOOGLE_APPLICATION_CREDENTIALS`.
//! - `file://` takes a folder (relative or absolute), created if missing.
//!
//! object_store's own retries are kept short ([`request_retry`]): the
//! uploader retries a failed batch for as long as it takes, with its own
//! backoff, and counts every failure in `/metrics`. With object_store's
//! default (10 retries over up to 3 minutes) a store that is down would show
//! no failure for minutes.

use std::collections::BTreeMap;
use std::sync::Arc;

use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{BackoffConfig, ObjectStore, RetryConfig};

pub fn is_object_url(s: &str) -> bool {
    ["s3://", "az://", "gs://", "file://"].iter().any(|p| s.starts_with(p))
}

/// The retry policy of one request to a remote store: two quick retries
/// within 20 s, then the error reaches the caller.
pub fn request_retry() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            base: 2.0,
        },
        max_retries: 2,
        retry_timeout: Duration::from_secs(20),
    }
}

/// The store, and the path inside it the URL named (may be empty).
pub fn open(url: &str) -> anyhow::Result<(Arc<dyn ObjectStore>, Path)> {
    open_with(url, &BTreeMap::new())
}

/// Like [`open`], with object_store config keys applied over the environment.
pub fn open_with(url: &str, options: &BTreeMap<String, String>) -> anyhow::Result<(Arc<dyn ObjectStore>, Path)> {
    let (scheme, rest) =
        url.split_once("://").ok_or_else(|| anyhow::anyhow!("{url:?} is not a URL like s3://bucket/prefix"))?;
    if scheme == "file" {
        std::fs::create_dir_all(rest).map_err(|e| anyhow::anyhow!("cannot create folder {rest} for {url}: {e}"))?;
        let store = LocalFileSystem::new_with_prefix(rest)
            .map_err(|e| anyhow::anyhow!("cannot use folder {rest} as a store: {e}"))?
            .with_automatic_cleanup(true);
        return Ok((Arc::new(store), Path::default()));
    }
    let (bucket, path) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        anyhow::bail!("{url:?} names no bucket or container");
    }
    let root = format!("{scheme}://{bucket}");
    let bad = |k: &str, e: object_store::Error| anyhow::anyhow!("[upload] option {k:?} is not a {scheme} key: {e}");
    let store: Arc<dyn ObjectStore> = match scheme {
        "s3" => {
            let mut b = AmazonS3Builder::from_env().with_url(&root).with_retry(request_retry());
            for (k, v) in options {
                b = b.with_config(k.parse().map_err(|e| bad(k, e))?, v);
            }
            Arc::new(b.build()?)
        }
        "az" => {
            let mut b = MicrosoftAzureBuilder::from_env().with_url(&root).with_retry(request_retry());
            for (k, v) in options {
                b = b.with_config(k.parse().map_err(|e| bad(k, e))?, v);
            }
            Arc::new(b.build()?)
        }
        "gs" => {
            let mut b = GoogleCloudStorageBuilder::from_env().with_url(&root).with_retry(request_retry());
            for (k, v) in options {
                b = b.with_config(k.parse().map_err(|e| bad(k, e))?, v);
            }
            Arc::new(b.build()?)
        }
        other => anyhow::bail!("unsupported store scheme {other:?} in {url:?}: use s3://, az://, gs:// or file://"),
    };
    Ok((store, Path::parse(path)?))
}

/// `base` and `key` joined with one `/`.
pub fn join(base: &Path, key: &str) -> Path {
    let base = base.as_ref().trim_matches('/');
    if base.is_empty() { Path::from(key) } else { Path::from(format!("{base}/{key}")) }
}
