//! The uploader: triplet batches from the spool to blob storage.
//!
//! Loop: take the next batch ([`TripletQueue::next_batch`]: the same bounds
//! until it is stored, even across restarts), encode it as compressed NDJSON,
//! put it under the key made from its bounds with `PutMode::Overwrite`, and
//! only then delete it from the spool. A failed put is retried with
//! exponential backoff for as long as it takes; the spool holds the
//! triplets meanwhile. A retry after a put that did succeed (but whose reply
//! was lost, or whose process was killed before the delete) writes the same
//! bytes to the same key: no triplet is ever stored twice.

use std::sync::Arc;
use std::time::Duration;

use gridcast_edge::backoff::Backoff;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::UploadConfig;
use crate::metrics::Metrics;
use crate::spool::TripletQueue;
use crate::store;
use crate::triplet::{encode_batch, object_key};

pub struct Uploader {
    pub store: Arc<dyn ObjectStore>,
    pub base: object_store::path::Path,
    pub config: UploadConfig,
    pub url: String,
}

impl Uploader {
    pub fn new(config: &UploadConfig) -> anyhow::Result<Uploader> {
        let (store, base) = store::open_with(&config.url, &config.options)?;
        Ok(Uploader { store, base, config: config.clone(), url: config.url.clone() })
    }

    /// Run until `shutdown`. `wake` is notified when triplets were spooled.
    pub async fn run(
        self,
        spool: Arc<TripletQueue>,
        wake: Arc<Notify>,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let mut backoff = Backoff::new(self.config.retry_min_ms, self.config.retry_max_ms);
        let interval = Duration::from_secs(self.config.batch_interval_secs.max(1));
        let mut waited = Duration::ZERO;
        loop {
            metrics.triplet_spool_depth.store(spool.depth(), std::sync::atomic::Ordering::Relaxed);
            // Upload when a full batch waits, or the interval passed with any.
            let depth = spool.depth();
            let due = depth > 0 && (depth >= self.config.batch_max as u64 || waited >= interval);
            if !due {
                let tick = Duration::from_millis(500).min(interval);
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(tick) => waited += tick,
                }
                continue;
            }
            waited = Duration::ZERO;
            let s = spool.clone();
            let max = self.config.batch_max;
            let Some(batch) = tokio::task::spawn_blocking(move || s.next_batch(max)).await?? else {
                continue;
            };
            let key = object_key(
                &self.config.prefix,
                &self.config.device,
                batch.first_interval_ms,
                spool.created_ms(),
                (batch.first, batch.last),
                self.config.compression,
            );
            let body = encode_batch(&batch.lines, self.config.compression)?;
            let path = store::join(&self.base, &key);
            loop {
                let put = self.store.put_opts(
                    &path,
                    PutPayload::from(body.clone()),
                    PutOptions { mode: PutMode::Overwrite, ..Default::default() },
                );
                let result = tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()), // the batch stays spooled
                    r = tokio::time::timeout(Duration::from_secs(60), put) => r,
                };
                match result {
                    Ok(Ok(_)) => break,
                    Ok(Err(e)) => self.failed(&mut backoff, &metrics, &path, &e.to_string()),
                    Err(_) => self.failed(&mut backoff, &metrics, &path, "timed out after 60 s"),
                }
                let delay = backoff.next_delay();
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(delay) => {}
                }
            }
            if backoff.attempts() > 0 {
                tracing::info!(store = %self.url, "blob store is back: spooled triplets are being uploaded");
                backoff.reset();
            }
            let count = batch.last - batch.first + 1;
            let (s, first, last) = (spool.clone(), batch.first, batch.last);
            tokio::task::spawn_blocking(move || s.complete_batch(first, last)).await??;
            Metrics::inc(&metrics.uploads);
            Metrics::add(&metrics.uploaded_triplets, batch.lines.len() as u64);
            tracing::info!(key = %path, triplets = batch.lines.len(), seqs = count, bytes = body.len(), "uploaded triplets");
        }
    }

    fn failed(&self, backoff: &mut Backoff, metrics: &Metrics, path: &object_store::path::Path, error: &str) {
        Metrics::inc(&metrics.upload_failures);
        if backoff.attempts() == 0 || (backoff.attempts() + 1).is_multiple_of(10) {
            tracing::warn!(store = %self.url, key = %path, %error, attempt = backoff.attempts() + 1,
                "triplet upload failed; the batch waits in the spool and is retried under the same key");
        }
    }
}
