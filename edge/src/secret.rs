//! A secret in a config (a password, a token): kept as given, never shown.
//! `Debug` and `Display` print `***`, and so does serializing it, so neither
//! a log line nor `--print-config` can leak it. Only [`Secret::expose`]
//! gives the value, at the one place that sends it.

use serde::{Deserialize, Serialize};

/// What a secret prints as, everywhere.
pub const REDACTED: &str = "***";

#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself: only where it is sent (an auth header, a login).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret::new(value)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

/// Object-store options (`aws_secret_access_key = "..."`, ...) as a config
/// holds them: a map that prints and serializes the values of secret-looking
/// keys as `***` and keeps the rest (an endpoint, a region) readable.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct StoreOptions(pub std::collections::BTreeMap<String, String>);

impl StoreOptions {
    /// Whether a key names a secret: a key, a secret, a password, a token,
    /// a SAS or a credential of any store.
    pub fn is_secret(key: &str) -> bool {
        let key = key.to_ascii_lowercase();
        ["key", "secret", "password", "token", "sas", "credential"].iter().any(|word| key.contains(word))
    }

    fn redacted(&self) -> std::collections::BTreeMap<&str, &str> {
        self.0.iter().map(|(k, v)| (k.as_str(), if Self::is_secret(k) { REDACTED } else { v.as_str() })).collect()
    }
}

impl std::ops::Deref for StoreOptions {
    type Target = std::collections::BTreeMap<String, String>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.redacted().fmt(f)
    }
}

impl Serialize for StoreOptions {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.redacted().serialize(serializer)
    }
}

/// A container's environment (`KEY=VALUE` entries) as a config holds it:
/// printed and serialized with the values of secret-looking names (see
/// [`StoreOptions::is_secret`]: `GRIDCAST_MQTT__PASSWORD`, `..._TOKEN`) as
/// `***`.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct EnvList(pub Vec<String>);

impl EnvList {
    fn redacted(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|entry| match entry.split_once('=') {
                Some((name, _)) if StoreOptions::is_secret(name) => format!("{name}={REDACTED}"),
                _ => entry.clone(),
            })
            .collect()
    }
}

impl std::ops::Deref for EnvList {
    type Target = Vec<String>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::fmt::Debug for EnvList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.redacted().fmt(f)
    }
}

impl Serialize for EnvList {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.redacted().serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_prints_nor_serializes_but_deserializes_and_exposes() {
        let secret: Secret = serde_json::from_str(r#""hunter2""#).unwrap();
        assert_eq!(secret.expose(), "hunter2");
        assert_eq!(format!("{secret:?} {secret} {:?}", Some(&secret)), "*** *** Some(***)");
        assert_eq!(serde_json::to_string(&secret).unwrap(), r#""***""#);
    }

    #[test]
    fn store_options_hide_keys_secrets_and_tokens_and_show_the_rest() {
        let options: StoreOptions = serde_json::from_str(
            r#"{"aws_endpoint":"http://s3","aws_secret_access_key":"s3cr3t","azure_storage_account_key":"k3y","azure_storage_sas_key":"sas"}"#,
        )
        .unwrap();
        assert_eq!(options["aws_secret_access_key"], "s3cr3t");
        let printed = format!("{} {options:?}", serde_json::to_string(&options).unwrap());
        for secret in ["s3cr3t", "k3y", "\"sas\""] {
            assert!(!printed.contains(secret), "{printed}");
        }
        assert!(printed.contains("http://s3"), "{printed}");
    }

    #[test]
    fn an_environment_hides_the_values_of_secret_names() {
        let env = EnvList(vec!["GRIDCAST_MQTT__PASSWORD=pw1".into(), "RUST_LOG=info".into()]);
        let printed = format!("{} {env:?}", serde_json::to_string(&env).unwrap());
        assert!(!printed.contains("pw1") && printed.contains("GRIDCAST_MQTT__PASSWORD=***"), "{printed}");
        assert!(printed.contains("RUST_LOG=info"), "{printed}");
        assert_eq!(env[0], "GRIDCAST_MQTT__PASSWORD=pw1");
    }
}
