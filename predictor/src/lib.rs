//! gridcast-predictor: the edge predictor, as source -> features -> model ->
//! judge -> spool -> blob store.
//!
//! - source: ingest's MQTT source and decoder, core's windows (per interval).
//! - [`forecast`]: per sensor, core's streaming features and the model;
//!   [`judge`]: the misprediction rule (pure).
//! - [`spool`]: mispredicted [`triplet`]s and sensor states on disk, durable
//!   before the MQTT messages are acknowledged.
//! - [`uploader`]: batches of triplets to blob storage ([`store`]), under
//!   idempotent keys.
//! - [`model_source`]: model loading, validation and hot reload.
//! - [`metrics`]: `/metrics` and `/health`; [`run`]: the wiring and the loop;
//!   [`cli`]: the `gridcast predict` subcommand.

pub mod cli;
pub mod config;
pub mod forecast;
pub mod judge;
pub mod metrics;
pub mod model_source;
pub mod run;
pub mod spool;
pub mod store;
pub mod triplet;
pub mod uploader;

pub use config::PredictConfig;
pub use run::Predictor;
