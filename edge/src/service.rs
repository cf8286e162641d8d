//! A running service's lifecycle, as mini-redis's `shutdown.rs` and
//! `DbDropGuard` do it: every task a service starts listens to one of its
//! [`Shutdown`] tokens, and dropping the `Shutdown` (on any exit path: a
//! start-up error halfway, a task's error, a dropped [`Service`]) cancels
//! all of them, so nothing runs on detached.
//!
//! A graceful stop goes in order: the driver first (it finishes its batch
//! and acks it), then the source (its last acks go out before the
//! disconnect), then sinks, uploaders and servers (whatever they had not
//! delivered stays spooled for the next start).

use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::config::MqttConfig;
use crate::driver::{Batching, Consumer, Driver};
use crate::source::mqtt::MqttSource;

/// The stop tokens of one service's tasks, by stopping order.
#[derive(Debug, Default)]
pub struct Shutdown {
    /// The driver (the stage loop) and the summary log.
    pub driver: CancellationToken,
    /// The MQTT source.
    pub source: CancellationToken,
    /// Sinks, uploaders, watchers, the HTTP server.
    pub helpers: CancellationToken,
}

impl Drop for Shutdown {
    fn drop(&mut self) {
        self.driver.cancel();
        self.source.cancel();
        self.helpers.cancel();
    }
}

/// Start a service's MQTT source and its recovered `driver` (taking
/// `events` between batches), and supervise them with the `helpers` already
/// running (sinks, uploaders, servers): what ingest and predict both do last
/// in their `start`. Returns the running [`Service`].
pub fn launch<C: Consumer>(
    mqtt: &MqttConfig,
    driver: Driver<C>,
    events: mpsc::Receiver<C::Event>,
    batching: Batching,
    shutdown: Shutdown,
    helpers: JoinSet<anyhow::Result<()>>,
    on_driver_end: impl FnOnce() + Send + 'static,
) -> Service {
    let source = MqttSource::new(mqtt);
    let client = source.client.clone();
    // Bounded by the broker's in-flight window long before this size.
    let (tx, rx) = mpsc::channel(65_536);
    let source = tokio::spawn(source.run(tx, driver.stats().clone(), shutdown.source.clone()));
    let driver = tokio::spawn(driver.run(rx, events, client, batching, shutdown.driver.clone()));
    let stop = shutdown.driver.clone();
    let task = tokio::spawn(supervise(shutdown, driver, source, helpers, on_driver_end));
    Service::new(stop, task)
}

/// Run a started service to its end: until its driver stops (asked to, or
/// on an error), or until a helper fails (a sink whose server refuses our
/// credentials, say: the service stops loudly, and what it had not
/// delivered stays spooled). Then stop the rest in order. `on_driver_end`
/// runs once the driver has stopped (to mark the service unhealthy).
pub async fn supervise(
    shutdown: Shutdown,
    mut driver: JoinHandle<anyhow::Result<()>>,
    mut source: JoinHandle<anyhow::Result<()>>,
    mut helpers: JoinSet<anyhow::Result<()>>,
    on_driver_end: impl FnOnce(),
) -> anyhow::Result<()> {
    let mut failed: Option<anyhow::Error> = None;
    let mut source_ended = false;
    let driver_result = loop {
        tokio::select! {
            result = &mut driver => break result,
            // The source ends before the driver only if it cannot run at all
            // (its TLS files became unreadable after the config was loaded).
            result = &mut source, if !source_ended => {
                source_ended = true;
                if let Err(error) = result.map_err(anyhow::Error::from).and_then(|r| r) {
                    tracing::error!(error = %format!("{error:#}"), "the MQTT source failed: stopping the service (undelivered data stays spooled)");
                    failed.get_or_insert(error);
                    shutdown.driver.cancel();
                }
            }
            Some(result) = helpers.join_next(), if failed.is_none() => {
                let error = match result {
                    Ok(Ok(())) => continue, // a helper that had nothing more to do
                    Ok(Err(e)) => e,
                    Err(e) => anyhow::Error::from(e),
                };
                tracing::error!(error = %format!("{error:#}"), "a part of the service failed: stopping it (undelivered data stays spooled)");
                failed = Some(error);
                shutdown.driver.cancel();
            }
        }
    };
    on_driver_end();
    shutdown.source.cancel();
    let source_result = if source_ended { Ok(Ok(())) } else { source.await };
    shutdown.helpers.cancel();
    while let Some(result) = helpers.join_next().await {
        let result = result.map_err(anyhow::Error::from).and_then(|r| r);
        if let (Err(e), None) = (result, &failed) {
            failed = Some(e);
        }
    }
    if let Some(error) = failed {
        return Err(error);
    }
    source_result??;
    driver_result?
}

/// A started service: the token that asks it to stop, and the task that
/// ends once every part of it has stopped. Dropping it stops it.
pub struct Service {
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Service {
    /// `task` supervises the service and owns its [`Shutdown`]; `stop` is
    /// the token that starts a graceful stop (its driver's).
    pub fn new(stop: CancellationToken, task: tokio::task::JoinHandle<anyhow::Result<()>>) -> Service {
        Service { stop, task: Some(task) }
    }

    /// Ask every task to stop, and wait until they have.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.task.take().expect("a running service").await?
    }

    /// Wait until the service ends on its own (an error) or `shutdown` fires.
    pub async fn run_until(mut self, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
        let mut task = self.task.take().expect("a running service");
        tokio::select! {
            result = &mut task => return result?,
            _ = shutdown => tracing::info!("shutting down: finishing the current batch"),
        }
        self.stop.cancel();
        task.await?
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        // The supervising task sees its driver stop and stops the rest.
        self.stop.cancel();
    }
}
