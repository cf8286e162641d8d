//! The stage: decode, window, and decide what one batch makes durable. Pure
//! state, no I/O: the async driver ([`crate::driver`]) feeds it MQTT payloads
//! and clock ticks, commits the [`Step`] it returns in one spool transaction,
//! and only then acknowledges the batch's messages. This is rumqttc's
//! `state.rs` beside its `eventloop.rs`: every rule of the front half of
//! ingest and predict lives here and is tested without a socket or a disk.
//!
//! Per batch ([`Stage::on_batch`]):
//! 1. the raw payloads become one journal entry under the next sequence
//!    number (a restart replays it to rebuild the open windows);
//! 2. each payload is decoded; an undecodable one is a [`Reject`] (the
//!    driver counts, logs and keeps it; it is never silently dropped);
//! 3. the readings go into the windows: accepted, late (their window was
//!    closed and written already) or a duplicate (a QoS 1 redelivery);
//! 4. the windows that closed, the new frontiers of their keys, and the
//!    journal entries no open window needs any more are returned.
//!
//! [`Stage::on_tick`] closes the windows of sensors that went quiet, and
//! [`Stage::replay`] rebuilds the open windows after a restart from what the
//! spool kept (journal and frontiers).

use std::collections::BTreeMap;

use gridcast_core::payload::{DecodeError, Decoder, DecoderConfig};
use gridcast_core::window::{ClosedWindow, Push, WindowConfig, WindowKey, Windows};
use gridcast_core::{Reading, Source};

use crate::spool::{decode_journal_batch, encode_journal_batch};

/// What the stage needs to know; both services build it from their config.
#[derive(Debug, Clone)]
pub struct StageConfig {
    pub decode: DecoderConfig,
    pub window: WindowConfig,
    /// Only readings of this source go into windows (predict reads one kind
    /// of message); `None` keeps every source (ingest).
    pub only: Option<Source>,
    /// Close a key's open windows after this long without a reading (ms).
    pub idle_close_ms: i64,
}

/// A warning when `idle_close_secs` is under three MQTT keep-alives: a
/// network link that died without a word is noticed only after about two
/// keep-alives (rumqttc's unanswered ping), and until then the silence
/// looks like quiet meters, whose windows would close with the rest of
/// their minute still queued at the broker.
pub fn idle_close_warning(idle_close_secs: u64, keep_alive_secs: u64) -> Option<String> {
    let keep_alive = keep_alive_secs.max(5); // the source's own floor
    (idle_close_secs < 3 * keep_alive).then(|| {
        format!(
            "idle_close_secs = {idle_close_secs} is under three MQTT keep-alives ({keep_alive} s each): after a network \
             cut that is not noticed yet, windows would close before the rest of their minute arrives (late, kept \
             aside); use at least {}",
            3 * keep_alive
        )
    })
}

/// The decode-and-window state machine.
pub struct Stage {
    decoder: Decoder,
    windows: Windows,
    only: Option<Source>,
    idle_close_ms: i64,
    /// Sequence number of the next journal entry.
    next_seq: u64,
    readings: Vec<Reading>,
}

/// Everything one input did, ready to be committed as one transaction.
#[derive(Debug, Default)]
pub struct Step {
    /// The batch's raw payloads, to store under this sequence number.
    pub journal: Option<(u64, Vec<u8>)>,
    /// Windows that closed: final, to be written.
    pub closed: Vec<ClosedWindow>,
    /// New frontiers (readings before them are late) of the keys whose
    /// windows closed: stored with the windows, so a replay never rebuilds a
    /// half window from a journal that was partly forgotten.
    pub frontiers: Vec<(WindowKey, i64)>,
    /// Journal entries below this sequence number hold no open window's
    /// readings any more: forget them in the same transaction.
    pub forget_below: u64,
    /// Payloads that did not decode, by their index in the batch.
    pub rejects: Vec<Reject>,
    pub counts: Counts,
    /// The payloads holding late or clock-jumped readings, by their index
    /// in the batch: ingest keeps them aside (they cannot be merged, and
    /// dropping them would lose a meter's readings).
    pub aside: Vec<AsideMessage>,
    /// The first key refused at `max_keys` in the batch, likewise.
    pub first_refused_key: Option<WindowKey>,
}

/// A payload that did not decode.
#[derive(Debug, Clone, PartialEq)]
pub struct Reject {
    /// Its index in the batch given to [`Stage::on_batch`].
    pub index: usize,
    pub error: DecodeError,
}

/// How the readings of one input fared.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub messages: u64,
    pub accepted: u64,
    pub late: u64,
    /// Readings of a meter clock that jumped forward ([`Push::ClockJump`]).
    pub clock_jumped: u64,
    pub duplicate: u64,
    /// Readings of a new key refused at [`WindowConfig::max_keys`].
    pub key_limit: u64,
    /// Readings of another source than [`StageConfig::only`]: not this
    /// service's to window.
    pub other_source: u64,
}

/// A payload with readings that cannot be merged and must not be dropped:
/// late ones (their window is closed and written) or ones from a meter
/// clock that jumped forward. Ingest keeps such payloads aside.
#[derive(Debug, Clone, PartialEq)]
pub struct AsideMessage {
    /// Its index in the batch given to [`Stage::on_batch`].
    pub index: usize,
    /// Of the readings it held, how many were late, how many jumped.
    pub readings: u64,
    pub late: u64,
    pub clock_jumped: u64,
    /// Its first such reading, and why.
    pub key: WindowKey,
    pub ts_ms: i64,
    pub why: Aside,
}

impl AsideMessage {
    /// `late` or `clock_jump`: the rejected log's `kind` (by its first reading).
    pub fn kind(&self) -> &'static str {
        match self.why {
            Aside::Late { .. } => "late",
            Aside::ClockJump { .. } => "clock_jump",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aside {
    Late { window_start_ms: i64, closed_until_ms: i64 },
    ClockJump { ahead_ms: i64 },
}

impl Step {
    /// Nothing to commit: no journal entry and no closed window.
    pub fn is_empty(&self) -> bool {
        self.journal.is_none() && self.closed.is_empty()
    }
}

impl Stage {
    /// A stage whose next journal entry gets `next_seq` (the spool's).
    pub fn new(config: StageConfig, next_seq: u64) -> Stage {
        Stage {
            decoder: Decoder::new(config.decode),
            windows: Windows::new(config.window),
            only: config.only,
            idle_close_ms: config.idle_close_ms,
            next_seq,
            readings: Vec::new(),
        }
    }

    /// Rebuild the open windows after a restart from the spool's journal
    /// (in sequence order) and stored frontiers. Readings of windows closed
    /// before the restart fall behind the frontiers and are skipped: they
    /// were written already. Windows the replay closes (every reading of
    /// them is in the journal) come back in the step, without a journal
    /// entry of its own.
    pub fn replay(&mut self, journal: &[(u64, Vec<u8>)], frontiers: &[(WindowKey, i64)], now_ms: i64) -> Step {
        for (key, closed_until) in frontiers {
            self.windows.restore_frontier(key.clone(), *closed_until);
        }
        let mut counts = Counts::default();
        for (seq, record) in journal {
            self.next_seq = self.next_seq.max(seq + 1);
            for payload in decode_journal_batch(record) {
                counts.messages += 1;
                self.readings.clear();
                if self.decoder.decode(payload, &mut self.readings).is_err() {
                    continue; // counted and kept when it first arrived
                }
                for reading in &self.readings {
                    if self.only.is_some_and(|only| only != reading.source) {
                        continue;
                    }
                    if matches!(self.windows.push(reading, *seq, now_ms), Push::Accepted) {
                        counts.accepted += 1;
                    }
                }
            }
        }
        let mut step = self.finish(None, Vec::new());
        step.counts = counts;
        step
    }

    /// One batch of payloads, as they came from the broker.
    pub fn on_batch<'a, P>(&mut self, payloads: P, now_ms: i64) -> Step
    where
        P: IntoIterator<Item = &'a [u8]>,
        P::IntoIter: Clone,
    {
        let payloads = payloads.into_iter();
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut journal = Vec::with_capacity(payloads.clone().map(|p| p.len() + 4).sum());
        encode_journal_batch(payloads.clone(), &mut journal);

        let mut counts = Counts::default();
        let mut rejects = Vec::new();
        let mut aside: Vec<AsideMessage> = Vec::new();
        let mut first_refused_key = None;
        for (index, payload) in payloads.enumerate() {
            counts.messages += 1;
            self.readings.clear();
            if let Err(error) = self.decoder.decode(payload, &mut self.readings) {
                rejects.push(Reject { index, error });
                continue;
            }
            for reading in &self.readings {
                if self.only.is_some_and(|only| only != reading.source) {
                    counts.other_source += 1;
                    continue;
                }
                match self.windows.push(reading, seq, now_ms) {
                    Push::Accepted => counts.accepted += 1,
                    Push::Duplicate => counts.duplicate += 1,
                    Push::KeyLimit => {
                        counts.key_limit += 1;
                        first_refused_key.get_or_insert_with(|| WindowKey {
                            sensor: reading.sensor.clone(),
                            source: reading.source,
                        });
                    }
                    Push::Late { window_start_ms, closed_until_ms } => {
                        counts.late += 1;
                        let why = Aside::Late { window_start_ms, closed_until_ms };
                        put_aside(&mut aside, index, self.readings.len(), reading, why).late += 1;
                    }
                    Push::ClockJump { ahead_ms } => {
                        counts.clock_jumped += 1;
                        let why = Aside::ClockJump { ahead_ms };
                        put_aside(&mut aside, index, self.readings.len(), reading, why).clock_jumped += 1;
                    }
                }
            }
        }
        let mut step = self.finish(Some((seq, journal)), Vec::new());
        step.counts = counts;
        step.rejects = rejects;
        step.aside = aside;
        step.first_refused_key = first_refused_key;
        step
    }

    /// The clock moved: close the windows of keys idle for too long.
    /// `listening_since_ms`: since when the source has been connected;
    /// `None` while it is not (then no key counts as idle: the broker
    /// queues what the meters send meanwhile).
    pub fn on_tick(&mut self, now_ms: i64, listening_since_ms: Option<i64>) -> Step {
        let mut closed = Vec::new();
        if let Some(since) = listening_since_ms {
            self.windows.close_idle(now_ms, self.idle_close_ms, since, &mut closed);
        }
        self.finish(None, closed)
    }

    /// Windows open now.
    pub fn open_windows(&self) -> usize {
        self.windows.open_windows()
    }

    /// The configured most keys (`[window] max_keys`).
    pub fn max_keys(&self) -> usize {
        self.windows.config().max_keys
    }

    /// The sequence number the next batch's journal entry gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The step of an input: `closed` (windows it closed already) and every
    /// window now past its watermark.
    fn finish(&mut self, journal: Option<(u64, Vec<u8>)>, mut closed: Vec<ClosedWindow>) -> Step {
        self.windows.drain_closed(&mut closed);
        let frontiers = frontiers_of(&closed);
        let forget_below = self.windows.min_open_seq().unwrap_or(self.next_seq);
        Step { journal, closed, frontiers, forget_below, ..Step::default() }
    }
}

/// The entry of payload `index` in `aside`, added if it is not the last.
fn put_aside<'a>(
    aside: &'a mut Vec<AsideMessage>,
    index: usize,
    readings: usize,
    reading: &Reading,
    why: Aside,
) -> &'a mut AsideMessage {
    if aside.last().is_none_or(|m| m.index != index) {
        aside.push(AsideMessage {
            index,
            readings: readings as u64,
            late: 0,
            clock_jumped: 0,
            key: WindowKey { sensor: reading.sensor.clone(), source: reading.source },
            ts_ms: reading.ts_ms,
            why,
        });
    }
    aside.last_mut().expect("just pushed")
}

/// The newest end of a closed window per key.
fn frontiers_of(closed: &[ClosedWindow]) -> Vec<(WindowKey, i64)> {
    let mut latest: BTreeMap<&WindowKey, i64> = BTreeMap::new();
    for window in closed {
        let frontier = latest.entry(&window.key).or_insert(i64::MIN);
        *frontier = (*frontier).max(window.end_ms());
    }
    latest.into_iter().map(|(key, end)| (key.clone(), end)).collect()
}

#[cfg(test)]
mod tests;
