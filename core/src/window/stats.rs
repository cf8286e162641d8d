//! Per-window accumulators: count, compensated sum, min and max of every
//! field and phase sum that one window has seen.
//!
//! A minute of 12 Hz data is 720 values per field; the window's mean is what
//! ends up in InfluxDB and what the model trains on, so it is summed with
//! Neumaier's compensated summation and matches an independent computation
//! to about 1e-15 relative, whatever the order the readings came in.

use crate::reading::{FIELD_COUNT, Field, PhaseSum, Reading};

/// Statistics of one quantity over one window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FieldStats {
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

impl FieldStats {
    /// Arithmetic mean; NaN for an empty stats (closed windows never carry one).
    pub fn mean(&self) -> f64 {
        self.sum / self.count as f64
    }
}

/// Running statistics with a Neumaier compensation term.
#[derive(Debug, Clone, Copy)]
struct Acc {
    count: u64,
    sum: f64,
    comp: f64,
    min: f64,
    max: f64,
}

impl Acc {
    const EMPTY: Acc = Acc { count: 0, sum: 0.0, comp: 0.0, min: f64::INFINITY, max: f64::NEG_INFINITY };

    #[inline]
    fn add(&mut self, x: f64) {
        let t = self.sum + x;
        // The low-order bits lost in `t`, taken from whichever operand is smaller.
        self.comp += if self.sum.abs() >= x.abs() { (self.sum - t) + x } else { (x - t) + self.sum };
        self.sum = t;
        self.count += 1;
        self.min = self.min.min(x);
        self.max = self.max.max(x);
    }

    fn stats(&self) -> Option<FieldStats> {
        (self.count > 0).then_some(FieldStats {
            count: self.count,
            sum: self.sum + self.comp,
            min: self.min,
            max: self.max,
        })
    }
}

pub(super) type FieldList = Vec<(Field, FieldStats)>;
pub(super) type SumList = Vec<(PhaseSum, FieldStats)>;

/// One open window of one key.
#[derive(Debug, Clone)]
pub(super) struct OpenWindow {
    pub(super) start_ms: i64,
    pub(super) readings: u64,
    /// Smallest journal sequence number that contributed.
    pub(super) min_seq: u64,
    /// Event times merged so far, ascending: MQTT QoS 1 is at-least-once, so
    /// a redelivered reading (same key, same timestamp) must not count twice.
    /// Readings nearly always come in order, so this is an append.
    seen_ts: Vec<i64>,
    fields: [Acc; FIELD_COUNT],
    sums: [Acc; 3],
}

impl OpenWindow {
    pub(super) fn new(start_ms: i64, seq: u64) -> Self {
        OpenWindow {
            start_ms,
            readings: 0,
            min_seq: seq,
            seen_ts: Vec::new(),
            fields: [Acc::EMPTY; FIELD_COUNT],
            sums: [Acc::EMPTY; 3],
        }
    }

    /// Merge a reading; false (and nothing merged) when this window already
    /// has a reading with the same timestamp.
    pub(super) fn add(&mut self, reading: &Reading, seq: u64) -> bool {
        let ts = reading.ts_ms;
        match self.seen_ts.last() {
            Some(&last) if last < ts => self.seen_ts.push(ts),
            None => self.seen_ts.push(ts),
            Some(_) => match self.seen_ts.binary_search(&ts) {
                Ok(_) => return false,
                Err(at) => self.seen_ts.insert(at, ts),
            },
        }
        self.readings += 1;
        self.min_seq = self.min_seq.min(seq);
        for (field, v) in reading.iter() {
            self.fields[field.index()].add(v);
        }
        for (acc, sum) in self.sums.iter_mut().zip(PhaseSum::ALL) {
            if let Some(v) = reading.phase_sum(sum) {
                acc.add(v);
            }
        }
        true
    }

    /// Present fields in field order, then present phase sums.
    pub(super) fn finish(&self) -> (FieldList, SumList) {
        let fields = Field::ALL.iter().zip(&self.fields).filter_map(|(f, acc)| acc.stats().map(|s| (*f, s))).collect();
        let sums = PhaseSum::ALL.iter().zip(&self.sums).filter_map(|(p, acc)| acc.stats().map(|s| (*p, s))).collect();
        (fields, sums)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compensated_sum_keeps_small_terms_next_to_large_ones() {
        let mut acc = Acc::EMPTY;
        // A plain f64 sum of these is 0.0: each 1.0 vanishes next to 1e16.
        for x in [1e16, 1.0, 1.0, -1e16] {
            acc.add(x);
        }
        let s = acc.stats().unwrap();
        assert_eq!(s.sum, 2.0);
        assert_eq!((s.count, s.min, s.max), (4, -1e16, 1e16));
    }

    #[test]
    fn empty_accumulator_has_no_stats() {
        assert_eq!(Acc::EMPTY.stats(), None);
    }
}
