//! The `gridcast ingest` subcommand.

use std::io::Write;
use std::path::PathBuf;

use crate::config;
use crate::run::Ingest;

/// Read meter readings from MQTT, average them per minute, write them to InfluxDB.
#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// TOML config file; every key has a default, and GRIDCAST_<SECTION>__<KEY>
    /// environment variables override it.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
}

/// Run until Ctrl-C or SIGTERM.
pub async fn run(args: IngestArgs, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    let config = config::load(args.config.as_deref())?;
    if args.print_config {
        // A closed pipe (`| head`) is not an error worth a panic.
        let _ = writeln!(std::io::stdout(), "{}", toml::to_string_pretty(&config)?);
        return Ok(());
    }
    Ingest::start(config).await?.run_until(shutdown).await
}
