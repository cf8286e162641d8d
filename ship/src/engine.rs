//! `gridcast ship model --engine`: the model image made and pushed by a
//! Docker engine (bollard) instead of daemonlessly. The engine pulls the
//! base, builds the model layer from a three-line Dockerfile with its
//! classic builder (what Debian's engine, API 1.41, has), tags the result
//! and pushes it, with the credentials `credentials` finds.
//!
//! For a build machine whose engine carries the registry setup (mirrors,
//! insecure registries, proxies). The image holds the same files as the
//! daemonless one: the base's layers (the very blobs the engine pulled,
//! mounted or found in place, not rebuilt), one layer with
//! /models/current.gcm, the model labels. Its digest differs: the engine
//! compresses its own layer and writes its own config.
//!
//! The only module that talks to an engine. What it promises:
//! - the model is checked before the engine is contacted
//!   (`push::prepare_model`, as for the daemonless path);
//! - the API version is negotiated first (bollard speaks 1.53, Debian's
//!   engine 1.41);
//! - every item of the pull, build and push streams is checked for an error,
//!   since a stream can report one and then end normally;
//! - failures say which it was: the engine out of reach, the registry out of
//!   the engine's reach, credentials refused, or the build;
//! - the digest reported is the one the engine pushed under the tag (its
//!   `TAG: digest: sha256:... size: N` line, else the image's RepoDigests):
//!   a push that names none is a failure, not a success.

use std::fmt;

use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::errors::Error as BollardError;
use bollard::models::{BuildInfo, CreateImageInfo, ErrorDetail, PushImageInfo};
use bollard::query_parameters::{
    BuildImageOptionsBuilder, BuilderVersion, CreateImageOptionsBuilder, PushImageOptionsBuilder,
};
use futures::{Stream, StreamExt};
use oci_client::Reference;
use oci_client::secrets::RegistryAuth;

use crate::ShipError;
use crate::credentials;
use crate::image::MODEL_PATH;
use crate::layer::{LayerFile, build_layer};
use crate::push::{ModelImage, PreparedModel, prepare_model};

/// The engine's socket when neither `--docker-host` nor `DOCKER_HOST` names one.
pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";

/// How long the engine may take to start answering one request. Pull,
/// build and push answer at once and then stream; this bounds a hung engine.
const REQUEST_TIMEOUT_SECS: u64 = 300;

/// The model file's name in the build context.
const CONTEXT_MODEL: &str = "current.gcm";

/// What one push through an engine did.
#[derive(Debug, Clone)]
pub struct EngineReport {
    /// The reference pushed, `registry/repository:tag`.
    pub image: String,
    /// `sha256:<hex>` of the manifest the engine pushed.
    pub digest: String,
    /// The engine, as addressed (`unix:///var/run/docker.sock`).
    pub engine: String,
    /// Layers the engine sent to the registry.
    pub uploaded: usize,
    /// Layers the registry had already, or mounted from another repository.
    pub reused: usize,
}

impl fmt::Display for EngineReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pushed {}@{} through the Docker engine at {}: uploaded {} layer(s), reused {} layer(s)",
            self.image, self.digest, self.engine, self.uploaded, self.reused
        )
    }
}

/// The engine's address and where it came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineHost {
    pub url: String,
    pub origin: &'static str,
}

impl EngineHost {
    /// `--docker-host`, else `DOCKER_HOST`, else the local socket.
    pub fn resolve(flag: Option<&str>, env: impl Fn(&str) -> Option<String>) -> Self {
        match (flag, env("DOCKER_HOST").filter(|v| !v.is_empty())) {
            (Some(url), _) => Self { url: url.to_owned(), origin: "from --docker-host" },
            (None, Some(url)) => Self { url, origin: "from DOCKER_HOST" },
            (None, None) => Self { url: DEFAULT_DOCKER_HOST.to_owned(), origin: "the default; DOCKER_HOST is not set" },
        }
    }
}

/// Validates the model, then has the engine at `docker_host` (else
/// `DOCKER_HOST`, else the local socket) pull the base, build the model
/// image on it, and push that.
pub async fn push_model_with_engine(ship: &ModelImage, docker_host: Option<&str>) -> Result<EngineReport, ShipError> {
    push_prepared_with_engine(&prepare_model(ship)?, docker_host).await
}

/// [`push_model_with_engine`] after the checks (`gridcast retrain` prepares
/// the bytes it published).
pub async fn push_prepared_with_engine(
    prepared: &PreparedModel,
    docker_host: Option<&str>,
) -> Result<EngineReport, ShipError> {
    let context = build_context(prepared)?;
    let base_auth = RegistryCredentials::resolve(&prepared.base)?;
    let target_auth = RegistryCredentials::resolve(&prepared.target)?;
    let engine = Engine::connect(EngineHost::resolve(docker_host, |k| std::env::var(k).ok())).await?;

    engine.pull(&prepared.base, &base_auth).await?;
    engine.build(prepared, context).await?;
    let pushed = engine.push(&prepared.target, &target_auth).await?;
    let digest = match pushed.digest {
        Some(digest) => digest,
        None => engine.repo_digest(&prepared.target).await?,
    };
    Ok(EngineReport {
        image: prepared.target.whole(),
        digest,
        engine: engine.host.url.clone(),
        uploaded: pushed.uploaded,
        reused: pushed.reused,
    })
}

/// The Dockerfile that puts the model on the base: one COPY (one layer) and
/// the labels (metadata only).
pub fn dockerfile(prepared: &PreparedModel) -> String {
    let labels: Vec<String> = prepared.labels().iter().map(|(key, value)| format!("{key}=\"{value}\"")).collect();
    format!("FROM {}\nCOPY {CONTEXT_MODEL} {MODEL_PATH}\nLABEL {}\n", prepared.base.whole(), labels.join(" "))
}

/// The build context: a gzipped tar of the Dockerfile and the model (the
/// engine takes gzip), built as image layers are.
fn build_context(prepared: &PreparedModel) -> Result<Vec<u8>, ShipError> {
    let context = build_layer(&[
        LayerFile::new("/Dockerfile", 0o644, dockerfile(prepared).into_bytes()),
        LayerFile::new(format!("/{CONTEXT_MODEL}"), 0o644, prepared.bytes.clone()),
    ])?;
    Ok(context.blob)
}

/// The credentials for one registry, as the engine takes them.
struct RegistryCredentials {
    registry: String,
    docker: Option<DockerCredentials>,
    /// Where they came from (never the password), for messages.
    source: String,
}

impl RegistryCredentials {
    fn resolve(reference: &Reference) -> Result<Self, ShipError> {
        let registry = reference.registry().to_owned();
        let found = credentials::resolve(&registry, |k| std::env::var(k).ok())?;
        let docker = docker_credentials(&registry, found.auth);
        Ok(Self { registry, docker, source: found.source })
    }

    /// A registry failure the engine reported, as the daemonless path
    /// reports it: refused credentials and an unreachable registry told
    /// apart from the rest.
    fn error(&self, what: String, cause: String) -> ShipError {
        let registry = self.registry.clone();
        match registry_trouble(&cause) {
            Trouble::Refused => ShipError::Refused { registry, what, credentials: self.source.clone() },
            Trouble::Unreachable => ShipError::Unreachable { registry, what, cause },
            Trouble::Other => ShipError::Registry { what, cause },
        }
    }
}

/// What the engine's push stream said, item by item.
#[derive(Debug, Default, PartialEq, Eq)]
struct PushTally {
    uploaded: usize,
    reused: usize,
    digest: Option<String>,
}

impl PushTally {
    /// Counts one status line: `Pushed`, `Layer already exists`, `Mounted
    /// from REPO`, and `TAG: digest: sha256:... size: N` at the end.
    fn see(&mut self, status: &str) {
        if status == "Pushed" {
            self.uploaded += 1;
        } else if status == "Layer already exists" || status.starts_with("Mounted from ") {
            self.reused += 1;
        } else if let Some((_, rest)) = status.split_once(": digest: ") {
            let digest = rest.split_whitespace().next().unwrap_or("");
            if digest.strip_prefix("sha256:").is_some_and(|hex| hex.len() == 64) {
                self.digest = Some(digest.to_owned());
            }
        }
    }
}

/// What a registry failure reported by an engine was, from its message
/// (the engine passes the registry's answer on as text).
#[derive(Debug, PartialEq, Eq)]
enum Trouble {
    Refused,
    Unreachable,
    Other,
}

fn registry_trouble(message: &str) -> Trouble {
    let message = message.to_ascii_lowercase();
    let any = |needles: &[&str]| needles.iter().any(|n| message.contains(n));
    if any(&["unauthorized", "authentication required", "no basic auth credentials", "denied", "forbidden"]) {
        Trouble::Refused
    } else if any(&[
        "connection refused",
        "no such host",
        "i/o timeout",
        "network is unreachable",
        "no route to host",
        "connection reset",
        "server misbehaving",
    ]) {
        Trouble::Unreachable
    } else {
        Trouble::Other
    }
}

/// An item of an engine's progress stream.
trait Progress {
    fn error_detail(&self) -> Option<&ErrorDetail>;
    fn status(&self) -> Option<&str>;
}

macro_rules! progress {
    ($($item:ty),*) => {$(
        impl Progress for $item {
            fn error_detail(&self) -> Option<&ErrorDetail> {
                self.error_detail.as_ref()
            }
            fn status(&self) -> Option<&str> {
                self.status.as_deref()
            }
        }
    )*};
}
progress!(CreateImageInfo, PushImageInfo, BuildInfo);

/// How a streamed engine call failed.
#[derive(Debug)]
pub enum Failed {
    /// The engine said so: an error item, or an error status.
    Said(String),
    /// The connection to the engine failed, or it did not answer in time.
    Transport(String),
}

impl fmt::Display for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failed::Said(cause) => f.write_str(cause),
            Failed::Transport(cause) => write!(f, "the engine did not answer: {cause}"),
        }
    }
}

/// Has the engine pull `reference` (by its digest, else its tag) with
/// `credentials`, reading the whole progress stream: any error item fails
/// it. `gridcast ship --engine` pulls the base with it, the agent a
/// predictor image.
pub async fn pull_image(
    docker: &Docker,
    reference: &Reference,
    credentials: Option<DockerCredentials>,
) -> Result<(), Failed> {
    // An empty tag would pull every tag of the repository.
    let tag = reference.digest().or(reference.tag()).unwrap_or("latest");
    let options = CreateImageOptionsBuilder::default().from_image(&repository_name(reference)).tag(tag).build();
    drain(docker.create_image(Some(options), None, credentials), |_| {}).await
}

impl From<BollardError> for Failed {
    fn from(e: BollardError) -> Self {
        match e {
            BollardError::DockerStreamError { error } => Failed::Said(error),
            BollardError::DockerResponseServerError { message, .. } if !message.is_empty() => Failed::Said(message),
            BollardError::DockerResponseServerError { status_code, .. } => Failed::Said(format!("HTTP {status_code}")),
            e @ (BollardError::HyperLegacyError { .. }
            | BollardError::HyperResponseError { .. }
            | BollardError::IOError { .. }
            | BollardError::RequestTimeoutError) => Failed::Transport(root_cause(&e)),
            // An answer that is not what the API promises (bad JSON, ...).
            e => Failed::Said(e.to_string()),
        }
    }
}

/// The innermost error of a chain: bollard wraps a refused connection in
/// hyper's errors, each repeating the next ("client error (Connect): ...").
fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cause = e;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// Reads `stream` to its end, handing each item to `on_item`; the first
/// error item (or failed read) ends it as an error.
async fn drain<T: Progress>(
    stream: impl Stream<Item = Result<T, BollardError>>,
    mut on_item: impl FnMut(&T),
) -> Result<(), Failed> {
    let mut stream = std::pin::pin!(stream);
    while let Some(item) = stream.next().await {
        let item = item?;
        // bollard turns items with an error message into errors; one with
        // an error but no message is still an error.
        if let Some(detail) = item.error_detail() {
            let message = detail.message.clone().unwrap_or_else(|| format!("error code {:?}", detail.code));
            return Err(Failed::Said(message));
        }
        if let Some(status) = item.status() {
            tracing::debug!("engine: {status}");
        }
        on_item(&item);
    }
    Ok(())
}

/// A connected engine, its API version negotiated.
/// A client for the engine at `host`, on an API version both speak: bollard
/// 0.21 defaults to API 1.53, Debian's engine speaks 1.41, so the version is
/// negotiated before any other call. Also the agent's way in.
pub async fn connect(host: &EngineHost) -> Result<Docker, ShipError> {
    let unreachable = |cause: String| ShipError::EngineUnreachable {
        host: host.url.clone(),
        origin: host.origin.to_owned(),
        what: "connecting to the Docker engine".into(),
        cause,
    };
    if !host.url.starts_with("unix://") {
        return Err(ShipError::EngineAddress { host: host.url.clone(), origin: host.origin.to_owned() });
    }
    let docker = match Docker::connect_with_unix(&host.url, REQUEST_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION) {
        Ok(docker) => docker,
        Err(BollardError::SocketNotFoundError(path)) => return Err(unreachable(format!("no socket at {path}"))),
        Err(e) => return Err(unreachable(root_cause(&e))),
    };
    let docker = docker.negotiate_version().await.map_err(|e| unreachable(root_cause(&e)))?;
    let version = docker.client_version();
    tracing::debug!("engine {}: API {}.{}", host.url, version.major_version, version.minor_version);
    Ok(docker)
}

/// Registry credentials as the engine takes them (`None`: anonymous).
pub fn docker_credentials(registry: &str, auth: RegistryAuth) -> Option<DockerCredentials> {
    let base = DockerCredentials { serveraddress: Some(registry.to_owned()), ..Default::default() };
    match auth {
        RegistryAuth::Anonymous => None,
        RegistryAuth::Basic(username, password) => {
            Some(DockerCredentials { username: Some(username), password: Some(password), ..base })
        }
        RegistryAuth::Bearer(token) => Some(DockerCredentials { registrytoken: Some(token), ..base }),
    }
}

struct Engine {
    docker: Docker,
    host: EngineHost,
}

impl Engine {
    async fn connect(host: EngineHost) -> Result<Self, ShipError> {
        let docker = connect(&host).await?;
        Ok(Self { docker, host })
    }

    /// An engine call that failed at `what`: a connection failure is the
    /// engine's; what the engine said goes to `said`.
    fn error(&self, what: String, failed: Failed, said: impl FnOnce(String, String) -> ShipError) -> ShipError {
        match failed {
            Failed::Said(cause) => said(what, cause),
            Failed::Transport(cause) => ShipError::EngineUnreachable {
                host: self.host.url.clone(),
                origin: self.host.origin.to_owned(),
                what,
                cause,
            },
        }
    }

    /// `docker pull BASE`, with the base registry's credentials.
    async fn pull(&self, base: &Reference, auth: &RegistryCredentials) -> Result<(), ShipError> {
        pull_image(&self.docker, base, auth.docker.clone()).await.map_err(|failed| {
            self.error(format!("pulling the base image {base} through the engine"), failed, |what, cause| {
                auth.error(what, cause)
            })
        })
    }

    /// `docker build -t TARGET` of the model's context, classic builder.
    async fn build(&self, prepared: &PreparedModel, context: Vec<u8>) -> Result<(), ShipError> {
        let target = prepared.target.whole();
        let options = BuildImageOptionsBuilder::default()
            .dockerfile("Dockerfile")
            .t(&target)
            .rm(true)
            .forcerm(true)
            .version(BuilderVersion::BuilderV1)
            .build();
        let mut image_id = None;
        let stream = self.docker.build_image(options, None, Some(bollard::body_full(context.into())));
        let built = drain(stream, |item: &BuildInfo| {
            if let Some(line) = item.stream.as_deref().map(str::trim_end).filter(|l| !l.is_empty()) {
                tracing::debug!("engine build: {line}");
            }
            if let Some(id) = item.aux.as_ref().and_then(|aux| aux.id.clone()) {
                image_id = Some(id);
            }
        })
        .await;
        let what = format!("building {target} on the engine");
        built.map_err(|failed| self.error(what.clone(), failed, |what, cause| self.said(what, cause)))?;
        let id = image_id.ok_or_else(|| self.said(what, "the build ended without naming the image it built".into()))?;
        tracing::debug!("built {target}: image {id}");
        Ok(())
    }

    /// `docker push TARGET`, with the target registry's credentials.
    async fn push(&self, target: &Reference, auth: &RegistryCredentials) -> Result<PushTally, ShipError> {
        let tag = target.tag().expect("prepare_model gives the target a tag");
        let options = PushImageOptionsBuilder::default().tag(tag).build();
        let stream = self.docker.push_image(&repository_name(target), Some(options), auth.docker.clone());
        let mut tally = PushTally::default();
        drain(stream, |item: &PushImageInfo| {
            if let Some(status) = &item.status {
                tally.see(status);
            }
        })
        .await
        .map_err(|failed| {
            self.error(format!("pushing {target} through the engine"), failed, |what, cause| auth.error(what, cause))
        })?;
        Ok(tally)
    }

    /// The digest under which `target` was pushed, from the image's
    /// RepoDigests (`REGISTRY/REPOSITORY@sha256:...`).
    async fn repo_digest(&self, target: &Reference) -> Result<String, ShipError> {
        let what = format!("reading the pushed digest of {target} from the engine");
        let inspect = self
            .docker
            .inspect_image(&target.whole())
            .await
            .map_err(|e| self.error(what.clone(), e.into(), |what, cause| self.said(what, cause)))?;
        let name = repository_name(target);
        inspect
            .repo_digests
            .unwrap_or_default()
            .iter()
            .find_map(|d| d.strip_prefix(&name).and_then(|rest| rest.strip_prefix('@')).map(str::to_owned))
            .ok_or_else(|| {
                self.said(what, "the push named no digest and the image has none for that repository".into())
            })
    }

    fn said(&self, what: String, cause: String) -> ShipError {
        ShipError::Engine { host: self.host.url.clone(), what, cause }
    }
}

/// `REGISTRY/REPOSITORY`, as the engine names a repository.
fn repository_name(reference: &Reference) -> String {
    format!("{}/{}", reference.registry(), reference.repository())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepared() -> PreparedModel {
        PreparedModel {
            bytes: b"model".to_vec(),
            version: "0123456789ab".into(),
            sha256: format!("0123456789ab{}", "c".repeat(52)),
            base: "127.0.0.1:5000/gridcast/predictor:base".parse().unwrap(),
            target: "127.0.0.1:5000/gridcast/edge:0123456789ab".parse().unwrap(),
        }
    }

    #[test]
    fn the_dockerfile_copies_the_model_to_its_path_and_labels_the_version() {
        let text = dockerfile(&prepared());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "FROM 127.0.0.1:5000/gridcast/predictor:base");
        assert_eq!(lines[1], "COPY current.gcm /models/current.gcm");
        assert!(lines[2].starts_with("LABEL io.gridcast.model.version=\"0123456789ab\" io.gridcast.model.sha256=\""));
        assert_eq!(lines.len(), 3);
    }

    #[test]
    fn the_push_stream_is_counted_and_its_digest_read() {
        let mut tally = PushTally::default();
        let digest = format!("sha256:{}", "a".repeat(64));
        for status in [
            "The push refers to repository [127.0.0.1:5000/gridcast/edge]",
            "Preparing",
            "Pushing",
            "Pushed",
            "Mounted from gridcast/predictor",
            "Layer already exists",
            &format!("0123456789ab: digest: {digest} size: 735"),
        ] {
            tally.see(status);
        }
        assert_eq!(tally, PushTally { uploaded: 1, reused: 2, digest: Some(digest) });
        let mut bad = PushTally::default();
        bad.see("v1: digest: sha256:abc size: 1");
        assert_eq!(bad.digest, None, "a malformed digest is not taken");
    }

    #[test]
    fn registry_failures_are_told_apart_by_the_engines_message() {
        assert_eq!(
            registry_trouble("Head \"http://127.0.0.1:5000/v2/x/manifests/base\": no basic auth credentials"),
            Trouble::Refused
        );
        assert_eq!(registry_trouble("unauthorized: authentication required"), Trouble::Refused);
        assert_eq!(
            registry_trouble("Get \"http://127.0.0.1:5/v2/\": dial tcp 127.0.0.1:5: connect: connection refused"),
            Trouble::Unreachable
        );
        assert_eq!(registry_trouble("manifest for x:y not found: manifest unknown"), Trouble::Other);
    }

    #[test]
    fn the_engine_comes_from_the_flag_then_docker_host_then_the_local_socket() {
        let env = |value: Option<&'static str>| move |_: &str| value.map(str::to_owned);
        assert_eq!(EngineHost::resolve(Some("unix:///a.sock"), env(Some("unix:///b.sock"))).url, "unix:///a.sock");
        let from_env = EngineHost::resolve(None, env(Some("unix:///b.sock")));
        assert_eq!((from_env.url.as_str(), from_env.origin), ("unix:///b.sock", "from DOCKER_HOST"));
        assert_eq!(EngineHost::resolve(None, env(None)).url, DEFAULT_DOCKER_HOST);
        assert_eq!(EngineHost::resolve(None, env(Some(""))).url, DEFAULT_DOCKER_HOST);
    }
}
