//! The champion: the model the edge serves now, read from the same place
//! the predictor reads it (`[predict] model`): a local path, or an object in
//! a store (`s3://`, `az://`, `gs://`, `file://`).
//!
//! A local file may be an XGBoost JSON model (imported); an object is a
//! native `.gcm` file, the only format the predictor loads from a store.

use gridcast_core::model::Model;
use gridcast_edge::store;
use object_store::ObjectStoreExt;

use crate::cli::load_model;

/// The champion model and the sha256 version the edge reports for it.
pub async fn load(source: &str) -> anyhow::Result<Model> {
    if !store::is_object_url(source) || source.starts_with("file://") {
        let path = source.strip_prefix("file://").unwrap_or(source);
        return load_model(std::path::Path::new(path));
    }
    let (store, path) = store::open(source)?;
    let bytes = store
        .get(&path)
        .await
        .map_err(|e| anyhow::anyhow!("cannot read the champion {source}: {e}"))?
        .bytes()
        .await
        .map_err(|e| anyhow::anyhow!("cannot read the champion {source}: {e}"))?;
    Model::from_bytes(&bytes).map_err(|e| anyhow::anyhow!("the champion {source} is not a valid model: {e}"))
}
