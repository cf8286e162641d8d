//! `gridcast agent`: one per edge device. It watches a registry tag, runs
//! the predictor image it points to by digest, soaks a new one, and rolls
//! back a bad one.
//!
//! - [`machine`]: the decisions, pure (no I/O, no clock);
//! - [`state`]: the machine's state on disk, saved atomically;
//! - [`config`]: `[agent]`, `[container]`, `[soak]`, ... from TOML and env;
//! - [`engine`]: the Docker engine, through bollard;
//! - the tag's digest comes from `gridcast_ship::registry` (a HEAD on the manifest);
//! - [`probe`]: the predictor's `/health` and `/metrics`;
//! - [`events`]: deploy events to InfluxDB, for Grafana annotations;
//! - [`run`]: the loop that observes, decides and acts; [`cli`] its command.

pub mod cli;
pub mod config;
pub mod engine;
pub mod events;
pub mod machine;
pub mod probe;
pub mod run;
pub mod state;
