//! `gridcast agent --config agent.toml`: what to watch, how to run the
//! predictor, how to judge a new one. Loaded like the other services'
//! configs (defaults, the file, then `GRIDCAST_<SECTION>__<KEY>` variables);
//! `deploy/agent/agent.toml` is the commented example.

use std::path::PathBuf;

use gridcast_edge::config::{HttpConfig, ServiceConfig};
use gridcast_edge::sinks::SinkConfig;
use serde::{Deserialize, Serialize};

use crate::machine::Rules;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    pub agent: AgentSection,
    pub container: ContainerSection,
    pub soak: SoakSection,
    pub http: HttpConfig,
    /// Where deploy events go (InfluxDB, or line files): Grafana annotates
    /// switches and rollbacks from them. None: logged and counted only.
    pub events: Vec<SinkConfig>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            agent: AgentSection::default(),
            container: ContainerSection::default(),
            soak: SoakSection::default(),
            http: HttpConfig::on("127.0.0.1:9466"),
            events: vec![],
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AgentSection {
    /// The tag to follow, `REGISTRY/REPOSITORY:TAG`; the images it points to
    /// are run by digest, never by the tag.
    pub image: String,
    /// How often to ask the registry for the tag's digest (a HEAD request)
    /// and check the predictor.
    pub poll_secs: u64,
    /// The state file lives here.
    pub state_dir: PathBuf,
    /// Plain HTTP to a registry that is not on this machine.
    pub insecure: bool,
    /// The device's name in deploy events.
    pub device: String,
    /// The Docker engine: `unix:///path/docker.sock`; empty for DOCKER_HOST
    /// or the local default socket.
    pub docker_host: String,
    /// Public keys (64 hex digits, `gridcast model keygen`'s signing.pub):
    /// with any here or in `trusted_keys_file`, a new image is run only if
    /// the model in its top layer is signed by one of them (or is the
    /// shipped default); otherwise it is refused before anything stops.
    /// None: images' models are not checked.
    pub trusted_keys: Vec<gridcast_core::model::signature::PublicKey>,
    /// A file of such keys, one a line (`#` comments), read at start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trusted_keys_file: Option<PathBuf>,
}

impl AgentSection {
    /// `trusted_keys` and the keys in `trusted_keys_file`.
    pub fn all_trusted_keys(&self) -> anyhow::Result<Vec<gridcast_core::model::signature::PublicKey>> {
        let mut keys = self.trusted_keys.clone();
        if let Some(file) = &self.trusted_keys_file {
            let text = std::fs::read_to_string(file)
                .map_err(|e| anyhow::anyhow!("reading [agent] trusted_keys_file {}: {e}", file.display()))?;
            let more = gridcast_core::model::signature::parse_public_keys(&text)
                .map_err(|e| anyhow::anyhow!("[agent] trusted_keys_file {}: {e}", file.display()))?;
            anyhow::ensure!(!more.is_empty(), "[agent] trusted_keys_file {} holds no key", file.display());
            keys.extend(more);
        }
        Ok(keys)
    }
}

impl Default for AgentSection {
    fn default() -> Self {
        AgentSection {
            image: String::new(),
            poll_secs: 30,
            state_dir: PathBuf::from("/var/lib/gridcast/agent"),
            insecure: false,
            device: "pi-1".into(),
            docker_host: String::new(),
            trusted_keys: Vec::new(),
            trusted_keys_file: None,
        }
    }
}

/// How the predictor container runs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ContainerSection {
    /// The container's name (one predictor per device).
    pub name: String,
    /// `host` (these devices have no bridge), or a network the engine knows.
    pub network: String,
    /// Volumes, `HOST:CONTAINER[:ro]`: the spool must outlive the container
    /// so the next image resumes it.
    pub binds: Vec<String>,
    /// `KEY=VALUE` for the predictor (e.g. `GRIDCAST_UPLOAD__DEVICE=pi-17`).
    pub env: gridcast_edge::secret::EnvList,
    /// Arguments after the image's entrypoint; empty keeps the image's Cmd.
    pub command: Vec<String>,
    /// The predictor's `/health` and `/metrics`, as the agent reaches them.
    pub health_url: String,
    pub metrics_url: String,
    /// How long the predictor gets to commit its spool after SIGTERM.
    pub stop_timeout_secs: u64,
}

impl Default for ContainerSection {
    fn default() -> Self {
        ContainerSection {
            name: "gridcast-predict".into(),
            network: "host".into(),
            binds: vec!["/var/lib/gridcast:/var/lib/gridcast".into()],
            env: gridcast_edge::secret::EnvList::default(),
            command: vec![],
            health_url: "http://127.0.0.1:9464/health".into(),
            metrics_url: "http://127.0.0.1:9464/metrics".into(),
            stop_timeout_secs: 30,
        }
    }
}

/// When a new predictor counts as good.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SoakSection {
    /// Time for a new predictor to answer `/health` with its image's model.
    pub health_timeout_secs: u64,
    /// Then it must keep predicting this long (e.g. 10 intervals).
    pub soak_secs: u64,
    /// Judged predictions needed in the window to compare errors.
    pub min_judged: u64,
    /// Rolled back when its error over the soak window, relative to the
    /// persistence forecast's over the same intervals, exceeds the previous
    /// model's (likewise, over the window before the switch) times this.
    pub max_error_ratio: f64,
}

impl Default for SoakSection {
    fn default() -> Self {
        SoakSection { health_timeout_secs: 120, soak_secs: 600, min_judged: 10, max_error_ratio: 1.5 }
    }
}

impl SoakSection {
    pub fn rules(&self) -> Rules {
        Rules {
            health_timeout_ms: self.health_timeout_secs as i64 * 1000,
            soak_ms: self.soak_secs as i64 * 1000,
            min_judged: self.min_judged,
            max_error_ratio: self.max_error_ratio,
        }
    }
}

impl ServiceConfig for AgentConfig {
    fn validate(&self) -> anyhow::Result<()> {
        if self.agent.image.is_empty() {
            anyhow::bail!(
                "[agent] image is required: the tag to follow, e.g. registry.local:5000/gridcast/predictor:stable"
            );
        }
        if self.agent.poll_secs == 0 {
            anyhow::bail!("[agent] poll_secs must be at least 1");
        }
        if self.container.name.is_empty() {
            anyhow::bail!("[container] name is required");
        }
        if !(self.soak.max_error_ratio.is_finite() && self.soak.max_error_ratio >= 1.0) {
            anyhow::bail!("[soak] max_error_ratio must be a number >= 1 (1.5: up to 50% worse is accepted)");
        }
        for env in self.container.env.iter() {
            if !env.contains('=') {
                anyhow::bail!("[container] env entry {env:?} is not KEY=VALUE");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_loads_and_an_empty_one_names_the_missing_image() {
        let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/agent/agent.toml");
        let config: AgentConfig = gridcast_edge::config::load(Some(std::path::Path::new(example))).unwrap();
        assert!(config.agent.image.ends_with(":stable"), "{}", config.agent.image);
        assert_eq!(config.container.network, "host");
        let e = AgentConfig::default().validate().unwrap_err().to_string();
        assert!(e.contains("[agent] image is required"), "{e}");
    }
}
