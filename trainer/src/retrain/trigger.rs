//! When a retrain runs, besides the one-shot CLI:
//!
//! - `--every 6h`: on a schedule. It runs, logs when the next run is, and
//!   sleeps until then.
//! - `--when-mispredictions N`: it watches the bucket the predictor uploads
//!   to, counts the triplets in objects it has not counted before, and
//!   retrains once N arrived since the last retrain.
//!
//! Both can be given; a retrain runs when either is due. The watcher polls
//! one loop, so a trigger that fires while a retrain runs cannot start a
//! second one; a lock on the state file keeps two watchers (or a watcher and
//! a cron job with the same config) from retraining at once.
//!
//! The watcher remembers where it was in a state file (`[trigger] state`):
//! per device, the last object key it counted (the predictor's keys sort in
//! upload order within a device: date, then spool, then sequence), and the
//! triplets counted since the last retrain. The count is reset only after a
//! retrain finished, so a watcher killed mid-retrain retrains again on
//! restart rather than forgetting the triplets (at least once).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use futures::TryStreamExt;
use gridcast_edge::store;
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};

use super::config::{RetrainConfig, TripletsConfig};
use super::triplets::{self, TripletTally};

/// Where the watcher was, kept across restarts.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct WatchState {
    /// Per device (`device=<name>`), the last object key counted.
    pub counted_up_to: BTreeMap<String, String>,
    /// Triplets counted since the last retrain.
    pub since_retrain: u64,
    /// Unix seconds of the last retrain that finished (0: none yet).
    pub last_retrain: i64,
}

impl WatchState {
    /// The state in `path`, or a fresh one when there is no file yet.
    pub fn load(path: &Path) -> anyhow::Result<WatchState> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not a retrain state file (delete it to start over)", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(WatchState::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Write the state: a temp file, synced, renamed over the old one.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let temp = path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&temp)?;
            std::io::Write::write_all(&mut file, &serde_json::to_vec_pretty(self).expect("state serializes"))?;
            file.sync_all()?;
            std::fs::rename(&temp, path)
        };
        write().with_context(|| format!("writing {}", path.display()))
    }
}

/// Count the triplets in objects not counted yet, and move the marks.
/// Returns how many were new.
pub async fn count_new(config: &TripletsConfig, state: &mut WatchState) -> anyhow::Result<u64> {
    let url = config.store.as_deref().context("--when-mispredictions needs [triplets] store")?;
    let (bucket, base) = store::open_with(url, &config.options)?;
    let mut new = 0;
    for (name, device) in triplets::device_folders(bucket.as_ref(), &base, config).await? {
        let mark = state.counted_up_to.get(&name).cloned().unwrap_or_default();
        let mut keys: Vec<String> = bucket
            .list(Some(&device))
            .map_ok(|o| o.location.to_string())
            .try_filter(|k| futures::future::ready(*k > mark))
            .try_collect()
            .await?;
        keys.sort();
        for key in &keys {
            let bytes = bucket.get(&key.as_str().into()).await?.bytes().await?;
            let mut tally = TripletTally::default();
            match triplets::decompress(key, &bytes) {
                Ok(raw) => {
                    triplets::parse_lines(&raw, &mut tally);
                }
                Err(e) => tracing::warn!(key, error = %e, "triplets object does not decompress; not counted"),
            }
            new += tally.triplets;
        }
        if let Some(last) = keys.last() {
            state.counted_up_to.insert(name, last.clone());
        }
    }
    state.since_retrain += new;
    Ok(new)
}

/// The triggers asked for on the command line.
#[derive(Debug, Clone, Default)]
pub struct Triggers {
    pub every: Option<Duration>,
    pub when_mispredictions: Option<u64>,
    /// How often the bucket is polled for new triplets.
    pub poll: Duration,
}

/// Run retrains as the triggers say until `shutdown`. A failed retrain is
/// logged and tried again at the next trigger; it never ends the loop.
pub async fn watch(
    config: &RetrainConfig,
    triggers: &Triggers,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let state_path = config.trigger.state.clone();
    let _lock = lock(&state_path)?;
    let mut state = WatchState::load(&state_path)?;
    tokio::pin!(shutdown);
    let mut next_scheduled = triggers.every.map(|_| tokio::time::Instant::now());
    loop {
        let mut fire = None;
        if let Some(n) = triggers.when_mispredictions {
            match count_new(&config.triplets, &mut state).await {
                Ok(new) => {
                    state.save(&state_path)?;
                    if new > 0 {
                        tracing::info!(new, since_retrain = state.since_retrain, threshold = n, "new mispredictions");
                    }
                    if state.since_retrain >= n {
                        fire = Some("mispredictions");
                    }
                }
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "cannot count mispredictions now; will retry"),
            }
        }
        if next_scheduled.is_some_and(|at| at <= tokio::time::Instant::now()) {
            fire = fire.or(Some("schedule"));
        }
        if let Some(trigger) = fire {
            let counted = state.since_retrain;
            tracing::info!(trigger, since_retrain = counted, "retrain starts");
            match super::retrain_and_report(config, trigger).await {
                Ok(outcome) => {
                    if let Some(message) = outcome.not_shipped() {
                        tracing::error!(trigger, "{message}; the next model that ships is pushed");
                    }
                    state.since_retrain -= counted.min(state.since_retrain);
                    state.last_retrain = chrono::Utc::now().timestamp();
                    state.save(&state_path)?;
                }
                Err(e) => {
                    tracing::error!(trigger, error = %format!("{e:#}"), "retrain failed; the champion keeps serving")
                }
            }
            if let (Some(every), Some(at)) = (triggers.every, next_scheduled.as_mut()) {
                if trigger == "schedule" || *at <= tokio::time::Instant::now() {
                    *at = tokio::time::Instant::now() + every;
                }
                let when = chrono::Utc::now() + chrono::Duration::from_std(every).unwrap_or_default();
                tracing::info!(next = %when.to_rfc3339_opts(chrono::SecondsFormat::Secs, true), "next scheduled retrain");
            }
        }
        let mut wait = if triggers.when_mispredictions.is_some() { triggers.poll } else { Duration::from_secs(3600) };
        if let Some(at) = next_scheduled {
            wait = wait.min(at.saturating_duration_since(tokio::time::Instant::now()));
        }
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// An exclusive lock beside the state file, held while the watcher runs.
fn lock(state: &Path) -> anyhow::Result<std::fs::File> {
    if let Some(dir) = state.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let path = PathBuf::from(format!("{}.lock", state.display()));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            anyhow::bail!("another retrain holds {}: not starting a second one", path.display())
        }
        Err(std::fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("locking {}", path.display())),
    }
}

/// `90s`, `30m`, `6h`, `1d` (a number and a unit).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: u64 = number.parse().map_err(|_| format!("{s:?} is not a duration like 90s, 30m, 6h or 1d"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("{s:?}: the unit must be s, m, h or d (e.g. 6h)")),
    };
    if secs == 0 {
        return Err("a duration must be more than 0".into());
    }
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(parse_duration("6h"), Ok(Duration::from_secs(21_600)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert!(parse_duration("6").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("0m").is_err());
    }

    #[test]
    fn the_state_survives_a_restart_and_a_second_watcher_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert_eq!(WatchState::load(&path).unwrap(), WatchState::default());
        let state = WatchState {
            counted_up_to: [("device=a".to_string(), "k".to_string())].into(),
            since_retrain: 7,
            last_retrain: 0,
        };
        state.save(&path).unwrap();
        assert_eq!(WatchState::load(&path).unwrap(), state);
        let held = lock(&path).unwrap();
        assert!(lock(&path).unwrap_err().to_string().contains("another retrain"));
        drop(held);
        lock(&path).unwrap();
    }
}
