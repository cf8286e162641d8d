//! How the simulator publishes: broker, session, topics, QoS, pace and flow
//! control, kept apart from the publishing itself (`publish.rs`). The CLI
//! fills it from `SimulateArgs`; the demo and tests build it directly.

use std::time::Duration;

use rumqttc::QoS;

use crate::generator::sensor_hex;
use crate::publish::PublishError;

/// The delivery guarantee asked of the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qos {
    /// QoS 0: fire and forget.
    AtMostOnce,
    /// QoS 1: every message acknowledged by the broker (the default).
    AtLeastOnce,
}

impl Qos {
    pub(super) fn mqtt(self) -> QoS {
        match self {
            Qos::AtMostOnce => QoS::AtMostOnce,
            Qos::AtLeastOnce => QoS::AtLeastOnce,
        }
    }
}

/// How to publish. [`PublishOptions::default`] is the meter's gateway against
/// a local broker, in real time.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishOptions {
    pub host: String,
    pub port: u16,
    /// Fixed, so the broker keeps our session across reconnects.
    pub client_id: String,
    /// Messages go to `{topic_prefix}/{sensor hex}`.
    pub topic_prefix: String,
    pub qos: Qos,
    /// Multiple of real time: 1.0 = 12 readings per second per sensor; 0 = as
    /// fast as the broker takes them.
    pub speedup: f64,
    /// Readings per message, all of one sensor (12 = one second).
    pub readings_per_message: usize,
    /// Most messages handed to the client and not yet acknowledged.
    pub inflight: u16,
    /// How long to wait for any acknowledgement while messages are
    /// outstanding before giving up.
    pub ack_timeout: Duration,
    /// MQTT keep-alive (0 or at least 1 s).
    pub keep_alive: Duration,
    /// First and longest wait between reconnection attempts (doubling).
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// How often the progress callback is called.
    pub progress_interval: Duration,
}

impl Default for PublishOptions {
    fn default() -> Self {
        PublishOptions {
            host: "127.0.0.1".into(),
            port: 1883,
            client_id: "gridcast-simulator".into(),
            topic_prefix: "data/realtime/feature/raw".into(),
            qos: Qos::AtLeastOnce,
            speedup: 1.0,
            readings_per_message: 1,
            inflight: 1000,
            ack_timeout: Duration::from_secs(60),
            keep_alive: Duration::from_secs(30),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            progress_interval: Duration::from_secs(1),
        }
    }
}

impl PublishOptions {
    /// The topic of one sensor's messages.
    pub fn topic(&self, sensor: &[u8; 12]) -> String {
        format!("{}/{}", self.topic_prefix.trim_end_matches('/'), sensor_hex(sensor))
    }

    /// Reject what would make rumqttc panic or the run meaningless.
    pub(super) fn check(&self) -> Result<(), PublishError> {
        let bad = |what: String| Err(PublishError::Options(what));
        if !(self.speedup.is_finite() && self.speedup >= 0.0) {
            return bad(format!("speedup must be 0 (as fast as possible) or positive, not {}", self.speedup));
        }
        if self.readings_per_message == 0 || self.readings_per_message > 100_000 {
            return bad(format!("readings per message must be 1..=100000, not {}", self.readings_per_message));
        }
        if self.inflight == 0 || self.inflight > u16::MAX / 2 {
            return bad(format!("inflight must be 1..={}, not {}", u16::MAX / 2, self.inflight));
        }
        if self.client_id.is_empty() {
            return bad("the client id must not be empty: the broker keeps our session under it".into());
        }
        if !self.keep_alive.is_zero() && self.keep_alive < Duration::from_secs(1) {
            return bad(format!("keep-alive must be 0 or at least 1 s, not {:?}", self.keep_alive));
        }
        if self.topic_prefix.contains(['+', '#']) {
            return bad(format!("topic prefix {:?} must not contain wildcards", self.topic_prefix));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_is_prefix_and_sensor_hex() {
        let opts = PublishOptions { topic_prefix: "data/realtime/feature/raw/".into(), ..Default::default() };
        assert_eq!(opts.topic(b"gridcast\0\0\0\x02"), "data/realtime/feature/raw/677269646361737400000002");
    }

    #[test]
    fn options_that_would_panic_in_rumqttc_are_errors() {
        let cases = [
            PublishOptions { client_id: String::new(), ..Default::default() },
            PublishOptions { keep_alive: Duration::from_millis(500), ..Default::default() },
            PublishOptions { inflight: 0, ..Default::default() },
            PublishOptions { speedup: f64::NAN, ..Default::default() },
            PublishOptions { speedup: -1.0, ..Default::default() },
            PublishOptions { readings_per_message: 0, ..Default::default() },
            PublishOptions { topic_prefix: "a/#".into(), ..Default::default() },
        ];
        for opts in cases {
            assert!(matches!(opts.check(), Err(PublishError::Options(_))), "{opts:?}");
        }
        assert!(PublishOptions::default().check().is_ok());
    }
}
