//! Configuration shared by the edge services: the MQTT section, the
//! `/metrics` endpoint, and the one loader both services use.
//!
//! A config is loaded from its defaults, then a TOML file (`--config`), then
//! environment variables of the form `GRIDCAST_<SECTION>__<KEY>` (double
//! underscore between levels, e.g. `GRIDCAST_MQTT__HOST=10.0.0.2`). Only
//! variables with a `__` count as overrides, so unrelated `GRIDCAST_*`
//! variables are left alone. Unknown keys are errors that name the key.
//!
//! Secrets can come from files as well: `password_file` under `[mqtt]`, and
//! `token_file` / `password_file` in an InfluxDB sink, name a file whose
//! contents (trailing newline trimmed) are the secret. The file is read
//! while the config is loaded, so a missing or unreadable one stops the
//! service at start with the key and the path in the message. This is what
//! systemd's `LoadCredential=` needs: `GRIDCAST_MQTT__PASSWORD_FILE=%d/mqtt-password`
//! in the unit (`%d` is the credentials directory; TOML expands no variables).
//! TLS files (`ca_file`, `client_cert_file`, `client_key_file`) are read by
//! `validate`, at load too (see `source::tls`); the config keeps only their
//! paths, so the client key is never in it.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::secret::Secret;

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

/// Resolve a secret given either inline (`value`) or as a file (`file`):
/// with a file, `value` becomes the file's contents, trailing newlines
/// trimmed. Both set, an unreadable file or an empty one are errors naming
/// `key` (e.g. `[mqtt] password`) and the path.
pub fn resolve_secret(key: &str, value: &mut Option<Secret>, file: Option<&Path>) -> Result<(), String> {
    let Some(path) = file else { return Ok(()) };
    if value.is_some() {
        return Err(format!("{key} and {key}_file are both set: keep one (the file is {})", path.display()));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{key}_file: cannot read the secret from {}: {e}", path.display()))?;
    let secret = text.trim_end_matches(['\n', '\r']);
    if secret.is_empty() {
        return Err(format!("{key}_file: {} is empty", path.display()));
    }
    *value = Some(Secret::new(secret));
    Ok(())
}

/// The MQTT source. The session is persistent (clean_session = false) and
/// acknowledged by hand, so the broker keeps what the service has not
/// durably spooled: both are fixed, not options.
///
/// (De)serialized through the derived code (`remote = "Self"`) wrapped by
/// the impls below: deserializing reads `password_file`, serializing leaves
/// out a password that came from it, so `--print-config` shows the path,
/// not the secret, and its output loads again.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default, remote = "Self")]
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
    /// Optional password (prefer the GRIDCAST_MQTT__PASSWORD variable, or
    /// `password_file`).
    pub password: Option<Secret>,
    /// A file holding the password (trailing newline trimmed), read at load
    /// time; not together with `password`. With systemd's `LoadCredential=`:
    /// `GRIDCAST_MQTT__PASSWORD_FILE=%d/mqtt-password` in the unit.
    pub password_file: Option<PathBuf>,
    /// Connect over TLS (rustls). The broker's certificate must chain to
    /// `ca_file`, and name `host` in its subjectAltName. Set `port` to the
    /// broker's TLS listener (often 8883).
    pub tls: bool,
    /// With `tls`: the PEM file of the CA (or CAs) that signed the broker's
    /// certificate; the only CAs trusted (no system roots). Read at start.
    pub ca_file: Option<PathBuf>,
    /// With `tls`, for mutual TLS: our certificate chain (PEM), leaf first,
    /// shown to a broker that asks for one (Mosquitto `require_certificate
    /// true`). Read at start; set together with `client_key_file`.
    pub client_cert_file: Option<PathBuf>,
    /// The private key of `client_cert_file` (PEM: PKCS#8, RSA or EC). A
    /// secret: only its path is ever printed (`--print-config` too), never
    /// its content. Read at start; with systemd's `LoadCredential=`:
    /// `GRIDCAST_MQTT__CLIENT_KEY_FILE=%d/mqtt-client-key`.
    pub client_key_file: Option<PathBuf>,
    /// First reconnect delay after an error, in milliseconds; doubles up to `reconnect_max_ms`.
    pub reconnect_min_ms: u64,
    /// Largest reconnect delay, in milliseconds.
    pub reconnect_max_ms: u64,
    /// Largest MQTT packet read (or sent). A larger one cannot be read, so
    /// it cannot be acknowledged either, and the broker would send it again
    /// after every reconnect: keep the broker's own limit below this
    /// (Mosquitto `max_packet_size`, set to 16 MiB in our mosquitto.conf).
    /// Payloads up to this size are read and judged by `[decode]
    /// max_payload_bytes`.
    pub max_packet_bytes: usize,
    /// How the broker dispatches a `$share/<group>/...` subscription among
    /// the group's members: `round_robin` (Mosquitto's only strategy, and
    /// the default of most brokers: one meter's minute is split across
    /// replicas) or `by_topic` (sticky: EMQX `hash_topic`, HiveMQ and
    /// VerneMQ configured likewise; every message of a topic goes to the
    /// same member). Ingest is correct under both (it writes partial
    /// windows that queries add up); predict needs `by_topic`.
    pub shared_dispatch: SharedDispatch,
}

/// A broker's dispatch strategy for shared subscriptions.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SharedDispatch {
    /// Each message to the next member: a sensor's readings are split.
    #[default]
    RoundRobin,
    /// Each topic always to the same member (while it is connected).
    ByTopic,
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
            password_file: None,
            tls: false,
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
            reconnect_min_ms: 200,
            reconnect_max_ms: 30_000,
            max_packet_bytes: 32 << 20,
            shared_dispatch: SharedDispatch::RoundRobin,
        }
    }
}

impl<'de> Deserialize<'de> for MqttConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut config = MqttConfig::deserialize(deserializer)?;
        resolve_secret("[mqtt] password", &mut config.password, config.password_file.as_deref())
            .map_err(serde::de::Error::custom)?;
        Ok(config)
    }
}

impl Serialize for MqttConfig {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.password_file.is_some() {
            MqttConfig::serialize(&MqttConfig { password: None, ..self.clone() }, serializer)
        } else {
            MqttConfig::serialize(self, serializer)
        }
    }
}

impl MqttConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.topics.is_empty() {
            anyhow::bail!("invalid [mqtt] section: topics is empty, so nothing would be read");
        }
        if self.max_packet_bytes < 1024 {
            anyhow::bail!("invalid [mqtt] section: max_packet_bytes must be at least 1024");
        }
        for topic in &self.topics {
            if topic.starts_with("$share/") && shared_group(topic).is_none() {
                anyhow::bail!(
                    "invalid [mqtt] section: topic {topic:?} is not a shared subscription: write $share/<group>/<filter>"
                );
            }
        }
        // Reads ca_file, client_cert_file and client_key_file: a missing or
        // broken one stops the service here, naming the key and the path.
        crate::source::tls::client_config(self)?;
        Ok(())
    }

    /// Whether any topic is a shared subscription (`$share/<group>/<filter>`):
    /// then other replicas in the group receive some of the messages.
    pub fn is_shared(&self) -> bool {
        self.topics.iter().any(|t| shared_group(t).is_some())
    }
}

/// The group of a shared subscription `$share/<group>/<filter>`, if `topic`
/// is one (a group and a filter both non-empty).
pub fn shared_group(topic: &str) -> Option<&str> {
    let rest = topic.strip_prefix("$share/")?;
    let (group, filter) = rest.split_once('/')?;
    (!group.is_empty() && !filter.is_empty() && !group.contains(['+', '#'])).then_some(group)
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

#[cfg(test)]
// figment's Jail closures return figment::Error, which is large; fine in tests.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use crate::sinks::SinkConfig;

    /// The secret-bearing sections of a service config.
    #[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Secrets {
        mqtt: MqttConfig,
        sinks: Vec<SinkConfig>,
    }

    impl ServiceConfig for Secrets {
        fn validate(&self) -> anyhow::Result<()> {
            self.mqtt.validate()
        }
    }

    /// Load `toml` as a config file, with the given GRIDCAST_ variables set.
    fn load_with(toml: &str, env: &[(&str, &str)]) -> anyhow::Result<Secrets> {
        let mut result = None;
        figment::Jail::expect_with(|jail| {
            jail.create_file("c.toml", toml)?;
            for (key, value) in env {
                jail.set_env(key, value);
            }
            result = Some(load::<Secrets>(Some(Path::new("c.toml"))));
            Ok(())
        });
        result.unwrap()
    }

    fn secret_file(dir: &Path, name: &str, contents: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    #[test]
    fn shared_subscriptions_are_recognised_and_malformed_ones_refused() {
        assert_eq!(shared_group("$share/ingest/data/#"), Some("ingest"));
        assert_eq!(shared_group("data/#"), None);
        assert_eq!(shared_group("$share/ingest"), None);
        assert_eq!(shared_group("$share//data/#"), None);
        let config = load_with("[mqtt]\ntopics = [\"$share/g/data/#\", \"one-minute/#\"]\n", &[]).unwrap();
        assert!(config.mqtt.is_shared());
        assert_eq!(config.mqtt.shared_dispatch, SharedDispatch::RoundRobin);
        let error = load_with("[mqtt]\ntopics = [\"$share/g\"]\n", &[]).unwrap_err().to_string();
        assert!(error.contains("$share/<group>/<filter>"), "{error}");
        let config = load_with("[mqtt]\nshared_dispatch = \"by_topic\"\n", &[]).unwrap();
        assert_eq!(config.mqtt.shared_dispatch, SharedDispatch::ByTopic);
        assert!(!config.mqtt.is_shared());
    }

    #[test]
    fn mqtt_password_file_is_read_at_load_with_the_trailing_newline_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = secret_file(dir.path(), "mqtt-password", "s3cret pass\n");
        let config = load_with(&format!("[mqtt]\nusername = \"u\"\npassword_file = {:?}\n", path), &[]).unwrap();
        assert_eq!(config.mqtt.password.as_ref().map(Secret::expose), Some("s3cret pass"));
        assert_eq!(config.mqtt.password_file.as_deref(), Some(path.as_path()));
        // CRLF too, and only the end: inner whitespace is the secret's.
        let path = secret_file(dir.path(), "crlf", " a b \r\n");
        let config = load_with(&format!("[mqtt]\npassword_file = {:?}\n", path), &[]).unwrap();
        assert_eq!(config.mqtt.password.as_ref().map(Secret::expose), Some(" a b "));
    }

    #[test]
    fn mqtt_password_file_comes_from_the_environment_as_systemd_credentials_need() {
        let dir = tempfile::tempdir().unwrap();
        let path = secret_file(dir.path(), "mqtt-password", "from-credential\n");
        let config = load_with("", &[("GRIDCAST_MQTT__PASSWORD_FILE", path.to_str().unwrap())]).unwrap();
        assert_eq!(config.mqtt.password.as_ref().map(Secret::expose), Some("from-credential"));
    }

    #[test]
    fn a_secret_read_from_a_file_is_not_printed_and_the_printed_config_loads_again() {
        let dir = tempfile::tempdir().unwrap();
        let mqtt = secret_file(dir.path(), "mqtt-password", "mqtt-secret\n");
        let token = secret_file(dir.path(), "influxdb-token", "token-secret\n");
        let influx = secret_file(dir.path(), "influxdb-password", "v1-secret");
        let text = format!(
            "[mqtt]\npassword_file = {mqtt:?}\n\n[[sinks]]\nkind = \"influxdb_v2\"\nurl = \"http://h:8428\"\norg = \"o\"\n\
             bucket = \"b\"\ntoken_file = {token:?}\n\n[[sinks]]\nkind = \"influxdb_v1\"\nurl = \"http://h:8086\"\n\
             database = \"d\"\nusername = \"u\"\npassword_file = {influx:?}\n"
        );
        let config = load_with(&text, &[]).unwrap();
        match &config.sinks[..] {
            [SinkConfig::InfluxdbV2 { token, .. }, SinkConfig::InfluxdbV1 { password, .. }] => {
                assert_eq!(token.as_ref().map(Secret::expose), Some("token-secret"));
                assert_eq!(password.as_ref().map(Secret::expose), Some("v1-secret"));
            }
            other => panic!("unexpected sinks {other:?}"),
        }
        // What --print-config shows (it prints this serialization as TOML).
        let printed = serde_json::to_string(&config).unwrap();
        for secret in ["mqtt-secret", "token-secret", "v1-secret"] {
            assert!(!printed.contains(secret), "{secret} printed: {printed}");
        }
        assert!(printed.contains("token_file") && printed.contains("password_file"), "{printed}");
        // ... and it loads again, reading the files again.
        let again: Secrets = Figment::from(Serialized::defaults(&config)).extract().unwrap();
        assert_eq!(again, config);
        // An inline secret prints as ***, never as itself.
        let inline = load_with("[mqtt]\npassword = \"inline-secret\"\n", &[]).unwrap();
        assert_eq!(inline.mqtt.password.as_ref().map(Secret::expose), Some("inline-secret"));
        let printed = serde_json::to_string(&inline).unwrap();
        assert!(!printed.contains("inline-secret") && printed.contains(r#""password":"***""#), "{printed}");
        assert!(!format!("{inline:?}").contains("inline-secret"));
    }

    #[test]
    fn an_unreadable_secret_file_is_an_error_naming_the_key_and_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-credential");
        let err = load_with(&format!("[mqtt]\npassword_file = {missing:?}\n"), &[]).unwrap_err().to_string();
        assert!(err.contains("[mqtt] password_file") && err.contains(missing.to_str().unwrap()), "{err}");
        assert!(err.contains("No such file"), "{err}");

        let text = format!(
            "[[sinks]]\nkind = \"influxdb_v2\"\nurl = \"http://h:8428\"\norg = \"o\"\nbucket = \"b\"\ntoken_file = {missing:?}\n"
        );
        let err = load_with(&text, &[]).unwrap_err().to_string();
        assert!(err.contains("token_file") && err.contains("http://h:8428"), "{err}");
        assert!(err.contains(missing.to_str().unwrap()), "{err}");

        // A folder is not a secret either, and an empty file is a mistake.
        let err = load_with(&format!("[mqtt]\npassword_file = {:?}\n", dir.path()), &[]).unwrap_err().to_string();
        assert!(err.contains("password_file") && err.contains(dir.path().to_str().unwrap()), "{err}");
        let empty = secret_file(dir.path(), "empty", "\n");
        let err = load_with(&format!("[mqtt]\npassword_file = {empty:?}\n"), &[]).unwrap_err().to_string();
        assert!(err.contains("password_file") && err.contains("is empty"), "{err}");
    }

    #[test]
    fn a_secret_and_its_file_together_are_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = secret_file(dir.path(), "p", "x\n");
        // From the file and the environment alike.
        let err = load_with(&format!("[mqtt]\npassword = \"inline\"\npassword_file = {path:?}\n"), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("password and [mqtt] password_file are both set"), "{err}");
        let err =
            load_with("[mqtt]\npassword = \"inline\"\n", &[("GRIDCAST_MQTT__PASSWORD_FILE", path.to_str().unwrap())])
                .unwrap_err()
                .to_string();
        assert!(err.contains("both set"), "{err}");
        let text = format!(
            "[[sinks]]\nkind = \"influxdb_v1\"\nurl = \"http://h:8086\"\ndatabase = \"d\"\npassword = \"p\"\n\
             password_file = {path:?}\n"
        );
        let err = load_with(&text, &[]).unwrap_err().to_string();
        assert!(err.contains("password and") && err.contains("password_file are both set"), "{err}");
    }
}
