//! Sources: where readings come from. Today only MQTT (over TCP or TLS).

pub mod mqtt;
pub mod tls;
