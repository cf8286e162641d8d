//! The demo's retrains: after a number of simulated minutes (or of
//! uploaded triplets) a retrain runs in this process on one meter's history
//! in `./data/lines` and the triplets, gated against the model the
//! predictor serves; a challenger that wins is published to `./data/models/`.

use super::*;

/// The demo's retrains: when the next is due, the one running, the last
/// verdict, and the shipped version the predictor has yet to serve.
pub(super) struct Retrainer {
    /// `None`: retraining is off.
    config: Option<RetrainConfig>,
    /// The ingest sink whose lines are the history (for counting minutes).
    pub(super) lines_sink: Option<String>,
    meter: u32,
    holdout_minutes: u64,
    every_minutes: u64,
    after_triplets: u64,
    next_minutes: Option<u64>,
    next_triplets: Option<u64>,
    task: Option<JoinHandle<anyhow::Result<Outcome>>>,
    last: Option<LastRetrain>,
    pub(super) runs: u32,
    /// A shipped version, and until when the demo waits to see it served.
    awaiting_swap: Option<(String, Instant)>,
}

/// What the last retrain decided, for the summary line.
enum LastRetrain {
    Shipped { version: String, challenger_mae: f64, champion_mae: f64 },
    Kept { challenger_mae: f64, champion_mae: f64 },
    Failed,
}

impl Retrainer {
    /// Check the flags, build the retrain config and say what will happen.
    pub(super) fn plan(
        args: &DemoRetrainArgs,
        demo: &DemoArgs,
        sinks: &[SinkConfig],
        generator: &Generator,
        current: &Path,
    ) -> anyhow::Result<Retrainer> {
        let lines_dir = sinks.iter().find_map(|s| match s {
            SinkConfig::File { dir } => Some(dir.clone()),
            _ => None,
        });
        let mut retrainer = Retrainer {
            config: None,
            lines_sink: lines_dir.as_ref().map(|dir| SinkConfig::File { dir: dir.clone() }.name()),
            meter: args.meter,
            holdout_minutes: args.holdout_minutes,
            every_minutes: args.every_minutes,
            after_triplets: args.after_triplets,
            next_minutes: (args.after_minutes > 0).then_some(args.after_minutes),
            next_triplets: (args.after_triplets > 0).then_some(args.after_triplets),
            task: None,
            last: None,
            runs: 0,
            awaiting_swap: None,
        };
        if retrainer.next_minutes.is_none() && retrainer.next_triplets.is_none() {
            println!("retrain: off (--retrain-after-minutes 0, --retrain-after-triplets 0)");
            return Ok(retrainer);
        }
        let Some(lines_dir) = lines_dir else {
            println!("retrain: off: it learns from ingest's line-protocol files, and the config names no file sink");
            return Ok(retrainer);
        };
        anyhow::ensure!(
            args.meter < demo.sensors,
            "--retrain-meter {} names no meter: there are {} (0 to {})",
            args.meter,
            demo.sensors,
            demo.sensors - 1
        );
        anyhow::ensure!(args.holdout_minutes > 0, "--retrain-holdout-minutes must be at least 1");
        let sensor = sensor_hex(&generator.sensors()[args.meter as usize]);
        let config = retrain_config(&lines_dir, &sensor, current, args.holdout_minutes)?;
        if let Some(m) = retrainer.next_minutes.filter(|&m| m > demo.minutes as u64) {
            println!("retrain: --retrain-after-minutes {m} is beyond the demo's {} minutes", demo.minutes);
        }
        println!(
            "retrain: meter {} ({sensor}) {}, on its history in {} (the last {} minutes held out) and the \
             triplets; champion {}, a winner is published to {}",
            args.meter,
            retrainer.due_text(),
            lines_dir.display(),
            args.holdout_minutes,
            current.display(),
            config.publish.models_dir().display()
        );
        retrainer.config = Some(config);
        Ok(retrainer)
    }

    /// Start a retrain if one is due and none is running. It runs on the
    /// runtime beside ingest and predict; the training itself runs on a
    /// blocking thread, so it stalls neither.
    pub(super) fn start_if_due(&mut self, minutes: u64, triplets: u64) {
        let Some(config) = &self.config else { return };
        if self.task.is_some() {
            return;
        }
        let on_minutes = self.next_minutes.is_some_and(|m| minutes >= m);
        let on_triplets = self.next_triplets.is_some_and(|t| triplets >= t);
        if !(on_minutes || on_triplets) {
            return;
        }
        if on_minutes {
            self.next_minutes = (self.every_minutes > 0).then(|| minutes + self.every_minutes);
        }
        if self.next_triplets.is_some() {
            self.next_triplets = Some(triplets + self.after_triplets);
        }
        self.runs += 1;
        let why =
            if on_minutes { format!("{minutes} minutes written") } else { format!("{triplets} triplets uploaded") };
        println!("retrain #{}: {why}; training a challenger on meter {}", self.runs, self.meter);
        let config = config.clone();
        self.task = Some(tokio::spawn(async move { retrain(&config, "demo").await }));
    }

    /// If the running retrain has ended, print its scores and verdict.
    pub(super) async fn collect(&mut self) {
        if !self.task.as_ref().is_some_and(|t| t.is_finished()) {
            return;
        }
        let Some(task) = self.task.take() else { return };
        let outcome = match task.await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(e)) => return self.failed(format!("{e:#}")),
            Err(e) => return self.failed(format!("the retrain task ended: {e}")),
        };
        println!(
            "retrain #{}: holdout = the last {} minutes of meter {}\n{}\nverdict: {}",
            self.runs,
            self.holdout_minutes,
            self.meter,
            gate::side_by_side(&outcome.champion, &outcome.challenger),
            outcome.verdict
        );
        let (challenger_mae, champion_mae) = (outcome.challenger.mae, outcome.champion.mae);
        self.last = Some(match outcome.published {
            Some(p) => {
                let dir = self.config.as_ref().map(|c| c.publish.models_dir()).unwrap_or_default();
                println!(
                    "published {} and moved {} to it; the predictor polls it every second",
                    dir.join(format!("{}.gcm", p.version)).display(),
                    dir.join(CURRENT).display()
                );
                self.awaiting_swap = Some((p.version.clone(), Instant::now() + Duration::from_secs(30)));
                LastRetrain::Shipped { version: p.version, challenger_mae, champion_mae }
            }
            None => LastRetrain::Kept { challenger_mae, champion_mae },
        });
    }

    pub(super) fn failed(&mut self, error: String) {
        println!("retrain #{} failed: {error}", self.runs);
        self.last = Some(LastRetrain::Failed);
    }

    /// A retrain is running, or a shipped model is not serving yet (for at
    /// most 30 s: a model the predictor refuses is logged by it).
    pub(super) fn busy(&mut self, serving: &str) -> bool {
        if let Some((version, until)) = &self.awaiting_swap
            && (version == serving || Instant::now() > *until)
        {
            self.awaiting_swap = None;
        }
        self.task.is_some() || self.awaiting_swap.is_some()
    }

    /// Stop waiting for a running retrain. Its training thread finishes on
    /// its own; publishing is a rename, so `current.gcm` is whole either way.
    pub(super) fn abort(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    /// The summary line's retrain field: running, the last verdict, or
    /// when the first is due.
    pub(super) fn status(&self) -> String {
        if self.config.is_none() {
            return "off".into();
        }
        if self.task.is_some() {
            return format!("#{} running", self.runs);
        }
        match &self.last {
            Some(LastRetrain::Shipped { version, challenger_mae, champion_mae }) => {
                format!("shipped {} (MAE {challenger_mae:.1} W vs {champion_mae:.1} W)", short(version))
            }
            Some(LastRetrain::Kept { challenger_mae, champion_mae }) => {
                format!("kept the champion (challenger MAE {challenger_mae:.1} W vs {champion_mae:.1} W)")
            }
            Some(LastRetrain::Failed) => "failed (see above)".into(),
            None => self.due_text(),
        }
    }

    pub(super) fn due_text(&self) -> String {
        match (self.next_minutes, self.next_triplets) {
            (Some(m), Some(t)) => format!("at minute {m} or {t} triplets"),
            (Some(m), None) => format!("at minute {m}"),
            (None, Some(t)) => format!("at {t} triplets"),
            (None, None) => "none due".into(),
        }
    }
}

/// `gridcast retrain`'s config for the demo: one meter's history in the
/// ingest files and the predictor's triplets, the champion the predictor
/// serves, the winner published beside it.
fn retrain_config(
    lines_dir: &Path,
    sensor: &str,
    champion: &Path,
    holdout_minutes: u64,
) -> anyhow::Result<RetrainConfig> {
    let mut config = RetrainConfig::default();
    config.history.lines_dir = Some(lines_dir.to_path_buf());
    config.history.sensor = Some(sensor.to_string());
    config.champion.model = champion.display().to_string();
    config.holdout.days = holdout_minutes as f64 / 1440.0;
    config.train.threads = 1; // leave a core to ingest and predict
    config.publish.store = DATA_DIR.into();
    // Where the demo's predictor uploads (its default store and prefix).
    config.triplets.store = Some(gridcast_predictor::config::UploadConfig::default().url);
    config.validate().context("the demo's retrain settings")?;
    Ok(config)
}

/// The first 8 hex digits of a model version.
pub(super) fn short(version: &str) -> &str {
    &version[..version.len().min(8)]
}
