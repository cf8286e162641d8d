//! Publishing simulated readings to an MQTT broker, as the meter's gateway
//! would: one topic per sensor (`{prefix}/{sensor hex}`), raw binary payloads
//! (type 18), QoS 1 by default, paced at a chosen speed-up of real time.
//!
//! Delivery contract: at QoS 1, [`publish`] returns `Ok` only when the broker
//! has acknowledged every message, across disconnects and broker restarts
//! (at least once: a message in flight when the connection dropped is sent
//! again, so a subscriber may see it twice). If no acknowledgement arrives for
//! `ack_timeout` while messages are outstanding, it fails and says how many.
//! At QoS 0 a message counts as done when it has been written to the socket.
//!
//! How (rumqttc 0.25, read from its `eventloop.rs` and `state.rs`):
//! - a persistent session (clean_session false, fixed client id) and one task
//!   that keeps polling the event loop, with backoff after errors (rumqttc
//!   reconnects on the next poll, without any delay of its own);
//! - on a connection error rumqttc moves the un-acked publishes, and the
//!   requests still in its channel, to `EventLoop::pending`, and re-sends them
//!   after the next CONNACK, but only if the broker says `session_present`.
//!   A broker that restarted without persistence has no session, rumqttc then
//!   clears `pending`, and those messages would be lost without a word. So
//!   this module takes `pending` out after every error and puts it back after
//!   every CONNACK, whatever `session_present` says;
//! - our own flow control: at most `inflight` messages are handed to the
//!   client and not yet acknowledged (a semaphore whose permits come back with
//!   PUBACKs). rumqttc's own window is twice that, so packet ids are reused
//!   only long after they were acknowledged: with un-acked messages re-sent
//!   ahead of new ones, a packet-id collision (of which rumqttc keeps only
//!   one, dropping another) cannot happen.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS, Request};
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::batch::Batches;
use crate::generator::{RECORD_LEN, SimReading, encode_batch};
use crate::options::{PublishOptions, Qos};

/// A snapshot for the progress callback.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub messages_published: u64,
    pub messages_acked: u64,
    pub readings: u64,
    pub elapsed: Duration,
    pub reconnects: u64,
    pub connected: bool,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PublishReport {
    /// Messages handed to the client (each once, however often it was re-sent).
    pub messages_published: u64,
    /// Messages the broker acknowledged (QoS 1) or that were written (QoS 0).
    pub messages_acked: u64,
    pub readings: u64,
    /// From the first publish until the last acknowledgement.
    pub elapsed_secs: f64,
    pub messages_per_sec: f64,
    pub readings_per_sec: f64,
    /// Connections after the first one.
    pub reconnects: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("invalid publish option: {0}")]
    Options(String),
    #[error(
        "{unacked} of {published} messages still unacknowledged by the broker at {broker} after \
         {waited:?} without any acknowledgement (last connection error: {last_error}); is the \
         broker running and reachable? (raise --ack-timeout to wait longer)"
    )]
    AckTimeout { unacked: u64, published: u64, broker: String, waited: Duration, last_error: String },
    #[error("the MQTT client stopped unexpectedly: {0}")]
    ClientGone(String),
}

/// What the producer and the event-loop task share.
#[derive(Debug)]
struct Shared {
    /// Acknowledged (QoS 1) or written (QoS 0) messages.
    acked: AtomicU64,
    connacks: AtomicU64,
    connected: AtomicBool,
    last_error: Mutex<Option<String>>,
    /// One permit per message that may still be handed to the client.
    window: Semaphore,
}

impl Shared {
    fn reconnects(&self) -> u64 {
        self.connacks.load(Ordering::Relaxed).saturating_sub(1)
    }

    fn last_error(&self) -> String {
        self.last_error.lock().ok().and_then(|e| e.clone()).unwrap_or_else(|| "none".into())
    }
}

/// Aborts the event-loop task if `publish` is dropped half-way (e.g. the demo
/// shutting down), so no task lingers reconnecting forever.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The client handle, the task driving its event loop, and what they share.
struct Connection {
    client: AsyncClient,
    shared: Arc<Shared>,
    driver: AbortOnDrop,
    broker: String,
    qos: QoS,
    ack_timeout: Duration,
}

impl Connection {
    fn open(opts: &PublishOptions) -> Connection {
        let mut mqtt = MqttOptions::new(opts.client_id.clone(), opts.host.clone(), opts.port);
        mqtt.set_clean_session(false)
            .set_keep_alive(opts.keep_alive)
            .set_inflight(opts.inflight * 2)
            .set_max_packet_size(64 * 1024, opts.readings_per_message * RECORD_LEN + 64 * 1024);
        // The window keeps the channel from ever holding more than `inflight` requests.
        let (client, eventloop) = AsyncClient::new(mqtt, opts.inflight as usize + 16);
        let shared = Arc::new(Shared {
            acked: AtomicU64::new(0),
            connacks: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            last_error: Mutex::new(None),
            window: Semaphore::new(opts.inflight as usize),
        });
        let driver = AbortOnDrop(tokio::spawn(drive(
            eventloop,
            shared.clone(),
            opts.qos,
            opts.backoff_min,
            opts.backoff_max.max(opts.backoff_min),
        )));
        Connection {
            client,
            shared,
            driver,
            broker: format!("{}:{}", opts.host, opts.port),
            qos: opts.qos.mqtt(),
            ack_timeout: opts.ack_timeout,
        }
    }

    /// Hand one message to the client once the window has room (waiting at
    /// most `ack_timeout` for an acknowledgement to make some).
    async fn send(&self, topic: String, payload: Vec<u8>, published: u64) -> Result<(), PublishError> {
        match tokio::time::timeout(self.ack_timeout, self.shared.window.acquire()).await {
            Ok(Ok(permit)) => permit.forget(),
            Ok(Err(_)) => {
                return Err(PublishError::ClientGone("the flow-control window closed".into()));
            }
            Err(_) => return Err(self.timeout_error(published)),
        }
        self.client.publish(topic, self.qos, false, payload).await.map_err(|e| PublishError::ClientGone(e.to_string()))
    }

    fn acked(&self) -> u64 {
        self.shared.acked.load(Ordering::Relaxed)
    }

    fn progress(&self, published: u64, readings: u64, started: Instant) -> Progress {
        Progress {
            messages_published: published,
            messages_acked: self.acked(),
            readings,
            elapsed: started.elapsed(),
            reconnects: self.shared.reconnects(),
            connected: self.shared.connected.load(Ordering::Relaxed),
        }
    }

    fn timeout_error(&self, published: u64) -> PublishError {
        PublishError::AckTimeout {
            unacked: published.saturating_sub(self.acked()),
            published,
            broker: self.broker.clone(),
            waited: self.ack_timeout,
            last_error: self.shared.last_error(),
        }
    }

    /// Wait until all `published` messages are acknowledged; fail only when
    /// none arrives for `ack_timeout`. `tick` runs every couple of ms.
    async fn wait_all_acked(&self, published: u64, mut tick: impl FnMut()) -> Result<(), PublishError> {
        let mut last_acked = self.acked();
        let mut last_change = Instant::now();
        loop {
            let acked = self.acked();
            if acked >= published {
                return Ok(());
            }
            let now = Instant::now();
            if acked != last_acked {
                (last_acked, last_change) = (acked, now);
            } else if now.duration_since(last_change) >= self.ack_timeout {
                return Err(self.timeout_error(published));
            }
            tick();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Everything is acknowledged; a polite DISCONNECT is a courtesy, not a
    /// requirement, so a broker gone by now does not make the run fail.
    async fn close(mut self) {
        let _ = self.client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut self.driver.0).await;
    }
}

/// Sleeps so that messages go out at `speedup` times real time.
struct Pacer {
    speedup: f64,
    started: Instant,
    first_ts: Option<f64>,
}

impl Pacer {
    /// Wait until a message whose last reading is at `ts_secs` is due: when
    /// that reading would have been taken, counted from the first one. Sleeps
    /// only when ahead by a couple of milliseconds, so at high speed-ups one
    /// sleep covers many messages.
    async fn wait(&mut self, ts_secs: f64) {
        if self.speedup <= 0.0 {
            return;
        }
        let ts0 = *self.first_ts.get_or_insert(ts_secs);
        // Duration::from_secs_f64 panics on NaN, negative or huge values.
        let offset = (ts_secs - ts0) / self.speedup;
        let offset = if offset.is_finite() { offset.clamp(0.0, 1e9) } else { 0.0 };
        let due = self.started + Duration::from_secs_f64(offset);
        if due > Instant::now() + Duration::from_millis(2) {
            tokio::time::sleep_until(due).await;
        }
    }
}

/// Publish `readings` (in time order, e.g. [`super::Generator::readings`]),
/// grouped `readings_per_message` at a time per sensor, and wait until the
/// broker has acknowledged them all. `progress` is called about every
/// `progress_interval` and once at the end.
pub async fn publish<I, F>(opts: &PublishOptions, readings: I, mut progress: F) -> Result<PublishReport, PublishError>
where
    I: IntoIterator<Item = SimReading>,
    F: FnMut(&Progress),
{
    opts.check()?;
    let conn = Connection::open(opts);
    let started = Instant::now();
    let mut pacer = Pacer { speedup: opts.speedup, started, first_ts: None };
    let mut topics: HashMap<[u8; 12], String> = HashMap::new();
    let (mut published, mut readings_sent) = (0u64, 0u64);
    let mut next_progress = started + opts.progress_interval;
    let mut report_progress = |published: u64, readings: u64| {
        let now = Instant::now();
        if now >= next_progress {
            progress(&conn.progress(published, readings, started));
            next_progress = now + opts.progress_interval;
        }
    };

    for batch in Batches::new(readings.into_iter(), opts.readings_per_message) {
        let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
            continue;
        };
        pacer.wait(last.ts_secs).await;
        let topic = topics.entry(first.sensor).or_insert_with(|| opts.topic(&first.sensor)).clone();
        conn.send(topic, encode_batch(&batch), published).await?;
        published += 1;
        readings_sent += batch.len() as u64;
        report_progress(published, readings_sent);
    }
    conn.wait_all_acked(published, || report_progress(published, readings_sent)).await?;
    let elapsed = started.elapsed();
    let last = conn.progress(published, readings_sent, started);
    progress(&last);
    conn.close().await;

    let secs = elapsed.as_secs_f64();
    let rate = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
    Ok(PublishReport {
        messages_published: published,
        messages_acked: last.messages_acked.min(published),
        readings: readings_sent,
        elapsed_secs: secs,
        messages_per_sec: rate(published),
        readings_per_sec: rate(readings_sent),
        reconnects: last.reconnects,
    })
}

/// Keeps the event loop turning: counts acknowledgements into the window,
/// waits with backoff after errors, and makes sure un-acked publishes are
/// re-sent after every reconnection (see the module notes).
async fn drive(mut eventloop: EventLoop, shared: Arc<Shared>, qos: Qos, backoff_min: Duration, backoff_max: Duration) {
    // Un-acked publishes and unsent requests taken out of rumqttc's `pending`
    // after an error, until the next CONNACK.
    let mut saved: VecDeque<Request> = VecDeque::new();
    let mut backoff = backoff_min;
    let acked = |shared: &Shared| {
        shared.acked.fetch_add(1, Ordering::Relaxed);
        shared.window.add_permits(1);
    };
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(connack))) => {
                if !saved.is_empty() {
                    let publishes = saved.iter().filter(|r| matches!(r, Request::Publish(_))).count();
                    tracing::info!(
                        publishes,
                        session_present = connack.session_present,
                        "reconnected to the broker; re-sending what was not acknowledged"
                    );
                    saved.extend(eventloop.pending.drain(..));
                    eventloop.pending = std::mem::take(&mut saved);
                }
                shared.connacks.fetch_add(1, Ordering::Relaxed);
                shared.connected.store(true, Ordering::Relaxed);
                backoff = backoff_min;
            }
            Ok(Event::Incoming(Packet::PubAck(_))) if qos == Qos::AtLeastOnce => acked(&shared),
            Ok(Event::Outgoing(Outgoing::Publish(_))) if qos == Qos::AtMostOnce => acked(&shared),
            Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
            Ok(_) => {}
            // The client handle was dropped: publish() is finished or was cancelled.
            Err(ConnectionError::RequestsDone) => break,
            Err(e) => {
                saved.extend(eventloop.pending.drain(..));
                let message = e.to_string();
                if shared.connected.swap(false, Ordering::Relaxed) {
                    tracing::warn!(error = %message, "lost the broker connection; reconnecting");
                } else {
                    tracing::debug!(error = %message, ?backoff, "broker connection failed; retrying");
                }
                if let Ok(mut last) = shared.last_error.lock() {
                    *last = Some(message);
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(backoff_max);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unreachable_broker_times_out_naming_the_unacked_count() {
        // Port 1 on localhost: nothing listens, every connect is refused.
        let opts = PublishOptions {
            port: 1,
            speedup: 0.0,
            inflight: 5,
            ack_timeout: Duration::from_millis(300),
            ..Default::default()
        };
        let reading = SimReading { sensor: [0; 12], ts_secs: 0.0, p_milli: [0; 3], q_milli: [0; 3] };
        let err = publish(&opts, std::iter::repeat_n(reading, 20), |_| {}).await.unwrap_err();
        match &err {
            PublishError::AckTimeout { unacked, published, .. } => assert_eq!((*unacked, *published), (5, 5)),
            other => panic!("{other}"),
        }
        assert!(err.to_string().contains("5 of 5 messages still unacknowledged"), "{err}");
    }
}
