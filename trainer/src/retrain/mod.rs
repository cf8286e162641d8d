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
//! 5. **Ship** ([`ship`], with `[ship]`): the published bytes pushed as a
//!    predictor image, to the tag the edge agent follows.
//!
//! Exit status (for cron and Kubernetes Jobs): 0 shipped, [`EXIT_NOT_BETTER`]
//! kept the champion, [`EXIT_NOT_SHIPPED`] published but the image push
//! failed, 1 an error.

pub mod champion;
pub mod config;
pub mod gate;
pub mod history;
pub mod influx;
pub mod parts;
pub mod publish;
pub mod ship;
pub mod trigger;
pub mod triplets;

use std::io::Write;
use std::path::PathBuf;

use gridcast_core::features::FeatureTable;
use gridcast_core::model::Lineage;

use crate::pipeline;
use config::RetrainConfig;
use gate::{Scores, Verdict};

/// Exit status of a retrain that kept the champion.
pub const EXIT_NOT_BETTER: i32 = 3;
/// Exit status of a retrain that published its model but failed to push it
/// as an image (`[ship]`): the model stays published.
pub const EXIT_NOT_SHIPPED: i32 = 4;

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
    /// Keep running: retrain on this schedule (`6h`, `30m`, `1d`), logging
    /// when the next run is.
    #[arg(long, value_parser = trigger::parse_duration)]
    pub every: Option<std::time::Duration>,
    /// Keep running: retrain once N new mispredicted triplets arrived in the
    /// [triplets] store since the last retrain (remembered in [trigger] state).
    #[arg(long, value_name = "N")]
    pub when_mispredictions: Option<u64>,
    /// Sign each shipped model with this private key (overrides `[publish] signing_key_file`;
    /// else the key in GRIDCAST_SIGNING_KEY; none: published unsigned).
    #[arg(long, env = "GRIDCAST_SIGNING_KEY_FILE")]
    pub signing_key_file: Option<PathBuf>,
}

/// What a retrain decided.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub champion: Scores,
    pub challenger: Scores,
    pub verdict: Verdict,
    /// Where the challenger was published, when it shipped.
    pub published: Option<publish::Published>,
    /// The mispredictions read, used and skipped.
    pub triplets: triplets::TripletTally,
    /// With `[ship]`, after a publish: the image pushed, or why the push
    /// failed (the model stays published).
    pub shipped: Option<Result<ship::Shipped, String>>,
}

impl Outcome {
    /// Why a published model was not shipped, when its push failed.
    pub fn not_shipped(&self) -> Option<String> {
        let (published, Some(Err(cause))) = (self.published.as_ref()?, &self.shipped) else { return None };
        Some(format!("published {} but did not ship it: {cause}", published.current))
    }
}

/// Run `gridcast retrain`; the exit status it should end with. With a
/// trigger it runs until `shutdown` and ends with 0.
pub async fn run(args: RetrainArgs, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<i32> {
    let mut config: RetrainConfig = gridcast_edge::config::load(args.config.as_deref())?;
    if let Some(file) = args.signing_key_file {
        config.publish.signing_key_file = Some(file);
    }
    if args.print_config {
        let _ = writeln!(std::io::stdout(), "{}", toml::to_string_pretty(&config)?);
        return Ok(0);
    }
    if args.every.is_some() || args.when_mispredictions.is_some() {
        anyhow::ensure!(args.when_mispredictions != Some(0), "--when-mispredictions must be at least 1");
        let triggers = trigger::Triggers {
            every: args.every,
            when_mispredictions: args.when_mispredictions,
            poll: std::time::Duration::from_secs(config.trigger.poll_secs.max(1)),
        };
        trigger::watch(&config, &triggers, shutdown).await?;
        return Ok(0);
    }
    let outcome = retrain_and_report(&config, "cli").await?;
    if let Some(message) = outcome.not_shipped() {
        // One line, as the binary prints an error, under its own status.
        eprintln!("gridcast: {message}");
        return Ok(EXIT_NOT_SHIPPED);
    }
    Ok(if outcome.published.is_some() { 0 } else { EXIT_NOT_BETTER })
}

/// One retrain, with both models' scores and the verdict on stdout.
pub async fn retrain_and_report(config: &RetrainConfig, trigger: &str) -> anyhow::Result<Outcome> {
    let outcome = retrain(config, trigger).await?;
    println!("{}", gate::side_by_side(&outcome.champion, &outcome.challenger));
    println!("verdict: {}", outcome.verdict);
    if let Some(p) = &outcome.published {
        println!("published {} and moved {} to it", p.versioned, p.current);
    }
    match &outcome.shipped {
        Some(Ok(shipped)) => println!("shipped {}@{}", shipped.image, shipped.digest),
        Some(Err(_)) => println!("not shipped: the image push failed"),
        None => {}
    }
    Ok(outcome)
}

/// One retrain: history, holdout, challenger, gate, publish, ship.
pub async fn retrain(config: &RetrainConfig, trigger: &str) -> anyhow::Result<Outcome> {
    // The key first: a wrong one fails the retrain before any training.
    let signing_key = gridcast_ship::signing::signing_key(config.publish.signing_key_file.as_deref())?;
    match &signing_key {
        Some(key) => eprintln!("retrain: a shipped model is signed with key {}", key.public_key()),
        None => eprintln!("retrain: no signing key: a shipped model is published unsigned"),
    }
    let champion = champion::load(&config.champion.model).await?;
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
    // The rows the champion mispredicted weigh more.
    let mut tally = triplets::TripletTally::default();
    let days = (day(first), day(holdout_from));
    let marked = triplets::load(
        &config.triplets,
        config.history.sensor.as_deref(),
        &spec.names(),
        (&days.0, &days.1),
        &mut tally,
    )
    .await?;
    let weights =
        triplets::row_weights(train_rows.iter().map(|&i| table.ts[i]), &marked, config.triplets.weight, &mut tally);
    if config.triplets.store.is_some() {
        eprintln!("retrain: {tally}");
    }

    let params = config.train.params();
    let (mut challenger, trained) = {
        let (spec, params) = (spec.clone(), params.clone());
        tokio::task::spawn_blocking(move || {
            pipeline::fit_weighted(&spec, &table, &train_rows, Some(&weights), &params, &mut progress(params.n_trees))
        })
        .await??
    };
    eprintln!(
        "retrain: trained {} trees on {} rows in {:.1} s",
        challenger.forest().n_trees(),
        trained.train_rows,
        trained.seconds
    );

    let champion_scores = gate::score(&champion, &series, holdout_from)?;
    let challenger_scores = gate::score(&challenger, &series, holdout_from)?;
    let verdict = gate::verdict(&champion_scores, &challenger_scores, config.gate.margin);
    if !verdict.ship {
        return Ok(Outcome {
            champion: champion_scores,
            challenger: challenger_scores,
            verdict,
            published: None,
            triplets: tally,
            shipped: None,
        });
    }
    challenger.meta.lineage = Some(Lineage {
        parent_version: champion_version,
        data_range: (pipeline::rfc3339(first), pipeline::rfc3339(last)),
        holdout_from: pipeline::rfc3339(holdout_from),
        champion_holdout: champion_scores.as_map(),
        challenger_holdout: challenger_scores.as_map(),
        trigger: trigger.to_string(),
        triplets_used: tally.used,
    });
    let file = publish::ModelFile::new(&challenger, signing_key.as_ref());
    let published = publish::publish(&config.publish, &file).await?;
    let shipped = match &config.ship {
        // The very bytes publish wrote.
        Some(ship) => Some(ship::ship(ship, &published, file.bytes).await.map_err(|e| e.to_string())),
        None => None,
    };
    Ok(Outcome {
        champion: champion_scores,
        challenger: challenger_scores,
        verdict,
        published: Some(published),
        triplets: tally,
        shipped,
    })
}

/// Training progress on stderr, for a terminal and for a Job's log alike:
/// at most one line every 5 s (trees grown, the validation MAE). The first
/// pass picks the number of trees on a validation tail, the refit grows
/// that many again on all rows.
fn progress(max_trees: usize) -> impl FnMut(usize, Option<f64>) + Send {
    let started = std::time::Instant::now();
    let mut last = started;
    move |trees, metric| {
        if last.elapsed() < std::time::Duration::from_secs(5) {
            return;
        }
        last = std::time::Instant::now();
        let metric = metric.map_or_else(String::new, |m| format!(", validation MAE {m:.1} W"));
        eprintln!("retrain: training, {trees}/{max_trees} trees{metric} ({:.0} s)", started.elapsed().as_secs_f64());
    }
}

/// The UTC date of Unix second `ts`, as the predictor's `date=` partitions name it.
fn day(ts: i64) -> String {
    pipeline::rfc3339(ts).get(..10).unwrap_or_default().to_string()
}
