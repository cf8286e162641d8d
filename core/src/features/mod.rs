//! Features: the one piece of code that turns a per-interval power series into
//! model input rows, for training (batch, [`FeatureTable`]) and serving
//! (streaming, [`FeatureState`]). The batch form is the streaming form run
//! over a whole series, so the two cannot disagree.
//!
//! Flow: windows (per-interval averages) -> [`Interval`] -> [`FeatureState`]
//! -> feature row -> `model::Model`.

mod spec;
mod state;
mod table;

pub use spec::{FEATURE_VERSION, FeatureSpec, TargetKind};
pub use state::{FeatureError, FeatureState, Interval};
pub use table::FeatureTable;
