//! Features: the one piece of code that turns a per-interval power series into
//! model input rows, for training (batch, [`FeatureTable`]) and serving
//! (streaming, [`FeatureState`]). The batch form is the streaming form run
//! over a whole series, so the two cannot disagree.
//!
//! A model gridcast did not train (an imported XGBoost model) declares which
//! of these columns its inputs are with a [`FeatureMap`]; its rows are the
//! same `FeatureState` rows, columns picked by a [`RowLayout`].
//!
//! Flow: windows (per-interval averages) -> [`Interval`] -> [`FeatureState`]
//! -> feature row -> `model::Model`.

mod mapping;
mod spec;
mod state;
mod table;

pub use mapping::{COLUMN_GRAMMAR, FeatureMap, MapError, RowLayout, canonical_column};
pub use spec::{FEATURE_VERSION, FeatureSpec, TargetKind};
pub use state::{FeatureError, FeatureState, Interval};
pub use table::FeatureTable;
