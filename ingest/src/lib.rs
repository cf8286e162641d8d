//! gridcast-ingest: the edge data path, as source -> transform -> sink.
//!
//! - [`source::mqtt`]: rumqttc, persistent session, manual acks, backoff.
//! - [`pipeline`]: decode and window (pure code from gridcast-core), commit
//!   to the [`spool`], then ack.
//! - [`sinks`]: spooled windows to InfluxDB v1/v2 or files, with retries.
//! - [`run`]: the wiring; [`cli`]: the `gridcast ingest` subcommand.
//! - [`simulate`]: a meter simulator publishing real minute data at 12 Hz.

pub mod backoff;
pub mod cli;
pub mod config;
pub mod pipeline;
pub mod run;
pub mod simulate;
pub mod sinks;
pub mod source;
pub mod spool;
pub mod stats;

pub use config::IngestConfig;
pub use run::Ingest;
