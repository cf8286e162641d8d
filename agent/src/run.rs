//! The agent's loop: every `CHECK` interval it observes the engine and the
//! predictor (and, every `poll_secs`, the registry tag), lets the machine
//! decide, saves the state, then acts. Saving before acting is what makes a
//! kill at any point safe: on restart the machine finds its trial (or its
//! known-good digest) and the same decisions are made again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gridcast_core::model::signature::{self, PublicKey};
use gridcast_edge::http::{self, Exposition};
use gridcast_ship::credentials;
use gridcast_ship::registry::Registry;
use oci_client::Reference;
use oci_client::secrets::RegistryAuth;
use tokio_util::sync::CancellationToken;

use crate::config::AgentConfig;
use crate::engine::Engine;
use crate::events::{self, EventLog};
use crate::machine::{Action, AgentState, Container, Event, EventKind, Machine, Observation};
use crate::probe::Prober;
use crate::state::StateFile;

/// How often the container and the predictor are checked: a trial's health
/// and soak are timed at this resolution.
const CHECK: Duration = Duration::from_secs(1);

/// Runs until `shutdown`. Leaves the predictor running when it stops: the
/// device keeps predicting without its agent.
pub async fn run(config: AgentConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let agent = Agent::start(&config).await?;
    let metrics = agent.metrics.clone();
    let server = if config.http.listen.is_empty() {
        None
    } else {
        Some(http::serve(&config.http.listen, metrics, shutdown.clone()).await?.0)
    };
    agent.run(&config, shutdown).await;
    if let Some(server) = server {
        let _ = server.await;
    }
    Ok(())
}

struct Agent {
    target: Reference,
    /// `REGISTRY/REPOSITORY`, to which `@digest` is appended.
    repository: String,
    auth: RegistryAuth,
    registry: Registry,
    engine: Engine,
    prober: Prober,
    state_file: StateFile,
    machine: Machine,
    events: EventLog,
    device: String,
    metrics: Arc<AgentMetrics>,
    /// Who must have signed a new image's model (empty: not checked).
    trusted_keys: Vec<PublicKey>,
}

/// What [`Agent::model_trust`] found.
enum ModelTrust {
    Trusted,
    Refused(String),
    Unreadable(String),
}

/// The largest model read from an image's layer, as the predictor's limit.
const MAX_MODEL_BYTES: u64 = 64 << 20;

impl Agent {
    async fn start(config: &AgentConfig) -> anyhow::Result<Agent> {
        let target: Reference = config.agent.image.parse().map_err(|e| {
            anyhow::anyhow!("[agent] image {:?} is not REGISTRY/REPOSITORY:TAG: {e}", config.agent.image)
        })?;
        let repository = format!("{}/{}", target.registry(), target.repository());
        let registry = Registry::connect(&[&target], config.agent.insecure).await?;
        let auth = credentials::resolve(target.registry(), |k| std::env::var(k).ok())?.auth;
        let engine = Engine::connect(&config.agent.docker_host, config.container.clone()).await?;
        let state_file = StateFile::in_dir(&config.agent.state_dir);
        let state = state_file.load()?;
        log_resumed(&state);
        let machine = Machine::resume(state, config.soak.rules(), now_ms());
        let events = EventLog::new(&config.agent.state_dir, &config.events)?;
        let metrics = Arc::new(AgentMetrics::default());
        metrics.refused.store(machine.state.refused.len() as u64, Ordering::Relaxed);
        let trusted_keys = config.agent.all_trusted_keys()?;
        if trusted_keys.is_empty() {
            tracing::warn!(
                "images' models are not verified: no [agent] trusted_keys, so any image the tag points to is run"
            );
        } else {
            let ids: Vec<String> = trusted_keys.iter().map(PublicKey::id).collect();
            tracing::info!(keys = %ids.join(","), "a new image runs only if its model is signed by a trusted key");
        }
        Ok(Agent {
            target,
            repository,
            auth,
            registry,
            engine,
            prober: Prober::new(&config.container.health_url, &config.container.metrics_url),
            state_file,
            machine,
            events,
            device: config.agent.device.clone(),
            metrics,
            trusted_keys,
        })
    }

    async fn run(mut self, config: &AgentConfig, shutdown: CancellationToken) {
        let poll_every = Duration::from_secs(config.agent.poll_secs);
        let mut last_poll: Option<Instant> = None;
        let mut tag_digest: Option<String> = None;
        tracing::info!(image = %self.target, poll_secs = config.agent.poll_secs, "agent started");
        loop {
            if last_poll.is_none_or(|t| t.elapsed() >= poll_every) {
                last_poll = Some(Instant::now());
                tag_digest = self.poll_tag().await;
            }
            self.tick(tag_digest.clone()).await;
            match self.events.flush().await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(events = n, "deploy events written"),
                Err(e) => {
                    AgentMetrics::inc(&self.metrics.event_write_failures);
                    tracing::warn!(error = %e, "deploy events not written yet (kept, retried)");
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(CHECK) => {}
            }
        }
        tracing::info!("agent stopped; the predictor keeps running");
    }

    /// The tag's digest, or `None` (logged, counted) when the registry cannot
    /// tell: the running predictor is left alone.
    async fn poll_tag(&self) -> Option<String> {
        AgentMetrics::inc(&self.metrics.polls);
        match self.registry.manifest_digest(&self.target).await {
            Ok(digest) => Some(digest),
            Err(e) => {
                AgentMetrics::inc(&self.metrics.poll_failures);
                tracing::warn!(error = %e, "cannot read the tag's digest; the running predictor is left alone");
                None
            }
        }
    }

    async fn tick(&mut self, tag_digest: Option<String>) {
        let container = match self.engine.container().await {
            Ok(container) => container,
            Err(e) => {
                AgentMetrics::inc(&self.metrics.engine_failures);
                tracing::warn!(error = %e, "cannot see the predictor container; trying again");
                return;
            }
        };
        let probe = self.prober.probe().await;
        let observation = Observation { now_ms: now_ms(), tag_digest, container, probe };
        let actions = self.machine.decide(&observation);
        self.act(actions, &observation.container).await;
    }

    /// Saves the state, then carries out `actions` (and what their failures
    /// lead to).
    async fn act(&mut self, mut actions: Vec<Action>, container: &Container) {
        while !actions.is_empty() {
            self.save();
            let mut follow_up = Vec::new();
            for action in actions {
                match action {
                    Action::Run { digest } => follow_up.extend(self.run_digest(&digest).await),
                    Action::StopAll => {
                        if let Err(e) = self.engine.remove().await {
                            tracing::error!(error = %e, "cannot stop the failed predictor");
                        }
                    }
                    Action::Record(event) => self.record(&event, container).await,
                }
            }
            actions = follow_up;
        }
    }

    /// Checks, pulls and starts `digest`; what the machine says to a failure.
    async fn run_digest(&mut self, digest: &str) -> Vec<Action> {
        let image = format!("{}@{digest}", self.repository);
        if let Ok(Container::Running { digest: running, .. }) = self.engine.container().await
            && running == digest
        {
            return vec![]; // already running (a trial refused before it started)
        }
        // A new digest's platform is checked before anything stops; a known-good
        // one ran here already.
        let on_trial = self.machine.state.trial.as_ref().is_some_and(|t| t.digest == digest);
        if on_trial && let Ok(reference) = image.parse::<Reference>() {
            match self.registry.platform(&reference).await {
                Ok(platform) if platform != this_platform() => {
                    return self
                        .machine
                        .refuse_trial(digest, format!("an image for {platform}, not {}", this_platform()));
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot read the image's platform; pulling it anyway"),
            }
            match self.model_trust(&reference).await {
                ModelTrust::Trusted => {}
                ModelTrust::Refused(reason) => return self.machine.refuse_trial(digest, reason),
                // Not evidence against the image: tried again at the next poll.
                ModelTrust::Unreadable(error) => return self.machine.run_failed(digest, &error),
            }
        }
        tracing::info!(%image, "pulling and starting");
        let started = match self.engine.pull(&self.repository, digest, &self.auth).await {
            Ok(()) => self.engine.replace(&self.repository, digest).await,
            Err(e) => Err(e),
        };
        match started {
            Ok(()) => {
                AgentMetrics::inc(&self.metrics.starts);
                vec![]
            }
            Err(e) => {
                tracing::error!(%image, error = %e, "cannot run the image");
                self.machine.run_failed(digest, &e.to_string())
            }
        }
    }

    /// With trusted keys, whether the model in `reference`'s top layer may
    /// run here: refused if unsigned, signed by another key, changed after
    /// signing, or missing (what cannot be checked does not run); not
    /// readable (the registry failed us) is neither, and is tried again.
    async fn model_trust(&self, reference: &Reference) -> ModelTrust {
        if self.trusted_keys.is_empty() {
            return ModelTrust::Trusted;
        }
        match self.registry.model_file(reference, MAX_MODEL_BYTES).await {
            Ok(Some(bytes)) => match signature::accept(&bytes, &self.trusted_keys) {
                Ok(accepted) => {
                    tracing::info!(image = %reference, model = ?accepted, "the image's model is trusted");
                    ModelTrust::Trusted
                }
                Err(e) => ModelTrust::Refused(format!("its model is refused: {e}")),
            },
            Ok(None) => ModelTrust::Refused(format!(
                "its top layer holds no model at {} whose signature could be checked",
                gridcast_ship::image::MODEL_PATH
            )),
            Err(e) => ModelTrust::Unreadable(format!("its model could not be read to check its signature: {e}")),
        }
    }

    async fn record(&mut self, event: &Event, container: &Container) {
        let counter = match event.kind {
            EventKind::Switch => &self.metrics.switches,
            EventKind::Commit => &self.metrics.commits,
            EventKind::Rollback => &self.metrics.rollbacks,
            EventKind::Restart => &self.metrics.restarts,
            EventKind::Failed => &self.metrics.failures,
        };
        AgentMetrics::inc(counter);
        self.metrics.refused.store(self.machine.state.refused.len() as u64, Ordering::Relaxed);
        let model_version = match container {
            Container::Running { digest, model_version: Some(v) } if *digest == event.digest => v.clone(),
            _ => String::new(),
        };
        let (kind, digest, reason) = (event.kind.name(), &event.digest, &event.reason);
        match event.kind {
            EventKind::Rollback | EventKind::Failed => tracing::error!(event = kind, %digest, %reason, "deploy"),
            EventKind::Restart => tracing::warn!(event = kind, %digest, %reason, "deploy"),
            _ => tracing::info!(event = kind, %digest, %reason, "deploy"),
        }
        if let Err(e) = self.events.push(&events::line(&self.device, event, &model_version, now_ms())) {
            tracing::error!(error = %e, "cannot queue the deploy event (it is in the log above)");
        }
    }

    fn save(&self) {
        if let Err(e) = self.state_file.save(&self.machine.state) {
            // Acting anyway keeps the device running; the next tick retries.
            tracing::error!(error = %e, "cannot save the agent state");
        }
    }
}

fn log_resumed(state: &AgentState) {
    tracing::info!(
        known_good = state.known_good.as_deref().unwrap_or("none"),
        trial = state.trial.as_ref().map_or("none", |t| t.digest.as_str()),
        refused = state.refused.len(),
        "agent state loaded"
    );
}

/// This machine's platform as image configs name it.
fn this_platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        other => other,
    };
    format!("{}/{arch}", std::env::consts::OS)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// The agent's own counters, on `/metrics`.
#[derive(Debug, Default)]
pub struct AgentMetrics {
    pub polls: AtomicU64,
    pub poll_failures: AtomicU64,
    pub engine_failures: AtomicU64,
    pub starts: AtomicU64,
    pub switches: AtomicU64,
    pub commits: AtomicU64,
    pub rollbacks: AtomicU64,
    pub restarts: AtomicU64,
    pub failures: AtomicU64,
    pub refused: AtomicU64,
    pub event_write_failures: AtomicU64,
}

impl AgentMetrics {
    fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

impl Exposition for AgentMetrics {
    fn render(&self) -> String {
        let mut s = String::new();
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let rows: [(&str, &str, &str, &AtomicU64); 11] = [
            ("agent_polls_total", "Registry polls (HEAD of the tag's manifest).", "counter", &self.polls),
            ("agent_poll_failures_total", "Registry polls that failed.", "counter", &self.poll_failures),
            ("agent_engine_failures_total", "Checks the engine did not answer.", "counter", &self.engine_failures),
            ("agent_starts_total", "Predictor containers started.", "counter", &self.starts),
            ("agent_switches_total", "Switches to a new digest.", "counter", &self.switches),
            ("agent_commits_total", "Digests committed as known good.", "counter", &self.commits),
            ("agent_rollbacks_total", "Digests rolled back and refused.", "counter", &self.rollbacks),
            ("agent_restarts_total", "Known-good predictor restarted.", "counter", &self.restarts),
            ("agent_failures_total", "Pulls or starts that failed.", "counter", &self.failures),
            ("agent_refused_digests", "Digests refused (never run again).", "gauge", &self.refused),
            ("agent_event_write_failures_total", "Deploy event writes retried.", "counter", &self.event_write_failures),
        ];
        for (name, help, kind, counter) in rows {
            http::metric(&mut s, name, help, kind, get(counter));
        }
        s
    }

    fn health(&self) -> (bool, serde_json::Value) {
        (true, serde_json::json!({ "status": "ok" }))
    }
}
