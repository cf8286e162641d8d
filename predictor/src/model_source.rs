//! Where the model comes from, and hot reload.
//!
//! The model source is a file path or an object-store URL. [`ModelWatcher`]
//! polls it (file: size and mtime; object store: the object's e-tag and
//! last-modified) and, when it changed, loads and validates the new model
//! ([`load_model`]): the native format's header and sha256 (core's
//! `Model::from_bytes`), a feature spec for the configured interval, and a
//! smoke prediction that must be finite. A model that passes is handed to the
//! prediction loop, which swaps it in between two batches; a model that
//! fails is logged and counted, and the old one keeps serving.

use std::sync::Arc;
use std::time::Duration;

use gridcast_core::features::{FeatureState, Interval};
use gridcast_core::model::Model;
use object_store::{ObjectStore, ObjectStoreExt};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::store;

/// A validated model and its identity.
#[derive(Debug)]
pub struct LoadedModel {
    pub model: Model,
    /// sha256 (hex) of the file's payload, as in its header.
    pub version: String,
}

/// Parse and validate model bytes for an interval of `interval_secs`.
pub fn load_model(bytes: &[u8], interval_secs: u32) -> anyhow::Result<LoadedModel> {
    let model = Model::from_bytes(bytes)?;
    let Some(spec) = model.meta.feature_spec.clone() else {
        anyhow::bail!("the model has no feature spec (an imported model?): the predictor cannot compute its columns");
    };
    if spec.interval_secs != interval_secs {
        anyhow::bail!(
            "the model was trained on {} s intervals but the predictor runs {interval_secs} s intervals \
             ([predict] interval_secs)",
            spec.interval_secs
        );
    }
    // A smoke prediction on a plausible row: a model whose trees produce
    // NaN or infinity would poison every prediction after the swap.
    let mut state = FeatureState::new(spec.clone())?;
    let mut row = Vec::new();
    for i in 0..3 {
        row = state.push(&Interval { ts: 1_700_000_000 + i * spec.interval_secs as i64, p: [400.0, 300.0, 200.0] })?;
    }
    let smoke = model.predict_level(&row);
    if !smoke.is_finite() {
        anyhow::bail!("smoke prediction is {smoke}, not a finite power");
    }
    let nl = bytes.iter().position(|&b| b == b'\n').unwrap_or(0);
    let version = hex::encode(Sha256::digest(&bytes[nl + 1..]));
    Ok(LoadedModel { model, version })
}

/// Where to read the model from.
pub enum ModelSource {
    File(std::path::PathBuf),
    Object { store: Arc<dyn ObjectStore>, path: object_store::path::Path, url: String },
}

/// What identifies one version of the source without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp(String);

impl ModelSource {
    pub fn parse(source: &str) -> anyhow::Result<ModelSource> {
        if store::is_object_url(source) && !source.starts_with("file://") {
            let (store, path) = store::open(source)?;
            return Ok(ModelSource::Object { store, path, url: source.to_string() });
        }
        Ok(ModelSource::File(source.trim_start_matches("file://").into()))
    }

    pub fn describe(&self) -> String {
        match self {
            ModelSource::File(p) => p.display().to_string(),
            ModelSource::Object { url, .. } => url.clone(),
        }
    }

    async fn stamp(&self) -> anyhow::Result<Stamp> {
        match self {
            ModelSource::File(p) => {
                let m = tokio::fs::metadata(p).await?;
                let mtime = m.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
                Ok(Stamp(format!("{}:{:?}", m.len(), mtime)))
            }
            ModelSource::Object { store, path, .. } => {
                let m = store.head(path).await?;
                Ok(Stamp(format!("{}:{:?}:{}", m.size, m.e_tag, m.last_modified)))
            }
        }
    }

    async fn read(&self) -> anyhow::Result<Vec<u8>> {
        match self {
            ModelSource::File(p) => Ok(tokio::fs::read(p).await?),
            ModelSource::Object { store, path, .. } => Ok(store.get(path).await?.bytes().await?.to_vec()),
        }
    }

    /// Read and validate the current model (at start-up: an error is fatal).
    pub async fn load(&self, interval_secs: u32) -> anyhow::Result<LoadedModel> {
        let bytes = self.read().await.map_err(|e| anyhow::anyhow!("cannot read model {}: {e}", self.describe()))?;
        load_model(&bytes, interval_secs).map_err(|e| anyhow::anyhow!("model {} refused: {e}", self.describe()))
    }
}

/// Polls the source and sends every new valid model to the loop.
pub struct ModelWatcher {
    pub source: ModelSource,
    pub interval_secs: u32,
    pub poll: Duration,
    pub current_version: String,
}

impl ModelWatcher {
    pub async fn run(
        self,
        out: mpsc::Sender<Arc<LoadedModel>>,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let mut last = self.source.stamp().await.ok();
        let mut version = self.current_version.clone();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(self.poll) => {}
            }
            let stamp = match self.source.stamp().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(source = %self.source.describe(), error = %e, "model source not readable now");
                    continue;
                }
            };
            if Some(&stamp) == last.as_ref() {
                continue;
            }
            last = Some(stamp);
            let bytes = match self.source.read().await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(source = %self.source.describe(), error = %e, "model changed but cannot be read; will retry");
                    last = None;
                    continue;
                }
            };
            match load_model(&bytes, self.interval_secs) {
                Ok(m) if m.version == version => {}
                Ok(m) => {
                    tracing::info!(source = %self.source.describe(), old = %version, new = %m.version,
                        trees = m.model.trees().len(), "new model validated; swapping it in");
                    version = m.version.clone();
                    if out.send(Arc::new(m)).await.is_err() {
                        return Ok(());
                    }
                }
                Err(e) => {
                    Metrics::inc(&metrics.model_rejects);
                    tracing::error!(source = %self.source.describe(), error = %e, serving = %version,
                        "new model refused; the current model keeps serving");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_model() -> Vec<u8> {
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../models/default.gcm")).unwrap()
    }

    #[test]
    fn the_shipped_model_loads_with_its_sha256_as_version() {
        let m = load_model(&default_model(), 60).unwrap();
        let header = String::from_utf8_lossy(&default_model()[..200]).to_string();
        assert!(header.contains(&m.version), "{header}");
    }

    #[test]
    fn a_corrupt_or_mismatched_model_is_refused_with_the_reason() {
        let mut bytes = default_model();
        let n = bytes.len();
        bytes[n - 10] ^= 0x55;
        let err = load_model(&bytes, 60).unwrap_err().to_string();
        assert!(err.contains("sha256"), "{err}");
        let err = load_model(&default_model(), 10).unwrap_err().to_string();
        assert!(err.contains("60 s intervals"), "{err}");
        assert!(load_model(b"hello\n{}", 60).is_err());
    }
}
