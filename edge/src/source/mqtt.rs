//! The MQTT source: owns rumqttc's event loop and hands every incoming
//! publish to the pipeline, un-acknowledged. The pipeline acknowledges each
//! message only after its payload is durably in the spool, so the broker
//! redelivers whatever we had not secured when we died.
//!
//! rumqttc reconnects on the next `poll` after an error, but at once and
//! forever; we wait with exponential backoff in between. It also does not
//! restore subscriptions, and a broker may have lost them (a `$share`
//! subscription was lost on a Mosquitto restart even with session_present),
//! so we subscribe again on every ConnAck.
//!
//! With `[mqtt] tls` the connection is TLS (see `tls.rs`). A refusal that
//! needs a person (an untrusted or expired certificate, a wrong password)
//! is logged at error level with what to fix, and retried like any other
//! failure: the broker or the files may be fixed while we wait.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{
    AsyncClient, Event, EventLoop, MqttOptions, Packet, Publish, QoS, SubscribeFilter, TlsConfiguration, Transport,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::config::MqttConfig;
use crate::source::tls::{self, TlsSetupError};
use crate::stats::Stats;

/// A connected-on-demand client and its event loop.
pub struct MqttSource {
    pub client: AsyncClient,
    eventloop: EventLoop,
    topics: Vec<String>,
    backoff: Backoff,
    /// What error messages refer to (host, port, file paths; no secrets).
    config: MqttConfig,
    /// TLS files that could not be read here although the config's
    /// validation read them: `run` fails with this at once.
    setup_error: Option<TlsSetupError>,
}

impl MqttSource {
    /// Configure the session: fixed client id, persistent session, manual
    /// acks, and TLS if configured.
    pub fn new(config: &MqttConfig) -> MqttSource {
        let mut options = MqttOptions::new(&config.client_id, &config.host, config.port);
        options
            .set_keep_alive(Duration::from_secs(config.keep_alive_secs.max(5)))
            .set_clean_session(false)
            .set_manual_acks(true)
            .set_max_packet_size(config.max_packet_bytes, config.max_packet_bytes);
        if let (Some(user), Some(pass)) = (&config.username, &config.password) {
            options.set_credentials(user, pass.expose());
        }
        let setup_error = match tls::client_config(config) {
            Ok(Some(client_config)) => {
                options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(client_config)));
                None
            }
            Ok(None) => None,
            Err(e) => Some(e),
        };
        // The request channel carries our acks; the broker never has more
        // than its in-flight limit un-acked, so this bound is never reached.
        let (client, eventloop) = AsyncClient::new(options, 65_536);
        MqttSource {
            client,
            eventloop,
            topics: config.topics.clone(),
            backoff: Backoff::new(config.reconnect_min_ms, config.reconnect_max_ms),
            config: MqttConfig { password: None, ..config.clone() },
            setup_error,
        }
    }

    /// Poll the event loop until `shutdown`, sending publishes to `out`.
    pub async fn run(
        mut self,
        out: mpsc::Sender<Publish>,
        stats: Arc<Stats>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        if let Some(error) = self.setup_error.take() {
            return Err(error.into());
        }
        loop {
            let event = tokio::select! {
                _ = shutdown.cancelled() => break,
                event = self.eventloop.poll() => event,
            };
            match event {
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    if out.send(publish).await.is_err() {
                        break; // the pipeline is gone: we are shutting down
                    }
                }
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    tracing::info!(session_present = ack.session_present, topics = ?self.topics, "connected to MQTT broker");
                    self.backoff.reset();
                    stats.mqtt_connected(crate::driver::now_ms());
                    self.subscribe()?;
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    let refused =
                        ack.return_codes.iter().filter(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure)).count();
                    if refused > 0 {
                        tracing::error!(refused, "the broker refused {refused} of our subscriptions: check its ACLs");
                    } else {
                        Stats::add(&stats.mqtt_subscriptions, 1);
                        tracing::info!(topics = ?self.topics, "subscribed");
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    stats.mqtt_disconnected();
                    Stats::add(&stats.mqtt_reconnects, 1);
                    let delay = self.backoff.next_delay();
                    let retry_in_ms = delay.as_millis() as u64;
                    match tls::explain(&e, &self.config) {
                        Some(why) => tracing::error!(
                            error = %e,
                            retry_in_ms,
                            "cannot connect to the MQTT broker at {}:{}: {why}; retrying",
                            self.config.host,
                            self.config.port
                        ),
                        None => tracing::warn!(error = %e, retry_in_ms, "MQTT connection lost; reconnecting"),
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
        // Say goodbye properly so the broker keeps the session without a will.
        // Acks the pipeline queued last go out before the disconnect.
        let _ = self.client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            while let Ok(event) = self.eventloop.poll().await {
                if matches!(event, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
                    break;
                }
            }
        })
        .await;
        Ok(())
    }

    fn subscribe(&self) -> anyhow::Result<()> {
        let filters = self.topics.iter().map(|t| SubscribeFilter::new(t.clone(), QoS::AtLeastOnce));
        self.client
            .try_subscribe_many(filters)
            .map_err(|e| anyhow::anyhow!("cannot queue MQTT subscribe for {:?}: {e}", self.topics))
    }
}
