//! The stage without a socket or a disk: what a batch makes durable, late
//! and duplicate readings, idle close, rejects, and a crash at every point
//! of a run replayed from what a spool would have kept.

use std::collections::BTreeMap;

use gridcast_core::window::WindowConfig;
use gridcast_core::{Field, SensorId};

use super::*;

/// A minute boundary, so window starts are easy to read.
const T0: i64 = 1_670_492_760_000;
const NOW: i64 = 1_700_000_000_000;

fn config() -> StageConfig {
    StageConfig {
        decode: Default::default(),
        window: WindowConfig { width_secs: 60, lateness_secs: 5, ..WindowConfig::default() },
        only: None,
        idle_close_ms: 10_000,
    }
}

/// A JSON reading of `sensor` at `ts_ms` with `p_l1 = p`.
fn reading(sensor: &str, ts_ms: i64, p: f64) -> Vec<u8> {
    format!(r#"{{"ts": {}, "sensor": "{sensor}", "p_l1": {p}}}"#, ts_ms as f64 / 1000.0).into_bytes()
}

fn batch(stage: &mut Stage, payloads: &[Vec<u8>]) -> Step {
    stage.on_batch(payloads.iter().map(|p| &p[..]), NOW)
}

fn key(sensor: &str) -> WindowKey {
    WindowKey { sensor: SensorId::new(sensor), source: Source::Raw }
}

#[test]
fn a_batch_is_one_journal_entry_and_closes_windows_at_the_watermark() {
    let mut stage = Stage::new(config(), 7);
    let step = batch(&mut stage, &[reading("a", T0 + 1_000, 10.0), reading("a", T0 + 30_000, 20.0)]);
    let (seq, record) = step.journal.clone().expect("a journal entry");
    assert_eq!(seq, 7);
    assert_eq!(decode_journal_batch(&record).count(), 2, "every payload, as received");
    assert!(step.closed.is_empty() && step.frontiers.is_empty());
    assert_eq!(step.forget_below, 7, "the open window needs entry 7");
    assert_eq!(step.counts, Counts { messages: 2, accepted: 2, ..Counts::default() });

    // 65 s into the next minute passes the first one's end plus lateness.
    let step = batch(&mut stage, &[reading("a", T0 + 65_000, 30.0)]);
    assert_eq!(step.journal.as_ref().map(|j| j.0), Some(8));
    assert_eq!(step.closed.len(), 1);
    let w = &step.closed[0];
    assert_eq!((w.start_ms, w.readings), (T0, 2));
    assert_eq!(w.field(Field::PL1).unwrap().mean(), 15.0);
    assert_eq!(step.frontiers, vec![(key("a"), T0 + 60_000)]);
    assert_eq!(step.forget_below, 8, "entry 7 held only the closed window's readings");
}

#[test]
fn redelivered_readings_are_duplicates_and_late_ones_are_counted_not_merged() {
    let mut stage = Stage::new(config(), 0);
    let first = [reading("a", T0 + 1_000, 10.0), reading("a", T0 + 2_000, 20.0)];
    batch(&mut stage, &first);
    let step = batch(&mut stage, &first);
    assert_eq!((step.counts.accepted, step.counts.duplicate), (0, 2));
    batch(&mut stage, &[reading("a", T0 + 70_000, 1.0)]);
    let step = batch(&mut stage, &[reading("b", T0 + 3_000, 1.0), reading("a", T0 + 59_000, 99.0)]);
    assert_eq!((step.counts.accepted, step.counts.late), (1, 1));
    let [late] = &step.aside[..] else { panic!("one late message: {:?}", step.aside) };
    assert_eq!((late.index, &late.key, late.kind()), (1, &key("a"), "late"));
    assert_eq!(late.why, Aside::Late { window_start_ms: T0, closed_until_ms: T0 + 60_000 });
    assert_eq!((late.late, late.clock_jumped, late.readings), (1, 0, 1));
}

#[test]
fn undecodable_payloads_are_rejects_by_index_and_stay_in_the_journal() {
    let mut stage = Stage::new(config(), 0);
    let step = batch(&mut stage, &[b"\x10garbage".to_vec(), reading("a", T0, 1.0), Vec::new()]);
    assert_eq!(step.rejects.iter().map(|r| r.index).collect::<Vec<_>>(), vec![0, 2]);
    assert_eq!(step.rejects[1].error.kind(), "empty");
    assert_eq!(step.counts.accepted, 1);
    assert_eq!(decode_journal_batch(&step.journal.unwrap().1).count(), 3);
}

#[test]
fn a_tick_closes_the_windows_of_quiet_sensors_only() {
    let mut stage = Stage::new(config(), 0);
    stage.on_batch([&reading("a", T0, 1.0)[..]], NOW);
    stage.on_batch([&reading("b", T0, 1.0)[..]], NOW + 8_000);
    assert!(stage.on_tick(NOW + 12_000, None).is_empty(), "not connected: nobody is quiet");
    assert!(stage.on_tick(NOW + 12_000, Some(NOW + 5_000)).is_empty(), "connected 7 s ago: nobody is quiet");
    let step = stage.on_tick(NOW + 12_000, Some(i64::MIN));
    assert!(step.journal.is_none());
    assert_eq!(step.closed.iter().map(|w| w.key.clone()).collect::<Vec<_>>(), vec![key("a")]);
    assert_eq!(step.frontiers, vec![(key("a"), T0 + 60_000)]);
    assert_eq!(step.forget_below, 1, "entry 1 (b) is still needed");
    assert!(stage.on_tick(NOW + 12_000, Some(i64::MIN)).is_empty());
}

#[test]
fn only_the_configured_source_is_windowed() {
    let mut stage = Stage::new(StageConfig { only: Some(Source::OneMinute), ..config() }, 0);
    let step = batch(&mut stage, &[reading("a", T0, 1.0)]);
    assert_eq!((step.counts.accepted, step.counts.other_source), (0, 1));
    assert_eq!(stage.open_windows(), 0);
}

/// What a spool keeps of the steps committed so far (the stage's view of
/// it: journal entries not yet forgotten, frontiers, written windows).
#[derive(Default, Clone)]
struct SpoolModel {
    journal: BTreeMap<u64, Vec<u8>>,
    frontiers: BTreeMap<WindowKey, i64>,
    written: Vec<(WindowKey, i64, u64, f64)>,
    /// The spool's sequence counter: never reused, even when the journal empties.
    next_seq: u64,
}

impl SpoolModel {
    fn commit(&mut self, step: Step) {
        if let Some((seq, record)) = step.journal {
            self.journal.insert(seq, record);
            self.next_seq = seq + 1;
        }
        self.journal.retain(|seq, _| *seq >= step.forget_below);
        self.frontiers.extend(step.frontiers);
        for w in step.closed {
            let mean = w.field(Field::PL1).unwrap().mean();
            self.written.push((w.key, w.start_ms, w.readings, mean));
        }
    }

    /// A fresh stage after a restart, as the driver's recovery builds it.
    fn restart(&mut self) -> Stage {
        let journal: Vec<(u64, Vec<u8>)> = self.journal.iter().map(|(k, v)| (*k, v.clone())).collect();
        let frontiers: Vec<(WindowKey, i64)> = self.frontiers.iter().map(|(k, v)| (k.clone(), *v)).collect();
        let mut stage = Stage::new(config(), self.next_seq);
        let step = stage.replay(&journal, &frontiers, NOW);
        self.commit(step);
        stage
    }
}

/// Three sensors, 4 minutes, readings every 5 s, in batches of 7 messages.
fn run_batches() -> Vec<Vec<Vec<u8>>> {
    let mut payloads = Vec::new();
    for i in 0..48 {
        for sensor in ["a", "b", "c"] {
            payloads.push(reading(sensor, T0 + i * 5_000, (i * 10) as f64 + sensor.len() as f64));
        }
    }
    payloads.chunks(7).map(|c| c.to_vec()).collect()
}

fn run_through(
    crash_after_commit: Option<usize>,
    crash_before_commit: Option<usize>,
) -> Vec<(WindowKey, i64, u64, f64)> {
    let batches = run_batches();
    let mut spool = SpoolModel::default();
    let mut stage = Stage::new(config(), 0);
    let mut i = 0;
    while i < batches.len() {
        if crash_before_commit == Some(i) {
            // Died before committing batch i: nothing of it is kept or acked.
            stage = spool.restart();
        }
        spool.commit(batch(&mut stage, &batches[i]));
        if crash_after_commit == Some(i) {
            // Died after the commit, before the ack: the broker redelivers i.
            stage = spool.restart();
            spool.commit(batch(&mut stage, &batches[i]));
        }
        i += 1;
    }
    // The meters went quiet: everything still open closes.
    spool.commit(stage.on_tick(NOW + 60_000, Some(i64::MIN)));
    spool.written.sort_by(|x, y| (&x.0, x.1).cmp(&(&y.0, y.1)));
    spool.written
}

#[test]
fn a_crash_at_any_point_writes_every_window_once_with_the_same_mean() {
    let expected = run_through(None, None);
    assert_eq!(expected.len(), 12, "3 sensors x 4 minutes");
    assert!(expected.iter().all(|w| w.2 == 12), "12 readings per window");
    for point in 0..run_batches().len() {
        assert_eq!(run_through(Some(point), None), expected, "crash after committing batch {point}");
        assert_eq!(run_through(None, Some(point)), expected, "crash before committing batch {point}");
    }
}

#[test]
fn readings_of_a_clock_that_jumped_ahead_are_put_aside_by_message() {
    let mut stage = Stage::new(config(), 0);
    batch(&mut stage, &[reading("a", T0 + 1_000, 1.0)]);
    let hour = 3_600_000;
    let mixed = [
        &reading("a", T0 + 2_000, 2.0)[..],
        b",",
        &reading("a", T0 + hour, 3.0),
        b",",
        &reading("a", T0 + hour + 1_000, 4.0),
    ]
    .concat();
    let array = [&b"["[..], &mixed, b"]"].concat();
    let step = batch(&mut stage, &[array]);
    assert_eq!((step.counts.accepted, step.counts.clock_jumped), (1, 2));
    let [aside] = &step.aside[..] else { panic!("one message put aside: {:?}", step.aside) };
    assert_eq!((aside.index, aside.readings, aside.late, aside.clock_jumped), (0, 3, 0, 2));
    assert_eq!((aside.kind(), aside.ts_ms), ("clock_jump", T0 + hour));
    assert!(step.closed.is_empty(), "the jumped readings closed no window");
}

#[test]
fn an_idle_close_under_three_keep_alives_is_warned_about() {
    assert!(idle_close_warning(300, 30).is_none());
    assert!(idle_close_warning(15, 5).is_none());
    let warning = idle_close_warning(3, 5).expect("3 s is under three 5 s keep-alives");
    assert!(warning.contains("use at least 15"), "{warning}");
    assert!(idle_close_warning(14, 1).is_some(), "the source's floor is 5 s");
}
