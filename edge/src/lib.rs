//! gridcast-edge: the runtime ingest and predict share. Both are the same
//! front half (MQTT source -> decode -> window -> journal -> commit -> ack)
//! with a different consumer of the closed windows on top.
//!
//! - [`stage`]: the pure decode-and-window state machine; one input in, one
//!   [`stage::Step`] (what to make durable) out. No I/O.
//! - [`driver`]: the thin async layer: commit the step with the consumer's
//!   own writes in one [`spool`] transaction, then ack.
//! - [`source::mqtt`]: rumqttc, persistent session, manual acks, backoff.
//! - [`sinks`]: spooled line protocol to InfluxDB v1/v2 or files, retried.
//! - [`stats`] and [`http`]: counters, `/metrics` and `/health`.
//! - [`config`]: the shared sections and the one loader; [`service`]: the
//!   lifecycle (ordered stop, nothing left running on any exit path).

pub mod backoff;
pub mod config;
pub mod driver;
pub mod http;
pub mod secret;
pub mod service;
pub mod sinks;
pub mod source;
pub mod spool;
pub mod stage;
pub mod stats;
pub mod store;

pub use driver::{Batching, Consumer, Driver, Input, Output};
pub use service::{Service, Shutdown};
pub use spool::Spool;
pub use stage::{Stage, StageConfig, Step};
pub use stats::Stats;
