//! The Docker engine, through bollard: the only module of the agent that
//! talks to it. It reports the predictor container as the machine sees it
//! ([`Container`]) and replaces it by another digest.
//!
//! Every container the agent starts carries the label
//! `io.gridcast.agent.digest` (the digest it was started from), and is
//! created from `REPOSITORY@DIGEST`, never from a tag.

use std::collections::HashMap;

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, ContainerStateStatusEnum, HostConfig, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use gridcast_ship::engine::{EngineHost, docker_credentials, pull_image};
use gridcast_ship::image::LABEL_MODEL_VERSION;
use oci_client::Reference;
use oci_client::secrets::RegistryAuth;

use crate::config::ContainerSection;
use crate::machine::Container;

/// The label holding the digest a container was started from.
pub const LABEL_DIGEST: &str = "io.gridcast.agent.digest";

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Connect(#[from] gridcast_ship::ShipError),
    #[error("pulling {image}: {cause}")]
    Pull { image: String, cause: String },
    #[error("{what} container {name}: {cause}")]
    Container { what: &'static str, name: String, cause: String },
}

pub struct Engine {
    docker: Docker,
    spec: ContainerSection,
}

impl Engine {
    /// Connects to `host` (`unix:///path`, or empty for DOCKER_HOST or the
    /// local socket), as `gridcast ship --engine` does: on a negotiated API
    /// version (bollard 0.21 speaks 1.53, Debian's engine 1.41).
    pub async fn connect(host: &str, spec: ContainerSection) -> Result<Engine, EngineError> {
        let host = if host.is_empty() {
            EngineHost::resolve(None, |k| std::env::var(k).ok())
        } else {
            EngineHost { url: host.to_owned(), origin: "from [agent] docker_host" }
        };
        let docker = gridcast_ship::engine::connect(&host).await?;
        Ok(Engine { docker, spec })
    }

    /// The predictor container, as the machine sees it.
    pub async fn container(&self) -> Result<Container, EngineError> {
        let inspected = match self.docker.inspect_container(&self.spec.name, None).await {
            Ok(inspected) => inspected,
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {
                return Ok(Container::Absent);
            }
            Err(e) => return Err(self.container_error("inspecting", e)),
        };
        let labels = inspected.config.and_then(|c| c.labels).unwrap_or_default();
        let Some(digest) = labels.get(LABEL_DIGEST).cloned() else {
            // Someone else's container under our name: treat it as ours to
            // replace (it is not an image the agent chose).
            return Ok(Container::Exited { digest: String::new(), exit_code: 0 });
        };
        let state = inspected.state.unwrap_or_default();
        if state.running == Some(true) {
            Ok(Container::Running { digest, model_version: labels.get(LABEL_MODEL_VERSION).cloned() })
        } else if state.status == Some(ContainerStateStatusEnum::CREATED) {
            // Its exit code reads 0 though it never ran: not a crash.
            Ok(Container::Created { digest })
        } else {
            Ok(Container::Exited { digest, exit_code: state.exit_code.unwrap_or(-1) })
        }
    }

    /// Pulls `repository@digest` unless the engine has it.
    pub async fn pull(&self, repository: &str, digest: &str, auth: &RegistryAuth) -> Result<(), EngineError> {
        let image = format!("{repository}@{digest}");
        if self.docker.inspect_image(&image).await.is_ok() {
            return Ok(());
        }
        let reference: Reference =
            image.parse().map_err(|e| EngineError::Pull { image: image.clone(), cause: format!("{e}") })?;
        let credentials = docker_credentials(reference.registry(), auth.clone());
        if let Err(failed) = pull_image(&self.docker, &reference, credentials).await {
            return Err(EngineError::Pull { image, cause: failed.to_string() });
        }
        self.docker
            .inspect_image(&image)
            .await
            .map(|_| ())
            .map_err(|e| EngineError::Pull { image, cause: format!("the pull ended but the image is not there: {e}") })
    }

    /// Stops the running predictor gracefully (SIGTERM, then
    /// `stop_timeout_secs` to commit its spool) and removes it; then creates
    /// and starts `repository@digest` under the same name, volumes and env.
    pub async fn replace(&self, repository: &str, digest: &str) -> Result<(), EngineError> {
        self.remove().await?;
        let name = &self.spec.name;
        let host_config = HostConfig {
            binds: Some(self.spec.binds.clone()),
            network_mode: Some(self.spec.network.clone()),
            // The agent restarts it (or rolls back): an engine restart
            // policy would hide a crash from the soak window.
            restart_policy: Some(RestartPolicy { name: Some(RestartPolicyNameEnum::NO), maximum_retry_count: None }),
            ..HostConfig::default()
        };
        let body = ContainerCreateBody {
            image: Some(format!("{repository}@{digest}")),
            env: Some(self.spec.env.to_vec()),
            cmd: (!self.spec.command.is_empty()).then(|| self.spec.command.clone()),
            labels: Some(HashMap::from([(LABEL_DIGEST.to_owned(), digest.to_owned())])),
            stop_timeout: Some(self.spec.stop_timeout_secs as i64),
            host_config: Some(host_config),
            ..ContainerCreateBody::default()
        };
        let options = CreateContainerOptionsBuilder::default().name(name).build();
        self.docker.create_container(Some(options), body).await.map_err(|e| self.container_error("creating", e))?;
        self.docker.start_container(name, None).await.map_err(|e| self.container_error("starting", e))
    }

    /// Stops and removes the predictor container, if there is one.
    pub async fn remove(&self) -> Result<(), EngineError> {
        let name = &self.spec.name;
        let stop = StopContainerOptionsBuilder::default().t(self.spec.stop_timeout_secs as i32).build();
        match self.docker.stop_container(name, Some(stop)).await {
            // 304: not running; 404: no such container.
            Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 304 | 404, .. }) => {}
            Err(e) => return Err(self.container_error("stopping", e)),
        }
        let remove = RemoveContainerOptionsBuilder::default().force(true).build();
        match self.docker.remove_container(name, Some(remove)).await {
            Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
            Err(e) => Err(self.container_error("removing", e)),
        }
    }

    fn container_error(&self, what: &'static str, e: bollard::errors::Error) -> EngineError {
        EngineError::Container { what, name: self.spec.name.clone(), cause: e.to_string() }
    }
}
