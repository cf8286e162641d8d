//! gridcast-ingest: the edge data path's first consumer. The edge runtime
//! (`gridcast-edge`) takes the meter readings from MQTT, windows them per
//! minute and commits every batch before acking it; ingest turns each closed
//! window into a line of line protocol ([`line`]) for the sinks.
//!
//! - [`config`]: `gridcast ingest`'s configuration;
//! - [`run`]: the wiring; [`cli`]: the `gridcast ingest` subcommand.

pub mod cli;
pub mod config;
pub mod line;
pub mod run;

pub use config::IngestConfig;
pub use run::Ingest;
