//! Which credentials to present to a registry, and whether it may be spoken
//! to over plain HTTP.
//!
//! In order: `GRIDCAST_REGISTRY_USERNAME` + `GRIDCAST_REGISTRY_PASSWORD` (a CI
//! secret, a Kubernetes Job's env), then the `auths` of a Docker
//! `config.json` (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`:
//! what `docker login` wrote), then anonymous. Credential helpers
//! (`credsStore`, `credHelpers`) are not run: their secrets are not in the
//! file, so a registry found only there is reached anonymously, with a warning.
//!
//! Pure apart from reading the config file: the environment comes in as a
//! lookup function, so tests need not touch the process's own.

use std::path::{Path, PathBuf};

use base64::Engine;
use oci_client::secrets::RegistryAuth;
use serde_json::Value;

pub const ENV_USERNAME: &str = "GRIDCAST_REGISTRY_USERNAME";
pub const ENV_PASSWORD: &str = "GRIDCAST_REGISTRY_PASSWORD";

/// Credentials for one registry and where they came from (for messages;
/// never the password).
#[derive(Debug, Clone)]
pub struct Credentials {
    pub auth: RegistryAuth,
    pub source: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("{ENV_USERNAME} is set but {ENV_PASSWORD} is not (or the other way round): set both, or neither")]
    HalfSetEnv,
    #[error("reading Docker config {path}: {reason}")]
    DockerConfig { path: PathBuf, reason: String },
}

/// The credentials for `registry` (host[:port] as in an image reference).
pub fn resolve(registry: &str, env: impl Fn(&str) -> Option<String>) -> Result<Credentials, CredentialsError> {
    let user = env(ENV_USERNAME).filter(|v| !v.is_empty());
    let password = env(ENV_PASSWORD).filter(|v| !v.is_empty());
    match (user, password) {
        (Some(user), Some(password)) => {
            return Ok(Credentials {
                auth: RegistryAuth::Basic(user.clone(), password),
                source: format!("user {user:?} from {ENV_USERNAME}"),
            });
        }
        (None, None) => {}
        _ => return Err(CredentialsError::HalfSetEnv),
    }
    let path = match (env("DOCKER_CONFIG"), env("HOME")) {
        (Some(dir), _) => Path::new(&dir).join("config.json"),
        (None, Some(home)) => Path::new(&home).join(".docker/config.json"),
        (None, None) => return Ok(anonymous()),
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(anonymous()),
        Err(e) => return Err(CredentialsError::DockerConfig { path, reason: e.to_string() }),
    };
    let config: Value = serde_json::from_str(&text)
        .map_err(|e| CredentialsError::DockerConfig { path: path.clone(), reason: format!("not JSON ({e})") })?;
    match from_docker_config(&config, registry) {
        Ok(Some((user, password))) => Ok(Credentials {
            auth: RegistryAuth::Basic(user.clone(), password),
            source: format!("user {user:?} from {}", path.display()),
        }),
        Ok(None) => {
            if config.get("credsStore").is_some() || config.get("credHelpers").and_then(|h| h.get(registry)).is_some() {
                tracing::warn!(
                    "{} names a credential helper for {registry}; gridcast does not run helpers: set {ENV_USERNAME}/{ENV_PASSWORD} instead",
                    path.display()
                );
            }
            Ok(anonymous())
        }
        Err(reason) => Err(CredentialsError::DockerConfig { path, reason }),
    }
}

fn anonymous() -> Credentials {
    Credentials { auth: RegistryAuth::Anonymous, source: "anonymous".into() }
}

/// User and password for `registry` from a config.json's `auths`, whose keys
/// may be `host[:port]`, with a scheme, or a URL with a path (Docker Hub's is
/// `https://index.docker.io/v1/`).
fn from_docker_config(config: &Value, registry: &str) -> Result<Option<(String, String)>, String> {
    let Some(auths) = config.get("auths").and_then(Value::as_object) else { return Ok(None) };
    let wanted = normalize(registry);
    let Some((key, entry)) = auths.iter().find(|(key, _)| normalize(key) == wanted) else { return Ok(None) };
    if let Some(auth) = entry.get("auth").and_then(Value::as_str).filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|e| format!("auths.{key}.auth is not base64 ({e})"))?;
        let decoded = String::from_utf8(decoded).map_err(|_| format!("auths.{key}.auth is not UTF-8"))?;
        let (user, password) =
            decoded.split_once(':').ok_or_else(|| format!("auths.{key}.auth is not base64 of user:password"))?;
        return Ok(Some((user.to_owned(), password.to_owned())));
    }
    match (entry.get("username").and_then(Value::as_str), entry.get("password").and_then(Value::as_str)) {
        (Some(user), Some(password)) => Ok(Some((user.to_owned(), password.to_owned()))),
        _ => Ok(None),
    }
}

/// `https://index.docker.io/v1/` -> `docker.io`, `http://host:5000` -> `host:5000`.
fn normalize(key: &str) -> String {
    let key = key.strip_prefix("https://").or_else(|| key.strip_prefix("http://")).unwrap_or(key);
    let host = key.split('/').next().unwrap_or(key);
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".into(),
        host => host.to_owned(),
    }
}

/// Whether plain HTTP may be used for `registry`: only on this machine
/// (`localhost`, `127.0.0.0/8`, `[::1]`), unless the user said `--insecure`.
pub fn plain_http_allowed(registry: &str, insecure: bool) -> bool {
    if insecure {
        return true;
    }
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        registry.rsplit_once(':').map_or(registry, |(host, _port)| host)
    };
    host == "localhost" || host == "::1" || host.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| vars.get(k).cloned()
    }

    fn basic(c: &Credentials) -> Option<(String, String)> {
        match &c.auth {
            RegistryAuth::Basic(u, p) => Some((u.clone(), p.clone())),
            _ => None,
        }
    }

    #[test]
    fn env_credentials_come_first_and_half_set_env_is_an_error() {
        let c = resolve("r:5000", lookup(&[(ENV_USERNAME, "ci"), (ENV_PASSWORD, "pw")])).unwrap();
        assert_eq!(basic(&c), Some(("ci".into(), "pw".into())));
        assert!(!c.source.contains("pw"), "the source never shows the password");
        assert!(matches!(resolve("r", lookup(&[(ENV_USERNAME, "ci")])), Err(CredentialsError::HalfSetEnv)));
    }

    #[test]
    fn docker_config_auths_are_matched_by_host_with_or_without_scheme() {
        let dir = tempfile::tempdir().unwrap();
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3:cret");
        std::fs::write(
            dir.path().join("config.json"),
            format!(r#"{{"auths":{{"https://reg.example:5000":{{"auth":"{auth}"}},"https://index.docker.io/v1/":{{"username":"bob","password":"x"}}}}}}"#),
        )
        .unwrap();
        let env = lookup(&[("DOCKER_CONFIG", dir.path().to_str().unwrap())]);
        assert_eq!(basic(&resolve("reg.example:5000", &env).unwrap()), Some(("alice".into(), "s3:cret".into())));
        assert_eq!(basic(&resolve("docker.io", &env).unwrap()), Some(("bob".into(), "x".into())));
        assert!(matches!(resolve("other:5000", &env).unwrap().auth, RegistryAuth::Anonymous));
    }

    #[test]
    fn no_config_file_means_anonymous_and_a_broken_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let env = lookup(&[("DOCKER_CONFIG", dir.path().to_str().unwrap())]);
        assert!(matches!(resolve("r", &env).unwrap().auth, RegistryAuth::Anonymous));
        std::fs::write(dir.path().join("config.json"), "{").unwrap();
        let error = resolve("r", &env).unwrap_err().to_string();
        assert!(error.contains("config.json") && error.contains("not JSON"), "{error}");
    }

    #[test]
    fn plain_http_only_for_loopback_unless_insecure() {
        assert!(plain_http_allowed("127.0.0.1:5000", false));
        assert!(plain_http_allowed("localhost:5000", false));
        assert!(plain_http_allowed("[::1]:5000", false));
        assert!(!plain_http_allowed("registry.example:5000", false));
        assert!(!plain_http_allowed("10.0.0.2", false));
        assert!(plain_http_allowed("10.0.0.2:5000", true));
    }
}
