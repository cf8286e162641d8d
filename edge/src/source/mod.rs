//! Sources: where readings come from. Today only MQTT.

pub mod mqtt;
