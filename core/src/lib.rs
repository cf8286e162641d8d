//! gridcast-core: what the edge and the cloud must compute the same way.
//!
//! Everything here is pure: values in, values out, no I/O, no clocks. The
//! ingest, predictor and trainer crates move data between these functions and
//! the outside world.
//!
//! - [`reading`]: the decoded form of one meter reading.
//! - [`payload`]: the meter's binary features 16/17, raw binary readings and JSON.
//! - [`window`]: per-minute event-time windows with a watermark.
//! - [`features`]: model input rows from per-interval power, batch and streaming.
//! - [`model`]: tree evaluator, native model files, XGBoost import.
//! - [`meter_csv`]: the product's meter CSV, the rows the simulator and trainer read.

pub mod features;
pub mod meter_csv;
pub mod model;
pub mod payload;
pub mod reading;
pub mod window;

pub use payload::{DecodeError, Decoder, DecoderConfig};
pub use reading::{FIELD_COUNT, Field, PhaseSum, Reading, SensorId, Source};
pub use window::{ClosedWindow, FieldStats, Push, WindowConfig, WindowKey, Windows};
