//! Per-minute event-time windows: the step between decoding and InfluxDB.
//!
//! The ingest loop pushes every decoded [`Reading`] into [`Windows`], then
//! drains the windows that can no longer change and writes one point per
//! closed window (mean, min, max, count per field). Windows are kept per
//! [`WindowKey`] (sensor and source), aligned to multiples of the width in
//! event time (the meter's clock, not ours).
//!
//! A key's watermark is the newest event time seen for it minus the allowed
//! lateness; a window closes once its end is at or below the watermark. Once
//! closed, its results are final: a reading that would fall into an already
//! closed stretch of time is reported as [`Push::Late`] instead of silently
//! reopening it. That frontier is kept per key and can be persisted and
//! restored ([`Windows::frontiers`], [`Windows::restore_frontier`]) so a
//! restart does not write a second, partial point for a minute already written.
//!
//! Pure state: the caller supplies arrival times and the clock for idle closing.

mod stats;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};

pub use stats::FieldStats;
use stats::OpenWindow;

use crate::reading::{Field, PhaseSum, Reading, SensorId, Source};

/// Window width and allowed lateness; part of the ingest config file.
#[derive(Debug, Clone, Copy, serde::Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WindowConfig {
    /// Window width in seconds (default 60).
    pub width_secs: u32,
    /// How far behind the newest reading of a key a reading may be and still
    /// be merged (default 5 s): covers batching and reordering in the broker.
    pub lateness_secs: u32,
    /// Most keys (sensor and source) kept; a reading of a new key beyond
    /// that is refused and counted ([`Push::KeyLimit`]), so a flood of
    /// sensor ids (a new one per message) cannot grow memory without end.
    pub max_keys: usize,
    /// A reading this many seconds ahead of its key's newest one, beyond
    /// the wall-clock time that passed between them, is a meter clock that
    /// jumped forward (default 600; 0: never): refused ([`Push::ClockJump`])
    /// so it does not close the key's windows an hour early, and make the
    /// readings after the clock comes back late.
    pub clock_jump_secs: u32,
    /// A jumped clock that stays jumped this long (wall clock, default 120)
    /// was set, not glitched: its readings are accepted from then on.
    pub clock_jump_accept_secs: u32,
}

/// Default [`WindowConfig::max_keys`]: 10,000 meters with all three sources.
pub const DEFAULT_MAX_KEYS: usize = 30_000;

impl Default for WindowConfig {
    fn default() -> Self {
        WindowConfig {
            width_secs: 60,
            lateness_secs: 5,
            max_keys: DEFAULT_MAX_KEYS,
            clock_jump_secs: 600,
            clock_jump_accept_secs: 120,
        }
    }
}

impl WindowConfig {
    /// A zero width cannot work; [`Windows::new`] cannot fail, so config
    /// loading should call this (`new` treats 0 as 1 s rather than panic).
    pub fn validate(&self) -> Result<(), WindowConfigError> {
        if self.width_secs == 0 {
            return Err(WindowConfigError::ZeroWidth);
        }
        if self.max_keys == 0 {
            return Err(WindowConfigError::NoKeys);
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum WindowConfigError {
    #[error("window width_secs must be at least 1")]
    ZeroWidth,
    #[error("window max_keys must be at least 1")]
    NoKeys,
}

/// What happened to a pushed reading.
#[must_use = "late readings are dropped; the caller is expected to count them"]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    Accepted,
    /// The reading's time is before its key's frontier: its window was
    /// already closed and written. Not merged.
    Late {
        window_start_ms: i64,
        closed_until_ms: i64,
    },
    /// The reading's window already has a reading of this key with the same
    /// timestamp: a redelivery (MQTT QoS 1 is at-least-once). Not merged.
    Duplicate,
    /// The reading's key is new and [`WindowConfig::max_keys`] keys are
    /// kept already. Not merged.
    KeyLimit,
    /// The reading is `ahead_ms` ahead of its key's newest reading, more
    /// than the wall clock moved and by over [`WindowConfig::clock_jump_secs`]:
    /// the meter's clock jumped forward. Not merged, and it does not move
    /// the key's watermark.
    ClockJump {
        ahead_ms: i64,
    },
}

/// Windows are kept apart per sensor and per source.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WindowKey {
    pub sensor: SensorId,
    pub source: Source,
}

impl WindowKey {
    /// The key as one string, for a spool's table key: sensor and source,
    /// separated by the ASCII unit separator (no sensor id contains it).
    pub fn encode(&self) -> String {
        format!("{}\u{1f}{}", self.sensor, self.source.name())
    }

    /// The inverse of [`WindowKey::encode`]; `None` for anything else.
    pub fn decode(s: &str) -> Option<WindowKey> {
        let (sensor, source) = s.split_once('\u{1f}')?;
        Some(WindowKey { sensor: SensorId::new(sensor), source: Source::from_name(source)? })
    }
}

/// A window that will not change any more: its statistics, ready to write.
#[derive(Debug, Clone, PartialEq)]
pub struct ClosedWindow {
    pub key: WindowKey,
    pub start_ms: i64,
    pub width_ms: i64,
    /// Readings merged into this window.
    pub readings: u64,
    /// Fields present in at least one reading, in field order.
    pub fields: Vec<(Field, FieldStats)>,
    /// Phase sums present in at least one reading, in `PhaseSum::ALL` order.
    pub sums: Vec<(PhaseSum, FieldStats)>,
}

impl ClosedWindow {
    pub fn end_ms(&self) -> i64 {
        self.start_ms.saturating_add(self.width_ms)
    }

    pub fn field(&self, field: Field) -> Option<&FieldStats> {
        self.fields.iter().find(|(f, _)| *f == field).map(|(_, s)| s)
    }

    pub fn sum(&self, sum: PhaseSum) -> Option<&FieldStats> {
        self.sums.iter().find(|(p, _)| *p == sum).map(|(_, s)| s)
    }
}

#[derive(Debug)]
struct KeyState {
    key: WindowKey,
    /// Readings before this are late; `i64::MIN` until a window closes.
    closed_until_ms: i64,
    /// Newest event time accepted; drives the watermark.
    max_ts_ms: i64,
    /// Wall-clock time of the newest accepted reading, for idle closing.
    last_arrival_ms: i64,
    /// Since when (wall clock) this key's readings have been jumped ahead.
    jumped_since_ms: Option<i64>,
    /// Open windows by ascending start; usually one, two around a minute boundary.
    open: VecDeque<OpenWindow>,
}

impl KeyState {
    fn new(key: WindowKey) -> Self {
        KeyState {
            key,
            closed_until_ms: i64::MIN,
            max_ts_ms: i64::MIN,
            last_arrival_ms: i64::MIN,
            jumped_since_ms: None,
            open: VecDeque::new(),
        }
    }

    /// Close the oldest open window and move the frontier past it.
    fn close_front(&mut self, width_ms: i64, out: &mut Vec<ClosedWindow>) {
        let Some(w) = self.open.pop_front() else {
            return;
        };
        let end = w.start_ms.saturating_add(width_ms);
        self.closed_until_ms = self.closed_until_ms.max(end);
        let (fields, sums) = w.finish();
        out.push(ClosedWindow {
            key: self.key.clone(),
            start_ms: w.start_ms,
            width_ms,
            readings: w.readings,
            fields,
            sums,
        });
    }
}

/// All open windows of all keys.
#[derive(Debug)]
pub struct Windows {
    config: WindowConfig,
    width_ms: i64,
    lateness_ms: i64,
    /// 0: no clock-jump check.
    clock_jump_ms: i64,
    clock_jump_accept_ms: i64,
    /// Key states in order of first sight, so draining is deterministic.
    states: Vec<KeyState>,
    /// Sensor -> state index per source. Looked up by `&SensorId`, so a
    /// reading never has to build (allocate) a `WindowKey`.
    index: HashMap<SensorId, [Option<usize>; 3]>,
    /// The state of the previous push: readings arrive in runs per sensor,
    /// and a string compare is cheaper than a hash.
    last: usize,
}

fn source_slot(source: Source) -> usize {
    match source {
        Source::Raw => 0,
        Source::TenSecond => 1,
        Source::OneMinute => 2,
    }
}

/// `Some(ahead)` when a reading at `ts_ms` arriving at `arrival_ms` is a
/// forward jump of the key's clock still to be refused; tracks how long the
/// key has been jumped, and accepts the new clock after `accept_ms`.
///
/// Wall-clock gaps are credited: a meter silent for two hours comes back
/// two hours ahead, and a backlog replayed fast is never ahead of its own
/// previous reading by much. (A journal replay after a restart pushes every
/// reading at one arrival time, so it refuses a jump again where the live
/// run had accepted it after `accept_ms`: a rare, narrow window.)
fn clock_jump(st: &mut KeyState, ts_ms: i64, arrival_ms: i64, jump_ms: i64, accept_ms: i64) -> Option<i64> {
    if jump_ms == 0 || st.max_ts_ms == i64::MIN {
        return None;
    }
    let ahead_ms = ts_ms.saturating_sub(st.max_ts_ms);
    let waited_ms = arrival_ms.saturating_sub(st.last_arrival_ms).max(0);
    if ahead_ms.saturating_sub(waited_ms) <= jump_ms {
        st.jumped_since_ms = None;
        return None;
    }
    let since = *st.jumped_since_ms.get_or_insert(arrival_ms);
    if arrival_ms.saturating_sub(since) < accept_ms {
        return Some(ahead_ms);
    }
    st.jumped_since_ms = None;
    None
}

/// Start of the window holding `ts_ms`: floor, also for times before 1970.
fn window_start(ts_ms: i64, width_ms: i64) -> i64 {
    ts_ms.div_euclid(width_ms).saturating_mul(width_ms)
}

impl Windows {
    pub fn new(config: WindowConfig) -> Windows {
        Windows {
            config,
            width_ms: i64::from(config.width_secs.max(1)) * 1000,
            lateness_ms: i64::from(config.lateness_secs) * 1000,
            clock_jump_ms: i64::from(config.clock_jump_secs) * 1000,
            clock_jump_accept_ms: i64::from(config.clock_jump_accept_secs) * 1000,
            states: Vec::new(),
            index: HashMap::new(),
            last: usize::MAX,
        }
    }

    pub fn config(&self) -> WindowConfig {
        self.config
    }

    /// Index of the key's state, created if new; `None` for a new key when
    /// `max_keys` are kept already.
    fn state_index(&mut self, sensor: &SensorId, source: Source) -> Option<usize> {
        if let Some(st) = self.states.get(self.last)
            && st.key.source == source
            && st.key.sensor == *sensor
        {
            return Some(self.last);
        }
        let slot = source_slot(source);
        let i = match self.index.get(sensor).and_then(|slots| slots[slot]) {
            Some(i) => i,
            None if self.states.len() >= self.config.max_keys => return None,
            None => self.insert_state(WindowKey { sensor: sensor.clone(), source }),
        };
        self.last = i;
        Some(i)
    }

    /// Keys kept (sensor and source pairs ever seen, up to `max_keys`).
    pub fn keys(&self) -> usize {
        self.states.len()
    }

    fn insert_state(&mut self, key: WindowKey) -> usize {
        let i = self.states.len();
        let slot = source_slot(key.source);
        self.index.entry(key.sensor.clone()).or_default()[slot] = Some(i);
        self.states.push(KeyState::new(key));
        i
    }

    /// Fold a reading in. `seq` is an opaque journal sequence number of the
    /// batch the reading came in (caller-supplied, non-decreasing); each open
    /// window remembers the smallest seq that contributed.
    pub fn push(&mut self, reading: &Reading, seq: u64, arrival_ms: i64) -> Push {
        let width = self.width_ms;
        let Some(i) = self.state_index(&reading.sensor, reading.source) else {
            return Push::KeyLimit;
        };
        let st = &mut self.states[i];
        let start = window_start(reading.ts_ms, width);
        if reading.ts_ms < st.closed_until_ms {
            return Push::Late { window_start_ms: start, closed_until_ms: st.closed_until_ms };
        }
        if let Some(ahead_ms) = clock_jump(st, reading.ts_ms, arrival_ms, self.clock_jump_ms, self.clock_jump_accept_ms)
        {
            return Push::ClockJump { ahead_ms };
        }
        // Search from the newest window: in-order data hits the last one.
        match st.open.iter().rposition(|w| w.start_ms <= start) {
            Some(j) if st.open[j].start_ms == start => {
                if !st.open[j].add(reading, seq) {
                    return Push::Duplicate;
                }
            }
            found => {
                let mut w = OpenWindow::new(start, seq);
                let _first = w.add(reading, seq);
                st.open.insert(found.map_or(0, |j| j + 1), w);
            }
        }
        // Only accepted readings count as activity: a meter whose clock is
        // stuck in the past must not keep its open windows from idling out.
        st.last_arrival_ms = st.last_arrival_ms.max(arrival_ms);
        st.max_ts_ms = st.max_ts_ms.max(reading.ts_ms);
        Push::Accepted
    }

    /// Move every window whose end <= its key's watermark (max event ts seen
    /// for that key - lateness) into `out`, oldest first per key.
    pub fn drain_closed(&mut self, out: &mut Vec<ClosedWindow>) {
        for st in &mut self.states {
            let watermark = st.max_ts_ms.saturating_sub(self.lateness_ms);
            while st.open.front().is_some_and(|w| w.start_ms.saturating_add(self.width_ms) <= watermark) {
                st.close_front(self.width_ms, out);
            }
        }
    }

    /// Close every open window of keys that have been quiet for `idle_ms`
    /// by `now_ms` (a meter that went quiet: no newer reading will come to
    /// push its watermark). Quiet counts from the key's last arrival, or
    /// from `listening_since_ms` if later: while the broker was out of
    /// reach, no meter could be heard, and its queued readings are on the
    /// way.
    pub fn close_idle(&mut self, now_ms: i64, idle_ms: i64, listening_since_ms: i64, out: &mut Vec<ClosedWindow>) {
        let cutoff = now_ms.saturating_sub(idle_ms);
        for st in &mut self.states {
            if st.last_arrival_ms.max(listening_since_ms) < cutoff {
                while !st.open.is_empty() {
                    st.close_front(self.width_ms, out);
                }
            }
        }
    }

    /// Close everything (tests, explicit flush at shutdown).
    pub fn close_all(&mut self, out: &mut Vec<ClosedWindow>) {
        for st in &mut self.states {
            while !st.open.is_empty() {
                st.close_front(self.width_ms, out);
            }
        }
    }

    /// Smallest seq among open windows, `None` if none is open (the journal
    /// may forget batches below it).
    pub fn min_open_seq(&self) -> Option<u64> {
        self.states.iter().flat_map(|st| &st.open).map(|w| w.min_seq).min()
    }

    /// Per-key frontier: readings with `ts < closed_until_ms` are late. Keys
    /// that never closed a window have none and are not listed.
    pub fn frontiers(&self) -> impl Iterator<Item = (&WindowKey, i64)> {
        self.states.iter().filter(|st| st.closed_until_ms != i64::MIN).map(|st| (&st.key, st.closed_until_ms))
    }

    /// Raise a key's frontier (never lowers it), e.g. from state persisted
    /// before a restart. Call before pushing readings of that key: windows
    /// already open are not affected.
    pub fn restore_frontier(&mut self, key: WindowKey, closed_until_ms: i64) {
        let slot = source_slot(key.source);
        let i = match self.index.get(&key.sensor).and_then(|slots| slots[slot]) {
            Some(i) => i,
            None => self.insert_state(key),
        };
        if let Some(st) = self.states.get_mut(i) {
            st.closed_until_ms = st.closed_until_ms.max(closed_until_ms);
        }
    }

    /// Number of open windows over all keys.
    pub fn open_windows(&self) -> usize {
        self.states.iter().map(|st| st.open.len()).sum()
    }
}
