//! The `gridcast predict` subcommand.

use std::io::Write;
use std::path::PathBuf;

use crate::config;
use crate::run::Predictor;

/// Predict every interval from MQTT readings, catch mispredictions, ship them to blob storage.
#[derive(Debug, clap::Args)]
pub struct PredictArgs {
    /// TOML config file; every key has a default, and GRIDCAST_<SECTION>__<KEY>
    /// environment variables override it.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
}

/// Run until Ctrl-C or SIGTERM.
pub async fn run(args: PredictArgs, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    let config = config::load(args.config.as_deref())?;
    if args.print_config {
        let _ = writeln!(std::io::stdout(), "{}", toml::to_string_pretty(&config)?);
        return Ok(());
    }
    Predictor::start(config).await?.run_until(shutdown).await
}
