//! Configuration shared by the edge services: the MQTT section, the
//! `/metrics` endpoint, and the one loader both services use.
//!
//! A config is loaded from its defaults, then a TOML file (`--config`), then
//! environment variables of the form `GRIDCAST_<SECTION>__<KEY>` (double
//! underscore between levels, e.g. `GRIDCAST_MQTT__HOST=10.0.0.2`). Only
//! variables with a `__` count as overrides, so unrelated `GRIDCAST_*`
//! variables are left alone. Unknown keys are errors that name the key.

use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A service's whole configuration, as [`load`] reads it.
pub trait ServiceConfig: Serialize + DeserializeOwned + Default {
    /// Checks serde cannot express: values that parse but cannot work.
    fn validate(&self) -> anyhow::Result<()>;
}

/// Load a config: defaults, then the file (if any), then the environment.
pub fn load<C: ServiceConfig>(path: Option<&Path>) -> anyhow::Result<C> {
    let mut figment = Figment::from(Serialized::defaults(C::default()));
    if let Some(path) = path {
        if !path.exists() {
            anyhow::bail!("config file {} does not exist", path.display());
        }
        figment = figment.merge(Toml::file(path));
    }
    figment = figment.merge(Env::prefixed("GRIDCAST_").filter(|key| key.as_str().contains("__")).split("__"));
    let config: C = figment.extract().map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    config.validate()?;
    Ok(config)
}

/// The MQTT source. The session is persistent (clean_session = false) and
/// acknowledged by hand, so the broker keeps what the service has not
/// durably spooled: both are fixed, not options.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// Broker host name or address.
    pub host: String,
    /// Broker TCP port.
    pub port: u16,
    /// Fixed client id: the broker keeps this session's queue while we are away.
    pub client_id: String,
    /// Topic filters to subscribe to (at QoS 1), re-subscribed on every connect.
    pub topics: Vec<String>,
    /// Keep-alive interval in seconds.
    pub keep_alive_secs: u64,
    /// Optional user name.
    pub username: Option<String>,
    /// Optional password (prefer the GRIDCAST_MQTT__PASSWORD variable).
    pub password: Option<String>,
    /// First reconnect delay after an error, in milliseconds; doubles up to `reconnect_max_ms`.
    pub reconnect_min_ms: u64,
    /// Largest reconnect delay, in milliseconds.
    pub reconnect_max_ms: u64,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            host: "127.0.0.1".into(),
            port: 1883,
            client_id: "gridcast-ingest".into(),
            topics: vec!["data/realtime/feature/#".into(), "ten-second/#".into(), "one-minute/#".into()],
            keep_alive_secs: 30,
            username: None,
            password: None,
            reconnect_min_ms: 200,
            reconnect_max_ms: 30_000,
        }
    }
}

impl MqttConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.topics.is_empty() {
            anyhow::bail!("invalid [mqtt] section: topics is empty, so nothing would be read");
        }
        Ok(())
    }
}

/// The HTTP endpoint of `/metrics` and `/health`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address of `/metrics` and `/health`; empty disables the server.
    pub listen: String,
}

impl HttpConfig {
    pub fn on(listen: &str) -> HttpConfig {
        HttpConfig { listen: listen.into() }
    }
}
