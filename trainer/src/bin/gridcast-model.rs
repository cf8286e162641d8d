//! `gridcast-model`: the trainer's commands without the rest of gridcast,
//! plus the measurements `bench/model/bench_vs_xgboost.py` drives. The
//! product's entry point is `gridcast train|backtest|predict-batch`; this
//! binary exists so the model engine can be run and benchmarked alone.

use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, Parser, Subcommand};
use gridcast_trainer::cli;
use gridcast_trainer::gbdt::{self, Loss, TrainParams};

#[derive(Parser)]
#[command(name = "gridcast-model", about = "gridcast model engine: train, backtest, predict, benchmark")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    Train(cli::TrainArgs),
    Backtest(cli::BacktestArgs),
    PredictBatch(cli::PredictBatchArgs),
    /// Turn an XGBoost JSON model into a model file `gridcast predict` serves,
    /// its inputs declared as columns the predictor computes.
    ImportXgboost(cli::ImportXgboostArgs),
    /// Write the feature table (features, current_total, next_total, target).
    Features(cli::FeaturesArgs),
    /// Time single-row and batch prediction of a model on a features CSV (JSON out).
    Latency(LatencyArgs),
    /// Time training on a raw f32 matrix file (JSON out).
    TrainTime(TrainTimeArgs),
    /// Write a model as ONNX TreeEnsembleRegressor (raw output: the change for change models).
    #[cfg(feature = "onnx")]
    ExportOnnx(ExportOnnxArgs),
}

#[cfg(feature = "onnx")]
#[derive(Args)]
struct ExportOnnxArgs {
    /// A gridcast model file or an XGBoost JSON model.
    #[arg(long)]
    model: PathBuf,
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct LatencyArgs {
    #[arg(long)]
    model: PathBuf,
    /// CSV with the model's feature columns.
    #[arg(long)]
    csv: PathBuf,
    /// Write our predictions here, one per line (to compare with xgboost).
    #[arg(long)]
    predictions: Option<PathBuf>,
}

#[derive(Args)]
struct TrainTimeArgs {
    /// Little-endian f32 file: rows x (features + 1), target last (train part).
    #[arg(long)]
    train: PathBuf,
    /// Same layout, scored after training.
    #[arg(long)]
    test: PathBuf,
    #[arg(long)]
    features: usize,
    #[arg(long, default_value_t = 250)]
    trees: usize,
    #[arg(long, default_value_t = 6)]
    depth: usize,
    #[arg(long, default_value_t = 2)]
    threads: usize,
    #[arg(long, default_value_t = 0.1)]
    learning_rate: f64,
    #[arg(long, value_enum, default_value_t = Loss::Squared)]
    loss: Loss,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Train(a) => cli::run_train(a),
        Cmd::Backtest(a) => cli::run_backtest(a),
        Cmd::PredictBatch(a) => cli::run_predict_batch(a),
        Cmd::ImportXgboost(a) => cli::run_import_xgboost(a),
        Cmd::Features(a) => cli::run_features(a),
        Cmd::Latency(a) => latency(a),
        Cmd::TrainTime(a) => train_time(a),
        #[cfg(feature = "onnx")]
        Cmd::ExportOnnx(a) => {
            let m = cli::load_model(&a.model)?;
            std::fs::write(&a.out, gridcast_core::model::onnx::to_onnx(&m))?;
            eprintln!("wrote {} ({} trees)", a.out.display(), m.forest().n_trees());
            Ok(())
        }
    }
}

fn latency(a: LatencyArgs) -> anyhow::Result<()> {
    let model = cli::load_model(&a.model)?;
    let names = &model.meta.feature_names;
    let x = gridcast_trainer::data::read_feature_rows(std::fs::File::open(&a.csv)?, names)?;
    let w = names.len();
    let n = x.len() / w;
    anyhow::ensure!(n > 0, "no rows");
    let mut out = vec![0f32; n];
    model.forest().predict_batch(&x, &mut out);
    if let Some(p) = &a.predictions {
        let s: String = out.iter().map(|v| format!("{v}\n")).collect();
        std::fs::write(p, s)?;
    }
    // single row: cycle through up to 10k different rows, many passes
    let rows = n.min(10_000);
    let reps = (2_000_000 / rows).max(1);
    let mut acc = 0f32;
    let t = Instant::now();
    for _ in 0..reps {
        for r in 0..rows {
            acc += model.predict_raw(std::hint::black_box(&x[r * w..r * w + w]));
        }
    }
    let single_ns = t.elapsed().as_nanos() as f64 / (reps * rows) as f64;
    let t = Instant::now();
    let batch_reps = 5;
    for _ in 0..batch_reps {
        model.forest().predict_batch(std::hint::black_box(&x), &mut out);
    }
    let batch_ns = t.elapsed().as_nanos() as f64 / (batch_reps * n) as f64;
    println!(
        "{}",
        serde_json::json!({"rows": n, "trees": model.forest().n_trees(), "single_row_ns": single_ns,
            "batch_ns_per_row": batch_ns, "checksum": acc})
    );
    Ok(())
}

fn read_f32(path: &PathBuf, cols: usize) -> anyhow::Result<(Vec<f32>, Vec<f32>)> {
    let b = std::fs::read(path)?;
    let v: Vec<f32> = b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    anyhow::ensure!(v.len().is_multiple_of(cols + 1), "{} is not rows x {} f32", path.display(), cols + 1);
    let mut x = Vec::with_capacity(v.len());
    let mut y = Vec::new();
    for r in v.chunks_exact(cols + 1) {
        x.extend_from_slice(&r[..cols]);
        y.push(r[cols]);
    }
    Ok((x, y))
}

fn train_time(a: TrainTimeArgs) -> anyhow::Result<()> {
    let (x, y) = read_f32(&a.train, a.features)?;
    let (xt, yt) = read_f32(&a.test, a.features)?;
    let p = TrainParams {
        n_trees: a.trees,
        max_depth: a.depth,
        learning_rate: a.learning_rate,
        loss: a.loss,
        // xgboost's defaults, so both grow the same trees
        min_child_weight: 1.0,
        lambda: 1.0,
        early_stopping_rounds: 0,
        threads: a.threads,
        ..TrainParams::default()
    };
    let t = Instant::now();
    let trained = gbdt::train(&x, a.features, &y, &p, &mut |_, _| {})?;
    let secs = t.elapsed().as_secs_f64();
    let f = gridcast_core::model::Forest::compile(&trained.trees, trained.base_score, a.features);
    let n = yt.len();
    let mae =
        (0..n).map(|i| (f.predict_row(&xt[i * a.features..(i + 1) * a.features]) - yt[i]).abs() as f64).sum::<f64>()
            / n as f64;
    let rmse = ((0..n)
        .map(|i| ((f.predict_row(&xt[i * a.features..(i + 1) * a.features]) - yt[i]) as f64).powi(2))
        .sum::<f64>()
        / n as f64)
        .sqrt();
    println!(
        "{}",
        serde_json::json!({"rows": y.len(), "seconds": secs, "test_mae": mae, "test_rmse": rmse, "trees": trained.trees.len()})
    );
    Ok(())
}
