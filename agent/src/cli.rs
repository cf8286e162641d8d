//! The `gridcast agent` subcommand.

use std::io::Write;
use std::path::PathBuf;

use tokio_util::sync::CancellationToken;

use crate::config::AgentConfig;

/// Follow a registry tag on this device: run its image by digest, soak a new
/// one, roll a bad one back.
#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// TOML config file (see deploy/agent/agent.toml); GRIDCAST_<SECTION>__<KEY>
    /// environment variables override it.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
}

/// Runs until Ctrl-C or SIGTERM; the predictor keeps running afterwards.
pub async fn run(args: AgentArgs, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    let config: AgentConfig = gridcast_edge::config::load(args.config.as_deref())?;
    if args.print_config {
        let _ = writeln!(std::io::stdout(), "{}", toml::to_string_pretty(&config)?);
        return Ok(());
    }
    let token = CancellationToken::new();
    let run = crate::run::run(config, token.clone());
    tokio::pin!(run, shutdown);
    tokio::select! {
        result = &mut run => return result,
        () = &mut shutdown => token.cancel(),
    }
    run.await
}
