//! gridcast-trainer: training, backtests and batch prediction for the
//! gradient-boosted trees that forecast an installation's total power.
//!
//! Flow: meter CSV ([`data`]) -> intervals -> features (gridcast-core) ->
//! our histogram GBDT ([`gbdt`]) -> model file (gridcast-core) ; the
//! [`pipeline`] ties these together and scores a model against persistence
//! and a linear baseline ([`baseline`]); [`cli`] is what `gridcast train`,
//! `gridcast backtest` and `gridcast predict-batch` run; [`retrain`] is
//! `gridcast retrain` (challenger vs champion, published where the edge
//! picks it up).

pub mod baseline;
pub mod cli;
pub mod data;
pub mod gbdt;
pub mod pipeline;
pub mod plot;
pub mod retrain;
