//! `gridcast ship`: the predictor as a container image, and a model as that
//! image's own top layer, pushed straight to a registry (no Docker engine),
//! or, with `--engine`, built and pushed by a Docker engine.
//!
//! The flow, as `crane append` does it:
//! - `ship base`: the `gridcast` binary and a predictor config -> one
//!   deterministic layer -> image config (Entrypoint `/gridcast`, Cmd
//!   `predict`) -> manifest -> registry;
//! - `ship model`: a model file, validated -> one small layer at
//!   `/models/current.gcm` -> the base's config with that layer appended ->
//!   manifest listing the base's layers (reused in the registry, never sent
//!   again) plus the new one -> registry, tagged with the model version.
//!
//! `layer` and `image` are pure (bytes in, bytes out); `credentials` decides
//! what to present to a registry; `registry` is the only code that talks to
//! a registry, `engine` the only code that talks to a Docker engine; `push`
//! strings the daemonless path together (and checks a model for both);
//! `cli` is the command line; `signing` reads and writes model signing keys
//! and is `gridcast model keygen|sign|verify`.

pub mod cli;
pub mod credentials;
pub mod engine;
pub mod image;
pub mod layer;
pub mod push;
pub mod registry;
pub mod signing;

pub use engine::{EngineReport, push_model_with_engine};
pub use push::{BaseImage, ModelImage, push_base, push_model};
pub use registry::PushReport;

/// Why a ship failed. Each says what failed, with which input, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    // `reason`, not `source`: the message holds it already, and `{:#}`
    // would print a source a second time.
    #[error("reading {path}: {reason}")]
    Read { path: String, reason: std::io::Error },
    #[error("refusing to ship {path}: {reason}; nothing was pushed")]
    BadModel { path: String, reason: gridcast_core::model::ModelError },
    #[error("{reference:?} is not an image reference like REGISTRY/REPOSITORY[:TAG]: {reason}")]
    BadReference { reference: String, reason: String },
    #[error(transparent)]
    Layer(#[from] layer::LayerError),
    #[error(transparent)]
    Image(#[from] image::ImageError),
    #[error(transparent)]
    Credentials(#[from] credentials::CredentialsError),
    #[error(
        "{what}: registry {registry} refused the credentials ({credentials}): check {user}/{password}, or `docker login {registry}`",
        user = credentials::ENV_USERNAME,
        password = credentials::ENV_PASSWORD
    )]
    Refused { registry: String, what: String, credentials: String },
    #[error("{what}: cannot reach registry {registry} ({cause}): is it running, and is the address right?")]
    Unreachable { registry: String, what: String, cause: String },
    #[error("{what}: {cause}")]
    Registry { what: String, cause: String },
    #[error(
        "{what}: cannot reach the Docker engine at {host} ({origin}): {cause}; is dockerd running? Point DOCKER_HOST or --docker-host at its socket"
    )]
    EngineUnreachable { host: String, origin: String, what: String, cause: String },
    #[error(
        "{host} ({origin}) is not an engine address gridcast can use: it speaks to engines on unix:///PATH sockets only"
    )]
    EngineAddress { host: String, origin: String },
    #[error("{what}: the Docker engine at {host} failed: {cause}")]
    Engine { host: String, what: String, cause: String },
}
