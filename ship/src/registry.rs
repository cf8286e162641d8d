//! The registry shell of `gridcast ship`: everything that talks to a
//! registry, through oci-client. The layers, configs and manifests it moves
//! are built by the pure modules (`layer`, `image`).
//!
//! What it promises:
//! - a blob the target repository already has is never sent again: every
//!   upload is preceded by a HEAD, and a base layer in another repository of
//!   the same registry is mounted (`POST ...?mount=&from=`), not copied;
//! - the manifest goes last, so a tag only ever names an image whose blobs
//!   are all there; a failure before it leaves at most unreferenced blobs,
//!   which the registry's garbage collection removes;
//! - the digest reported is of the exact manifest bytes PUT;
//! - [`PushReport`] counts what was really uploaded and what was reused.

use std::fmt;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::OciDescriptor;
use oci_client::{Client, Reference};
use serde_json::Value;

use crate::ShipError;
use crate::credentials::{self, Credentials};
use crate::image;
use crate::layer::sha256_digest;

/// What one push did.
#[derive(Debug, Clone)]
pub struct PushReport {
    /// The reference pushed, `registry/repository:tag`.
    pub image: String,
    /// `sha256:<hex>` of the manifest.
    pub digest: String,
    /// Sizes of the layers sent to the registry.
    pub uploaded: Vec<u64>,
    /// Sizes of the layers the registry had already (or mounted from the base's repository).
    pub reused: Vec<u64>,
    /// Whether the config blob was sent (false: the registry had it).
    pub config_uploaded: bool,
}

impl PushReport {
    /// Count a layer of `size` bytes as uploaded or reused.
    pub fn count(&mut self, sent: Sent, size: u64) {
        match sent {
            Sent::Uploaded => self.uploaded.push(size),
            Sent::Reused => self.reused.push(size),
        }
    }
}

impl fmt::Display for PushReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pushed {}@{}: uploaded {} layer(s) ({} bytes), reused {} layer(s) ({} bytes), config {}",
            self.image,
            self.digest,
            self.uploaded.len(),
            self.uploaded.iter().sum::<u64>(),
            self.reused.len(),
            self.reused.iter().sum::<u64>(),
            if self.config_uploaded { "uploaded" } else { "reused" },
        )
    }
}

/// Whether a blob had to be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    Uploaded,
    Reused,
}

/// A client for the registries of one `gridcast ship` run, with the
/// credentials of each stored.
pub struct Registry {
    client: Client,
    /// Per registry (as the reference names it), where its credentials came from.
    sources: Vec<(String, String)>,
}

impl Registry {
    /// A client for `references`' registries: credentials resolved for each
    /// (see `credentials`), plain HTTP only where allowed.
    pub async fn connect(references: &[&Reference], insecure: bool) -> Result<Self, ShipError> {
        let mut plain_http = Vec::new();
        let mut resolved: Vec<(String, Credentials)> = Vec::new();
        for reference in references {
            let registry = reference.resolve_registry().to_owned();
            if resolved.iter().any(|(r, _)| *r == registry) {
                continue;
            }
            if credentials::plain_http_allowed(&registry, insecure) {
                plain_http.push(registry.clone());
            }
            let found = credentials::resolve(reference.registry(), |k| std::env::var(k).ok())?;
            resolved.push((registry, found));
        }
        let client = Client::new(ClientConfig {
            protocol: ClientProtocol::HttpsExcept(plain_http),
            // One POST and one PUT per blob: our blobs are small (the base
            // layer is a few MB), and every registry takes it.
            use_monolithic_push: true,
            // A registry that accepts the connection and then hangs must not
            // hang a push, nor the agent's poll loop.
            connect_timeout: Some(std::time::Duration::from_secs(10)),
            read_timeout: Some(std::time::Duration::from_secs(60)),
            ..ClientConfig::default()
        });
        for (registry, found) in &resolved {
            client.store_auth_if_needed(registry, &found.auth).await;
        }
        let sources = resolved.into_iter().map(|(r, c)| (r, c.source)).collect();
        Ok(Self { client, sources })
    }

    /// The base image's manifest and config (not its layers).
    pub async fn pull_manifest_and_config(
        &self,
        base: &Reference,
    ) -> Result<(oci_client::manifest::OciImageManifest, Vec<u8>), ShipError> {
        // Auth was stored in `connect`; Anonymous here does not replace it.
        let (manifest, _digest, config) = self
            .client
            .pull_manifest_and_config(base, &oci_client::secrets::RegistryAuth::Anonymous)
            .await
            .map_err(|e| self.error(base, format!("reading the base image {base}"), e))?;
        Ok((manifest, config.into_bytes()))
    }

    /// The model file a model image carries (`ship model` puts it at
    /// [`crate::image::MODEL_PATH`] in the top layer), `None` when the top
    /// layer has none. A layer or model over `max` bytes is refused unread.
    pub async fn model_file(&self, reference: &Reference, max: u64) -> Result<Option<Vec<u8>>, ShipError> {
        let (manifest, _) = self.pull_manifest_and_config(reference).await?;
        let Some(top) = manifest.layers.last() else { return Ok(None) };
        let what = || format!("reading the model layer {} of {reference}", top.digest);
        // The gzipped layer of a model is smaller than the model, plus a tar's headers.
        let limit = max + 64 * 1024;
        if u64::try_from(top.size).unwrap_or(u64::MAX) > limit {
            return Err(ShipError::Registry { what: what(), cause: format!("{} bytes, over {limit}", top.size) });
        }
        let mut blob = Vec::new();
        self.client.pull_blob(reference, top, &mut blob).await.map_err(|e| self.error(reference, what(), e))?;
        crate::layer::read_file(&blob, crate::image::MODEL_PATH, max)
            .map_err(|e| ShipError::Registry { what: what(), cause: e.to_string() })
    }

    /// The digest `reference`'s tag points to now, by a HEAD on its manifest
    /// (nothing pulled). A vanished tag is an error like any other.
    pub async fn manifest_digest(&self, reference: &Reference) -> Result<String, ShipError> {
        self.client
            .fetch_manifest_digest(reference, &oci_client::secrets::RegistryAuth::Anonymous)
            .await
            .map_err(|e| self.error(reference, format!("reading the digest of {reference}"), e))
    }

    /// The `os/architecture` an image (by digest or tag) is built for, from
    /// its config (for an index: the entry for this machine's platform).
    pub async fn platform(&self, reference: &Reference) -> Result<String, ShipError> {
        let (_, config) = self.pull_manifest_and_config(reference).await?;
        let config: Value = serde_json::from_slice(&config).map_err(|e| ShipError::Registry {
            what: format!("reading the config of {reference}"),
            cause: format!("not JSON: {e}"),
        })?;
        let field = |k: &str| config.get(k).and_then(Value::as_str).unwrap_or("?").to_owned();
        Ok(format!("{}/{}", field("os"), field("architecture")))
    }

    /// Sends `data` to `target`'s repository unless it has the blob already.
    pub async fn put_blob(&self, target: &Reference, data: Vec<u8>) -> Result<Sent, ShipError> {
        let digest = sha256_digest(&data);
        if self.exists(target, &digest).await? {
            return Ok(Sent::Reused);
        }
        self.client
            .push_blob(target, data, &digest)
            .await
            .map_err(|e| self.error(target, format!("uploading blob {digest} to {target}"), e))?;
        Ok(Sent::Uploaded)
    }

    /// Makes the base's blob `layer` available in `target`'s repository:
    /// nothing when it is there, a mount when both are on one registry,
    /// else a copy (download, upload).
    pub async fn carry_blob(
        &self,
        base: &Reference,
        target: &Reference,
        layer: &OciDescriptor,
    ) -> Result<Sent, ShipError> {
        if self.exists(target, &layer.digest).await? {
            return Ok(Sent::Reused);
        }
        if base.resolve_registry() == target.resolve_registry() {
            match self.client.mount_blob(target, base, &layer.digest).await {
                Ok(()) => return Ok(Sent::Reused),
                // A registry may answer a mount with "start an upload
                // instead" (202): copy then.
                Err(e) => tracing::debug!("mounting {} from {base} into {target}: {e}; copying it", layer.digest),
            }
        }
        let mut data = Vec::with_capacity(usize::try_from(layer.size).unwrap_or(0));
        self.client
            .pull_blob(base, layer, &mut data)
            .await
            .map_err(|e| self.error(base, format!("downloading base layer {} from {base}", layer.digest), e))?;
        self.put_blob(target, data).await?;
        Ok(Sent::Uploaded)
    }

    /// PUTs `manifest` (its `mediaType` as Content-Type) as `target`'s tag.
    pub async fn put_manifest(&self, target: &Reference, manifest: Vec<u8>) -> Result<(), ShipError> {
        let media_type = serde_json::from_slice::<Value>(&manifest)
            .ok()
            .and_then(|m| m.get("mediaType").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| image::OCI_MANIFEST.to_owned());
        let content_type = media_type.parse().map_err(|_| ShipError::Registry {
            what: format!("pushing the manifest of {target}"),
            cause: format!("media type {media_type:?} is not a header value"),
        })?;
        self.client
            .push_manifest_raw(target, manifest, content_type)
            .await
            .map_err(|e| self.error(target, format!("pushing the manifest of {target}"), e))?;
        Ok(())
    }

    async fn exists(&self, target: &Reference, digest: &str) -> Result<bool, ShipError> {
        self.client
            .blob_exists(target, digest)
            .await
            .map_err(|e| self.error(target, format!("checking for blob {digest} in {target}"), e))
    }

    /// One clear error for a failed registry call: refused credentials and
    /// an unreachable registry told apart from the rest.
    fn error(&self, reference: &Reference, what: String, e: OciDistributionError) -> ShipError {
        let registry = reference.resolve_registry().to_owned();
        let status = match &e {
            OciDistributionError::RequestError(r) => r.status().map(|s| s.as_u16()),
            OciDistributionError::ServerError { code, .. } => Some(*code),
            OciDistributionError::UnauthorizedError { .. } | OciDistributionError::AuthenticationFailure(_) => {
                Some(401)
            }
            OciDistributionError::RegistryError { envelope, .. } => {
                let text = format!("{envelope:?}");
                (text.contains("UNAUTHORIZED") || text.contains("DENIED")).then_some(401)
            }
            _ => None,
        };
        if matches!(status, Some(401 | 403)) {
            let source = self.sources.iter().find(|(r, _)| *r == registry).map_or("anonymous", |(_, s)| s.as_str());
            return ShipError::Refused { registry, what, credentials: source.to_owned() };
        }
        if let OciDistributionError::RequestError(r) = &e
            && (r.is_connect() || r.is_timeout())
        {
            return ShipError::Unreachable { registry, what, cause: error_chain(r) };
        }
        ShipError::Registry { what, cause: e.to_string() }
    }
}

/// An error and its sources joined by ": " (reqwest hides the cause, e.g.
/// "connection refused", in `source()`).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
