//! `gridcast retrain`: from the history to a challenger, gated against the
//! champion the edge serves now, published where the edge picks it up.
//!
//! 1. **History** ([`history`]): a meter CSV, or the line-protocol files
//!    ingest writes (`kind = "file"`, what the demo writes), one sensor's
//!    per-phase minute means. Gaps stay gaps.
//! 2. **Holdout**: the last `holdout_days` of the history; the challenger
//!    never trains on it.
//! 3. **Gate** ([`gate`], pure): both models predict the holdout one step
//!    ahead at their horizon with the shared feature code; the challenger
//!    ships only if its MAE beats the champion's by `margin` (a tie keeps
//!    the champion).
//! 4. **Publish** ([`publish`]): the shipped model, with its [`Lineage`], is
//!    written under its version, never overwritten, and only then does
//!    `current.gcm`, the key the edge polls, move to it (write, then rename).
//!
//! Exit status (for cron and Kubernetes Jobs): 0 shipped, [`EXIT_NOT_BETTER`]
//! kept the champion, 1 an error.

pub mod config;
pub mod gate;
pub mod history;
pub mod influx;
pub mod publish;

use std::io::Write;
use std::path::PathBuf;

use gridcast_core::features::FeatureTable;
use gridcast_core::model::Lineage;

use crate::cli::load_model;
use crate::pipeline;
use config::RetrainConfig;
use gate::{Scores, Verdict};

/// Exit status of a retrain that kept the champion.
pub const EXIT_NOT_BETTER: i32 = 3;

/// `gridcast retrain --config retrain.toml`
#[derive(Debug, Clone, clap::Args)]
pub struct RetrainArgs {
    /// TOML config file; every key has a default, and GRIDCAST_<SECTION>__<KEY>
    /// environment variables override it.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
}

/// What a retrain decided.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub champion: Scores,
    pub challenger: Scores,
    pub verdict: Verdict,
    /// Where the challenger was published, when it shipped.
    pub published: Option<publish::Published>,
}

/// Run `gridcast retrain`; the exit status it should end with.
pub async fn run(args: RetrainArgs) -> anyhow::Result<i32> {
    let config: RetrainConfig = gridcast_edge::config::load(args.config.as_deref())?;
    if args.print_config {
        let _ = writeln!(std::io::stdout(), "{}", toml::to_string_pretty(&config)?);
        return Ok(0);
    }
    let outcome = retrain(&config, "cli").await?;
    println!("{}", gate::side_by_side(&outcome.champion, &outcome.challenger));
    println!("verdict: {}", outcome.verdict);
    match &outcome.published {
        Some(p) => {
            println!("published {} and moved {} to it", p.versioned.display(), p.current.display());
            Ok(0)
        }
        None => Ok(EXIT_NOT_BETTER),
    }
}

/// One retrain: history, holdout, challenger, gate, publish.
pub async fn retrain(config: &RetrainConfig, trigger: &str) -> anyhow::Result<Outcome> {
    let champion = load_model(std::path::Path::new(&config.champion.model))?;
    let champion_version = champion.payload_sha256();
    let interval = config.interval_secs(&champion)?;
    let series = history::load(&config.history, interval).await?;
    anyhow::ensure!(series.len() >= 2, "the history has {} intervals: nothing to learn from", series.len());
    let (first, last) = (series[0].ts, series[series.len() - 1].ts);
    let holdout_from = last - (config.holdout.days * 86_400.0) as i64;
    anyhow::ensure!(
        holdout_from > first,
        "the history ({} .. {}) is not longer than the {}-day holdout",
        pipeline::rfc3339(first),
        pipeline::rfc3339(last),
        config.holdout.days
    );

    // The challenger: the champion's feature spec (so the edge can swap it
    // in), trained on the history before the holdout.
    let spec = champion.meta.feature_spec.clone().unwrap_or_else(|| config.train.spec(interval));
    let table = FeatureTable::build(&spec, &series)?;
    let (train_rows, _) = gate::split_at(&table, holdout_from);
    anyhow::ensure!(train_rows.len() >= 10, "only {} labelled rows before the holdout", train_rows.len());
    eprintln!(
        "retrain: {} intervals of {interval} s ({} .. {}), training on {} rows before {}",
        series.len(),
        pipeline::rfc3339(first),
        pipeline::rfc3339(last),
        train_rows.len(),
        pipeline::rfc3339(holdout_from)
    );
    let params = config.train.params();
    let (mut challenger, _) = {
        let (spec, params) = (spec.clone(), params.clone());
        tokio::task::spawn_blocking(move || pipeline::fit(&spec, &table, &train_rows, &params, &mut |_, _| {}))
            .await??
    };

    let champion_scores = gate::score(&champion, &series, holdout_from)?;
    let challenger_scores = gate::score(&challenger, &series, holdout_from)?;
    let verdict = gate::verdict(&champion_scores, &challenger_scores, config.gate.margin);
    if !verdict.ship {
        return Ok(Outcome { champion: champion_scores, challenger: challenger_scores, verdict, published: None });
    }
    challenger.meta.lineage = Some(Lineage {
        parent_version: champion_version,
        data_range: (pipeline::rfc3339(first), pipeline::rfc3339(last)),
        holdout_from: pipeline::rfc3339(holdout_from),
        champion_holdout: champion_scores.as_map(),
        challenger_holdout: challenger_scores.as_map(),
        trigger: trigger.to_string(),
        triplets_used: 0,
    });
    let published = publish::publish(&config.publish, &challenger)?;
    Ok(Outcome { champion: champion_scores, challenger: challenger_scores, verdict, published: Some(published) })
}
