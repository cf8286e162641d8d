//! Where the model comes from, and hot reload.
//!
//! The model source is a file path or an object-store URL. [`ModelWatcher`]
//! polls it (file: size and mtime; object store: the object's e-tag and
//! last-modified) and, when it changed, loads and validates the new model
//! ([`load_model`]): the native format's header and sha256 (core's
//! `Model::from_bytes`), a feature spec for the configured interval (or, for
//! an imported model, a feature map declared at import: the same columns,
//! picked by name), and a smoke prediction that must be finite. A model that
//! passes is handed to the prediction loop, which swaps it in between two
//! batches; a model that fails is logged and counted, and the old one keeps
//! serving. Before any of that, with trusted keys configured, the file must
//! be signed by one of them ([`Trust`], `trust.rs`).

use std::sync::Arc;
use std::time::Duration;

use gridcast_core::features::{FeatureState, Interval, RowLayout};
use gridcast_core::model::Model;
use gridcast_core::model::signature::SignatureError;
use object_store::{ObjectStore, ObjectStoreExt};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::store;
use crate::trust::{Provenance, Trust};

/// A validated model and its identity.
#[derive(Debug)]
pub struct LoadedModel {
    pub model: Model,
    /// sha256 (hex) of the file's payload, as in its header.
    pub version: String,
    /// How its rows are made: the feature state's spec, and which of its
    /// columns the model reads (all of them for a model gridcast trained).
    pub layout: RowLayout,
    /// Why it may be served: who signed it.
    pub provenance: Provenance,
}

/// Why a model was not served.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// Not signed by a trusted key.
    #[error("{0}")]
    Signature(SignatureError),
    /// Not a valid model for this predictor.
    #[error("{0:#}")]
    Invalid(anyhow::Error),
}

impl Refusal {
    /// The metrics label: the signature's reason, or `invalid`.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Signature(e) => e.reason(),
            Refusal::Invalid(_) => "invalid",
        }
    }
}

/// [`load_model`] for a model that must pass `trust` first (checked on
/// the bytes, before the trees are parsed).
pub fn load_trusted(bytes: &[u8], interval_secs: u32, trust: &Trust) -> Result<LoadedModel, Refusal> {
    let provenance = match trust.check(bytes) {
        Ok(provenance) => provenance,
        // Not a model file at all: load_model says why, as without keys.
        Err(SignatureError::File(e)) => {
            return Err(Refusal::Invalid(load_model(bytes, interval_secs).err().unwrap_or_else(|| e.into())));
        }
        Err(e) => return Err(Refusal::Signature(e)),
    };
    let mut loaded = load_model(bytes, interval_secs).map_err(Refusal::Invalid)?;
    loaded.provenance = provenance;
    Ok(loaded)
}

/// Parse and validate model bytes for an interval of `interval_secs`.
pub fn load_model(bytes: &[u8], interval_secs: u32) -> anyhow::Result<LoadedModel> {
    let model = Model::from_bytes(bytes).map_err(|e| {
        if looks_like_xgboost_json(bytes) {
            anyhow::anyhow!(
                "this is an XGBoost JSON model, not a gridcast model file: import it with its feature names \
                 first (gridcast-model import-xgboost --model FILE.json --interval-secs N --out FILE.gcm)"
            )
        } else {
            e.into()
        }
    })?;
    let Some(layout) = model.row_layout() else {
        anyhow::bail!(
            "the model has no feature spec and no feature map (imported without its feature names?): \
             the predictor cannot compute its columns; import it again with gridcast-model import-xgboost"
        );
    };
    let spec = &layout.spec;
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
    let smoke = model.predict_level(&layout.model_row(row));
    if !smoke.is_finite() {
        anyhow::bail!("smoke prediction is {smoke}, not a finite power");
    }
    let nl = bytes.iter().position(|&b| b == b'\n').unwrap_or(0);
    let version = hex::encode(Sha256::digest(&bytes[nl + 1..]));
    Ok(LoadedModel { model, version, layout, provenance: Provenance::NotVerified })
}

/// A JSON object with a `learner` near its start: `booster.save_model`'s file.
fn looks_like_xgboost_json(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(4096)];
    head.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') && head.windows(9).any(|w| w == b"\"learner\"")
}

/// The largest model file read: 100 times the shipped model (0.6 MB).
pub const MAX_MODEL_BYTES: u64 = 64 << 20;

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

    /// The model's bytes, refused unread when the source says it is larger
    /// than [`MAX_MODEL_BYTES`] (a model of a gigabyte is a mistake or an
    /// attack; reading it could take the device's memory).
    async fn read(&self) -> anyhow::Result<Vec<u8>> {
        let too_large = |bytes: u64| {
            anyhow::anyhow!("the model is {bytes} bytes, over the limit of {MAX_MODEL_BYTES}: refused unread")
        };
        match self {
            ModelSource::File(p) => {
                use tokio::io::AsyncReadExt;
                let file = tokio::fs::File::open(p).await?;
                let len = file.metadata().await?.len();
                if len > MAX_MODEL_BYTES {
                    return Err(too_large(len));
                }
                // The file may grow while it is read: never read past the limit.
                let mut bytes = Vec::with_capacity(len as usize);
                file.take(MAX_MODEL_BYTES + 1).read_to_end(&mut bytes).await?;
                if bytes.len() as u64 > MAX_MODEL_BYTES {
                    return Err(too_large(bytes.len() as u64));
                }
                Ok(bytes)
            }
            ModelSource::Object { store, path, .. } => {
                let object = store.get(path).await?;
                if object.meta.size > MAX_MODEL_BYTES {
                    return Err(too_large(object.meta.size));
                }
                Ok(object.bytes().await?.to_vec())
            }
        }
    }

    /// Read and validate the current model (at start-up: an error is fatal).
    pub async fn load(&self, interval_secs: u32, trust: &Trust) -> anyhow::Result<LoadedModel> {
        let bytes = self.read().await.map_err(|e| anyhow::anyhow!("cannot read model {}: {e}", self.describe()))?;
        load_trusted(&bytes, interval_secs, trust)
            .map_err(|e| anyhow::anyhow!("model {} refused: {e}", self.describe()))
    }
}

/// Polls the source and sends every new valid model to the loop.
pub struct ModelWatcher {
    pub source: ModelSource,
    pub interval_secs: u32,
    pub poll: Duration,
    pub current_version: String,
    /// Who must have signed a new model.
    pub trust: Trust,
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
            match load_trusted(&bytes, self.interval_secs, &self.trust) {
                Ok(m) if m.version == version => {}
                Ok(m) => {
                    tracing::info!(source = %self.source.describe(), old = %version, new = %m.version,
                        trees = m.model.trees().len(), provenance = %m.provenance, "new model validated; swapping it in");
                    version = m.version.clone();
                    if out.send(Arc::new(m)).await.is_err() {
                        return Ok(());
                    }
                }
                Err(Refusal::Signature(e)) => {
                    metrics.count_signature_reject(e.reason());
                    tracing::error!(source = %self.source.describe(), reason = e.reason(), error = %e, serving = %version,
                        "new model refused: not signed by a trusted key ([predict] trusted_keys); the current model keeps serving");
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

/// The prototype's model (hand-written XGBoost JSON, 10 s, level target;
/// see core/tests/xgboost_mapping.rs for its trees), imported with its own
/// feature names, as native model bytes. `renames`: `NAME=COLUMN` entries
/// replacing the declaration of the input `NAME`.
#[cfg(test)]
pub(crate) fn imported_prototype(renames: &[&str]) -> Vec<u8> {
    use gridcast_core::features::TargetKind;
    use gridcast_core::model::xgboost::{self, Serving};
    let json = include_bytes!("../../core/tests/data/xgb_prototype_10s.json");
    let mut features: Vec<String> =
        ["p_l1", "p_l2", "p_l3", "p_l1-1", "p_l2-1", "p_l3-1", "p_l1-2", "p_l2-2", "p_l3-2"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    for r in renames {
        let name = r.split('=').next().unwrap();
        *features.iter_mut().find(|f| *f == name).unwrap() = r.to_string();
    }
    let serving = Serving { target: TargetKind::Level, interval_secs: 10, horizon: 1, features: Some(features) };
    xgboost::import_json_mapped(json, &serving).unwrap().to_bytes()
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

    #[test]
    fn an_imported_model_with_a_feature_map_loads_and_picks_its_columns() {
        let m = load_model(&imported_prototype(&[]), 10).unwrap();
        assert!(m.model.meta.feature_spec.is_none());
        assert_eq!(m.layout.width(), 9);
        assert_eq!(m.layout.spec.phase_lags, 2);
        assert_eq!(m.model.meta.feature_names[3], "p_l1-1");
    }

    #[test]
    fn an_imported_model_for_another_interval_is_refused() {
        let err = load_model(&imported_prototype(&[]), 60).unwrap_err().to_string();
        assert!(err.contains("trained on 10 s intervals") && err.contains("[predict] interval_secs"), "{err}");
    }

    #[test]
    fn an_xgboost_file_or_an_import_without_a_feature_map_is_refused_saying_how_to_import() {
        let json = include_bytes!("../../core/tests/data/xgb_prototype_10s.json");
        let err = load_model(json, 10).unwrap_err().to_string();
        assert!(err.contains("XGBoost JSON") && err.contains("import-xgboost"), "{err}");
        let unmapped =
            gridcast_core::model::xgboost::import_json(json, gridcast_core::features::TargetKind::Level).unwrap();
        let err = load_model(&unmapped.to_bytes(), 10).unwrap_err().to_string();
        assert!(err.contains("no feature map") && err.contains("import-xgboost"), "{err}");
    }

    #[tokio::test]
    async fn a_model_file_of_a_gigabyte_is_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("huge.gcm");
        // Sparse: a gigabyte on paper, nothing on the disk.
        std::fs::File::create(&path).unwrap().set_len(1 << 30).unwrap();
        let source = ModelSource::parse(path.to_str().unwrap()).unwrap();
        let err = source.load(60, &crate::trust::Trust::default()).await.unwrap_err().to_string();
        assert!(err.contains("1073741824 bytes, over the limit of 67108864"), "{err}");
    }
}
