//! Shipping a published model as a predictor image (`[ship]`): the bytes
//! just published, as one layer on the predictor base image, pushed to the
//! tag the edge agent follows, as `gridcast ship model` pushes them
//! (daemonless, or through a Docker engine with `engine = true`).
//!
//! It runs only after the publish succeeded, so a push that fails leaves the
//! model published (a predictor polling `current.gcm` has it already) and is
//! told apart from a retrain that failed: exit status
//! [`EXIT_NOT_SHIPPED`](super::EXIT_NOT_SHIPPED).

use gridcast_ship::push::{self, ModelImage};
use gridcast_ship::{ShipError, engine};

use super::config::ShipConfig;
use super::publish::Published;

/// Where a published model was pushed.
#[derive(Debug, Clone, PartialEq)]
pub struct Shipped {
    /// The reference pushed, `registry/repository:tag`.
    pub image: String,
    /// `sha256:<hex>` of the manifest pushed.
    pub digest: String,
}

/// Push `bytes`, the model published at `published`, as `config` says; what
/// was pushed goes to stderr as the rest of retrain's progress does.
pub async fn ship(config: &ShipConfig, published: &Published, bytes: Vec<u8>) -> Result<Shipped, ShipError> {
    let image = ModelImage {
        model: published.current.clone(),
        base: config.base.clone(),
        image: config.image.clone(),
        insecure: config.insecure,
        // Published signed already, when a key is configured: these bytes.
        signing_key: None,
    };
    let prepared = push::prepare_model_bytes(&image, bytes)?;
    let how = if config.engine { "through the Docker engine" } else { "daemonless" };
    eprintln!("retrain: shipping model {} as {} on {} ({how})", prepared.version, prepared.target, prepared.base);
    let (report, digest) = if config.engine {
        let report = engine::push_prepared_with_engine(&prepared, config.docker_host.as_deref()).await?;
        (report.to_string(), report.digest)
    } else {
        let report = push::push_prepared(&prepared, config.insecure).await?;
        (report.to_string(), report.digest)
    };
    eprintln!("retrain: {report}");
    Ok(Shipped { image: prepared.target.whole(), digest })
}
