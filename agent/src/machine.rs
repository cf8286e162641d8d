//! The agent's decisions, without I/O: given what the driver observed (the
//! tag's digest in the registry, the predictor container, its `/health` and
//! `/metrics`), what to run next and what to record.
//!
//! Like rumqtt's state machine, this is driven from outside: `run.rs` polls
//! the registry, the engine and the predictor once per tick, hands the
//! [`Observation`] to [`Machine::decide`], carries out the [`Action`]s, and
//! saves the [`AgentState`] whenever it changed. Nothing here sleeps, reads
//! a clock or touches a socket, so every path (switch, commit, each kind of
//! rollback, a restart mid-switch) is tested below in microseconds.
//!
//! The rules:
//! - a digest the tag points to that is neither the known-good one nor
//!   refused starts a **trial**: the previous model's error over the last
//!   soak window is kept as the baseline, and the new digest is run;
//! - the trial must be healthy (`/health` 200 and serving the model version
//!   its image is labelled with) within `health_timeout`, then keep
//!   predicting for `soak` and not be worse than the baseline by more than
//!   `max_error_ratio`. Errors are compared relative to the persistence
//!   forecast ("as the last interval") over the same intervals: a window
//!   with more load swings is harder for every model, and this ratio
//!   cancels that out, where raw errors of two different windows would not;
//! - passing commits it as known good; failing refuses it (never tried again)
//!   and runs the known-good digest again;
//! - with no trial, the known-good digest is kept running (restarted if it
//!   exited or vanished).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// How many refused digests are remembered (oldest forgotten first).
pub const MAX_REFUSED: usize = 64;

/// The soak and health rules, from `[soak]` in the agent config.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// How long a new predictor may take to answer `/health` with its model.
    pub health_timeout_ms: i64,
    /// How long it must then keep predicting before it is committed.
    pub soak_ms: i64,
    /// Predictions it must judge within the soak window for an error verdict;
    /// fewer (a quiet meter) commits on health and predictions alone.
    pub min_judged: u64,
    /// Rolled back when its relative error exceeds the baseline's times this.
    pub max_error_ratio: f64,
}

/// The predictor's counters at one moment (from its `/metrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub predictions: u64,
    pub judged: u64,
    pub absolute_error_w: f64,
    /// The persistence forecasts' absolute error over the same predictions.
    pub persistence_error_w: f64,
}

impl Sample {
    /// What happened between `earlier` and `self`; `None` if a counter went
    /// backwards (the predictor restarted in between).
    pub fn since(&self, earlier: &Sample) -> Option<Sample> {
        if self.predictions < earlier.predictions || self.judged < earlier.judged {
            return None;
        }
        Some(Sample {
            predictions: self.predictions - earlier.predictions,
            judged: self.judged - earlier.judged,
            absolute_error_w: self.absolute_error_w - earlier.absolute_error_w,
            persistence_error_w: self.persistence_error_w - earlier.persistence_error_w,
        })
    }

    /// The model's error relative to persistence's over the predictions
    /// judged in this span (a delta): below 1 it beats persistence. `None`
    /// when there is nothing to divide by.
    pub fn relative_error(&self) -> Option<f64> {
        (self.judged > 0 && self.persistence_error_w > 0.0).then(|| self.absolute_error_w / self.persistence_error_w)
    }
}

/// A baseline: the known-good model's error over a window before a switch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    pub relative_error: f64,
    pub judged: u64,
    pub span_ms: i64,
}

/// A digest on trial: switched to, not yet committed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    pub digest: String,
    /// The known-good digest it replaces (what a rollback runs).
    pub previous: Option<String>,
    pub baseline: Option<Baseline>,
    /// When the trial (re)started: the health timeout runs from here.
    pub started_ms: i64,
    /// First healthy probe serving the image's model: the soak runs from here.
    pub healthy_since_ms: Option<i64>,
    pub soak_start: Option<Sample>,
}

/// Why a digest will not be run again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refusal {
    pub reason: String,
    pub at_ms: i64,
}

/// What the agent keeps on disk (see `state.rs`): enough to reconcile after
/// being killed at any step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentState {
    /// The last digest that passed its soak (or was adopted at first start).
    pub known_good: Option<String>,
    /// The known-good digest before that.
    pub previous: Option<String>,
    pub trial: Option<Trial>,
    /// Refused digests, oldest first.
    pub refused: Vec<(String, Refusal)>,
}

impl AgentState {
    pub fn is_refused(&self, digest: &str) -> bool {
        self.refused.iter().any(|(d, _)| d == digest)
    }

    /// The digest that should be running now.
    pub fn desired(&self) -> Option<&str> {
        self.trial.as_ref().map(|t| t.digest.as_str()).or(self.known_good.as_deref())
    }
}

/// The predictor container as the engine reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum Container {
    /// No container of ours.
    Absent,
    Running {
        digest: String,
        /// The image's `io.gridcast.model.version` label.
        model_version: Option<String>,
    },
    /// Created but never started: the agent stopped between creating and
    /// starting it. Not a crash (the engine reports exit code 0 for it).
    Created { digest: String },
    /// Exited (crashed, or stopped by someone else).
    Exited { digest: String, exit_code: i64 },
}

/// What `/health` and `/metrics` said.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    /// `/health` 200, serving this model version; the counters.
    Healthy { model_version: String, sample: Sample },
    /// No answer, or not 200: why.
    Unhealthy(String),
}

/// One tick's view of the world.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub now_ms: i64,
    /// The digest the watched tag points to; `None` when it could not be
    /// read (the registry is down, the tag vanished): keep what runs.
    pub tag_digest: Option<String>,
    pub container: Container,
    pub probe: Probe,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Replace whatever runs by this digest: pull it if missing, stop the
    /// running predictor gracefully, start this one.
    Run { digest: String },
    /// Stop the predictor and run nothing (a first image failed and there is
    /// no known-good one to go back to).
    StopAll,
    /// Log it, count it, and send it as a deploy event.
    Record(Event),
}

/// A deploy event (logged, counted on `/metrics`, written to InfluxDB).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub kind: EventKind,
    pub digest: String,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    /// A new digest is being switched to.
    Switch,
    /// It passed its soak: now known good.
    Commit,
    /// It failed: refused, and the known-good digest runs again.
    Rollback,
    /// The known-good predictor was not running and was started again.
    Restart,
    /// Could not pull or start a digest (not refused: tried again later).
    Failed,
}

impl EventKind {
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Switch => "switch",
            EventKind::Commit => "commit",
            EventKind::Rollback => "rollback",
            EventKind::Restart => "restart",
            EventKind::Failed => "failed",
        }
    }
}

/// The decisions, with the state they change and the known-good predictor's
/// recent samples (for the baseline; in memory only).
pub struct Machine {
    pub state: AgentState,
    rules: Rules,
    /// (time, counters) of the known-good predictor, oldest first.
    history: VecDeque<(i64, Sample)>,
}

impl Machine {
    /// From the state on disk. A trial in progress when the agent stopped
    /// starts over (health timeout and soak from `now_ms`): the container
    /// may have been replaced while the agent was away.
    pub fn resume(mut state: AgentState, rules: Rules, now_ms: i64) -> Machine {
        if let Some(trial) = &mut state.trial {
            trial.started_ms = now_ms;
            trial.healthy_since_ms = None;
            trial.soak_start = None;
        }
        Machine { state, rules, history: VecDeque::new() }
    }

    /// One tick: what to do given `obs`. The state may change; the caller
    /// saves it (before carrying out the actions, so a kill in between
    /// replays them on restart).
    pub fn decide(&mut self, obs: &Observation) -> Vec<Action> {
        if self.state.trial.is_some() {
            return self.judge_trial(obs);
        }
        if let Some(new) = obs.tag_digest.as_deref()
            && Some(new) != self.state.known_good.as_deref()
            && !self.state.is_refused(new)
        {
            return self.start_trial(new, obs);
        }
        self.keep_known_good(obs)
    }

    /// The driver could not pull or start `digest`. A trial is abandoned
    /// without refusing the digest (the registry may be down: tried again
    /// at a later poll); the known-good digest runs again.
    pub fn run_failed(&mut self, digest: &str, error: &str) -> Vec<Action> {
        let mut actions =
            vec![Action::Record(Event { kind: EventKind::Failed, digest: digest.into(), reason: error.into() })];
        if self.state.trial.as_ref().is_some_and(|t| t.digest == digest) {
            self.state.trial = None;
            actions.push(self.back_to_known_good());
        }
        actions
    }

    /// `digest` cannot run here at all (e.g. an image for another platform):
    /// a trial of it is rolled back and the digest refused.
    pub fn refuse_trial(&mut self, digest: &str, reason: String) -> Vec<Action> {
        if self.state.trial.as_ref().is_some_and(|t| t.digest == digest) {
            return self.roll_back(reason);
        }
        vec![]
    }

    fn start_trial(&mut self, digest: &str, obs: &Observation) -> Vec<Action> {
        let baseline = self.baseline();
        let previous = self.state.known_good.clone();
        self.state.trial = Some(Trial {
            digest: digest.into(),
            previous: previous.clone(),
            baseline,
            started_ms: obs.now_ms,
            healthy_since_ms: None,
            soak_start: None,
        });
        self.history.clear();
        let reason = match (&previous, baseline) {
            (Some(p), Some(b)) => {
                format!(
                    "replacing {p} (baseline: error {:.3} of persistence's over {} judged predictions)",
                    b.relative_error, b.judged
                )
            }
            (Some(p), None) => format!("replacing {p} (no baseline: it judged no predictions yet)"),
            (None, _) => "first image on this device".into(),
        };
        vec![
            Action::Record(Event { kind: EventKind::Switch, digest: digest.into(), reason }),
            Action::Run { digest: digest.into() },
        ]
    }

    fn judge_trial(&mut self, obs: &Observation) -> Vec<Action> {
        let rules = self.rules.clone();
        let trial = self.state.trial.as_mut().expect("a trial");
        let digest = trial.digest.clone();
        let since_start = obs.now_ms - trial.started_ms;
        let expected_version = match &obs.container {
            Container::Running { digest: running, model_version } if *running == digest => model_version.clone(),
            Container::Exited { digest: exited, exit_code } if *exited == digest => {
                return self.roll_back(format!("the predictor exited with code {exit_code}"));
            }
            // Not (yet) running: the switch was interrupted (agent killed
            // between stopping the old and starting the new, or between
            // creating the new and starting it). Do it again.
            _ => return vec![Action::Run { digest }],
        };
        let (served, sample) = match &obs.probe {
            Probe::Healthy { model_version, sample } => (model_version.clone(), *sample),
            Probe::Unhealthy(why) => {
                if trial.healthy_since_ms.is_some() || since_start > rules.health_timeout_ms {
                    return self.roll_back(format!("unhealthy: {why}"));
                }
                return vec![];
            }
        };
        // The label holds the short version (12 hex), /health the whole sha256.
        if let Some(expected) = &expected_version
            && !served.starts_with(expected.as_str())
        {
            if since_start > rules.health_timeout_ms {
                return self.roll_back(format!("serves model {served}, not its image's {expected}"));
            }
            return vec![];
        }
        let (Some(healthy_since), Some(soak_start)) = (trial.healthy_since_ms, trial.soak_start) else {
            trial.healthy_since_ms = Some(obs.now_ms);
            trial.soak_start = Some(sample);
            return vec![];
        };
        if obs.now_ms - healthy_since < rules.soak_ms {
            return vec![];
        }
        let Some(soaked) = sample.since(&soak_start) else {
            return self.roll_back("the predictor restarted during its soak (counters went back)".into());
        };
        if soaked.predictions == 0 {
            return self
                .roll_back(format!("made no prediction in its {} s soak window", (obs.now_ms - healthy_since) / 1000));
        }
        let verdict = match (trial.baseline, soaked.relative_error()) {
            (Some(baseline), Some(error)) if soaked.judged >= rules.min_judged => {
                if error > baseline.relative_error * rules.max_error_ratio {
                    return self.roll_back(format!(
                        "predicts worse: error {error:.3} of persistence's over {} judged predictions, against {:.3} before the switch (limit {:.2}x)",
                        soaked.judged, baseline.relative_error, rules.max_error_ratio
                    ));
                }
                format!(
                    "error {error:.3} of persistence's over {} judged predictions, {:.3} before the switch",
                    soaked.judged, baseline.relative_error
                )
            }
            _ => format!(
                "{} predictions, {} judged: too few to compare errors (no baseline or under {}); committed on health",
                soaked.predictions, soaked.judged, rules.min_judged
            ),
        };
        self.commit(verdict)
    }

    fn commit(&mut self, reason: String) -> Vec<Action> {
        let trial = self.state.trial.take().expect("a trial");
        self.state.previous = self.state.known_good.replace(trial.digest.clone());
        self.history.clear();
        vec![Action::Record(Event { kind: EventKind::Commit, digest: trial.digest, reason })]
    }

    fn roll_back(&mut self, reason: String) -> Vec<Action> {
        let trial = self.state.trial.take().expect("a trial");
        self.refuse(&trial.digest, &reason, trial.started_ms);
        self.history.clear();
        let reason = match &self.state.known_good {
            Some(good) => format!("{reason}; back to {good}"),
            None => format!("{reason}; no known-good image to go back to"),
        };
        vec![
            Action::Record(Event { kind: EventKind::Rollback, digest: trial.digest, reason }),
            self.back_to_known_good(),
        ]
    }

    fn refuse(&mut self, digest: &str, reason: &str, at_ms: i64) {
        self.state.refused.retain(|(d, _)| d != digest);
        self.state.refused.push((digest.into(), Refusal { reason: reason.into(), at_ms }));
        let excess = self.state.refused.len().saturating_sub(MAX_REFUSED);
        self.state.refused.drain(..excess);
    }

    fn back_to_known_good(&self) -> Action {
        match &self.state.known_good {
            Some(good) => Action::Run { digest: good.clone() },
            None => Action::StopAll,
        }
    }

    fn keep_known_good(&mut self, obs: &Observation) -> Vec<Action> {
        let Some(good) = self.state.known_good.clone() else {
            // No state (a first start, or the state file was lost) but a
            // predictor of ours runs and is healthy: adopt it rather than
            // stopping a working device.
            if let (Container::Running { digest, .. }, Probe::Healthy { .. }) = (&obs.container, &obs.probe) {
                self.state.known_good = Some(digest.clone());
                let reason = "adopted the predictor running at start-up".to_string();
                return vec![Action::Record(Event { kind: EventKind::Commit, digest: digest.clone(), reason })];
            }
            return vec![];
        };
        match &obs.container {
            Container::Running { digest, .. } if *digest == good => {
                if let Probe::Healthy { sample, .. } = &obs.probe {
                    self.remember(obs.now_ms, *sample);
                }
                vec![]
            }
            other => {
                self.history.clear();
                let reason = match other {
                    Container::Absent => "no predictor container".to_string(),
                    Container::Exited { exit_code, .. } => format!("the predictor exited with code {exit_code}"),
                    Container::Created { .. } => "the predictor was created but never started".to_string(),
                    Container::Running { digest, .. } => format!("{digest} was running instead"),
                };
                vec![
                    Action::Record(Event { kind: EventKind::Restart, digest: good.clone(), reason }),
                    Action::Run { digest: good },
                ]
            }
        }
    }

    /// Keeps the known-good predictor's samples of the last soak window (and
    /// one before it, the window's start).
    fn remember(&mut self, now_ms: i64, sample: Sample) {
        if self.history.back().is_some_and(|(_, last)| sample.since(last).is_none()) {
            self.history.clear(); // it restarted: its counters began again
        }
        self.history.push_back((now_ms, sample));
        while self.history.len() > 2 && self.history[1].0 <= now_ms - self.rules.soak_ms {
            self.history.pop_front();
        }
    }

    /// The known-good model's error over (up to) the last soak window.
    fn baseline(&self) -> Option<Baseline> {
        let (first_ms, first) = self.history.front()?;
        let (last_ms, last) = self.history.back()?;
        let span = last.since(first)?;
        span.relative_error().map(|relative_error| Baseline {
            relative_error,
            judged: span.judged,
            span_ms: last_ms - first_ms,
        })
    }
}

#[cfg(test)]
mod tests;
