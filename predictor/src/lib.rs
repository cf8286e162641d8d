//! gridcast-predictor: the edge predictor, as source -> features -> model ->
//! judge -> spool -> blob store.
//!
//! - source: the edge runtime (`gridcast-edge`): MQTT, decoding, per-interval
//!   windows, one spool transaction per batch, commit before ack.
//! - [`forecast`]: per sensor, core's streaming features and the model;
//!   [`judge`]: the misprediction rule (pure).
//! - [`spool`]: mispredicted [`triplet`]s and sensor states, tables of the
//!   edge spool written in each batch's one transaction.
//! - [`uploader`]: batches of triplets to blob storage ([`store`]), under
//!   idempotent keys.
//! - [`model_source`]: model loading, validation and hot reload.
//! - [`metrics`]: the predictor's counters; [`run`]: the consumer and the wiring;
//!   [`cli`]: the `gridcast predict` subcommand.

pub mod cli;
pub mod config;
pub mod forecast;
pub mod judge;
pub mod metrics;
pub mod model_source;
pub mod run;
pub mod spool;
pub mod triplet;
pub mod trust;
pub mod uploader;

/// Blob storage by URL (the edge runtime's).
pub use gridcast_edge::store;

pub use config::PredictConfig;
pub use run::Predictor;
