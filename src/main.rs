//! `gridcast`: the one binary. Each subcommand lives in the crate that owns
//! it; this file only parses the command line, sets up logging, and turns
//! Ctrl-C / SIGTERM into a graceful shutdown.

#[cfg(feature = "cloud")]
mod demo;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(name = "gridcast", version, about = "Learn the load of an electrical installation at the edge.")]
struct Cli {
    /// Async worker threads. One is the cheapest per reading (measured in
    /// bench/results/ingest.json: fewer cross-thread wake-ups); disk syncs and
    /// training run on threads of their own either way.
    #[arg(long, global = true, env = "GRIDCAST_WORKER_THREADS", default_value_t = 1)]
    worker_threads: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Read meter readings from MQTT, average them per minute, write them to InfluxDB.
    Ingest(gridcast_ingest::cli::IngestArgs),
    /// Replay a CSV of real minute data as a meter publishing at 12 Hz.
    Simulate(gridcast_simulator::SimulateArgs),
    /// Predict every interval from MQTT readings; ship mispredictions to blob storage.
    Predict(gridcast_predictor::cli::PredictArgs),
    #[cfg(feature = "cloud")]
    /// Run the whole path on embedded defaults: broker, simulator, ingest, files under ./data.
    Demo(demo::DemoArgs),
    #[cfg(feature = "cloud")]
    /// Train a model on a meter CSV (timestamp,p_l1[,p_l2,p_l3] in W) and write it.
    Train(gridcast_trainer::cli::TrainArgs),
    #[cfg(feature = "cloud")]
    /// Train on the first part of a CSV, predict the rest one step ahead, compare with persistence.
    Backtest(gridcast_trainer::cli::BacktestArgs),
    #[cfg(feature = "cloud")]
    /// One prediction per row of a features CSV, columns picked by the model's feature names.
    PredictBatch(gridcast_trainer::cli::PredictBatchArgs),
    #[cfg(feature = "cloud")]
    /// Import an XGBoost JSON model with a declared feature mapping, so `predict` can serve it.
    ImportXgboost(gridcast_trainer::cli::ImportXgboostArgs),
    #[cfg(feature = "cloud")]
    /// Train a challenger on the history, gate it against the champion, publish it if it wins
    /// (exit 0 shipped, 3 kept the champion, 4 published but the image push failed, 1 error).
    Retrain(gridcast_trainer::retrain::RetrainArgs),
    #[cfg(feature = "cloud")]
    /// Build and push the predictor image, or a model as its top layer, straight to a registry.
    Ship(gridcast_ship::cli::ShipArgs),
    #[cfg(feature = "cloud")]
    /// Sign models: make a signing key pair, sign a model file, verify one against public keys.
    Model(gridcast_ship::signing::ModelArgs),
    #[cfg(feature = "agent")]
    /// On an edge device: run the predictor image a registry tag points to, soak new ones, roll back bad ones.
    Agent(gridcast_agent::cli::AgentArgs),
}

/// Errors end the process with one line on stderr (the cause chain joined
/// by `: `, no backtrace) and exit status 1.
fn main() {
    if let Err(error) = run() {
        eprintln!("gridcast: {error:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,rumqttd=off")))
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(cli.worker_threads.max(1)).enable_all().build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Ingest(args) => gridcast_ingest::cli::run(args, shutdown_signal()).await,
            Command::Simulate(args) => {
                let report = gridcast_simulator::run(args).await?;
                println!("{report}");
                Ok(())
            }
            Command::Predict(args) => gridcast_predictor::cli::run(args, shutdown_signal()).await,
            #[cfg(feature = "cloud")]
            Command::Demo(args) => demo::run(args, shutdown_signal()).await,
            // One-shot, CPU-bound commands: blocking inside the runtime is fine.
            #[cfg(feature = "cloud")]
            Command::Train(args) => gridcast_trainer::cli::run_train(args),
            #[cfg(feature = "cloud")]
            Command::Backtest(args) => gridcast_trainer::cli::run_backtest(args),
            #[cfg(feature = "cloud")]
            Command::PredictBatch(args) => gridcast_trainer::cli::run_predict_batch(args),
            #[cfg(feature = "cloud")]
            Command::ImportXgboost(args) => gridcast_trainer::cli::run_import_xgboost(args),
            #[cfg(feature = "cloud")]
            Command::Retrain(args) => match gridcast_trainer::retrain::run(args, shutdown_signal()).await? {
                0 => Ok(()),
                status => std::process::exit(status),
            },
            #[cfg(feature = "cloud")]
            Command::Ship(args) => gridcast_ship::cli::run(args).await,
            #[cfg(feature = "cloud")]
            Command::Model(args) => gridcast_ship::signing::run(args),
            #[cfg(feature = "agent")]
            Command::Agent(args) => gridcast_agent::cli::run(args, shutdown_signal()).await,
        }
    })
}

/// Resolves on Ctrl-C or SIGTERM (what `docker stop` and systemd send).
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
