//! Service config files: any text as the config of ingest, predict, retrain
//! and the agent, read the way each service reads its `--config` (figment:
//! the defaults, then the TOML, then `validate()`), and with `toml::from_str`
//! straight into the same types.
//!
//! `password_file` and `token_file` make the loader read the file they
//! name, so an input with any key ending in `_file` is skipped: the fuzzer
//! must not read `/dev/zero` or block on `/dev/stdin`. Keys are checked on
//! the parsed document, as a TOML key can spell `_` as an escape.
#![no_main]

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use gridcast_agent::config::AgentConfig;
use gridcast_edge::config::ServiceConfig;
use gridcast_ingest::IngestConfig;
use gridcast_predictor::PredictConfig;
use gridcast_trainer::retrain::config::RetrainConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // figment (toml 0.8), as `gridcast_edge::config::load` reads the file.
    if let Ok(doc) = Figment::from(Toml::string(text)).extract::<figment::value::Dict>()
        && !doc.iter().any(|(key, value)| names_a_file(key) || figment_value_names_a_file(value))
    {
        load::<IngestConfig>(text);
        load::<PredictConfig>(text);
        load::<RetrainConfig>(text);
        load::<AgentConfig>(text);
    }
    // toml 1, straight into the types (their `#[serde(default)]`s fill in).
    if let Ok(doc) = toml::from_str::<toml::Table>(text)
        && !doc.iter().any(|(key, value)| names_a_file(key) || toml_value_names_a_file(value))
    {
        parse::<IngestConfig>(text);
        parse::<PredictConfig>(text);
        parse::<RetrainConfig>(text);
        parse::<AgentConfig>(text);
    }
});

fn load<C: ServiceConfig>(text: &str) {
    let loaded = Figment::from(Serialized::defaults(C::default())).merge(Toml::string(text)).extract::<C>();
    match loaded {
        Ok(config) => {
            let _ = config.validate().map_err(|e| e.to_string());
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

fn parse<C: ServiceConfig>(text: &str) {
    match toml::from_str::<C>(text) {
        Ok(config) => {
            let _ = config.validate().map_err(|e| e.to_string());
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

fn names_a_file(key: &str) -> bool {
    key.ends_with("_file")
}

fn figment_value_names_a_file(value: &figment::value::Value) -> bool {
    use figment::value::Value;
    match value {
        Value::Dict(_, dict) => dict.iter().any(|(k, v)| names_a_file(k) || figment_value_names_a_file(v)),
        Value::Array(_, items) => items.iter().any(figment_value_names_a_file),
        _ => false,
    }
}

fn toml_value_names_a_file(value: &toml::Value) -> bool {
    match value {
        toml::Value::Table(table) => table.iter().any(|(k, v)| names_a_file(k) || toml_value_names_a_file(v)),
        toml::Value::Array(items) => items.iter().any(toml_value_names_a_file),
        _ => false,
    }
}
