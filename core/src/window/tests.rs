//! Window behaviour: when windows close, what counts as late, idle closing,
//! journal bookkeeping and the accuracy of the statistics.

use super::*;

const W: i64 = 60_000;
/// A minute boundary in 2022, so starts are easy to read.
const T0: i64 = 1_670_492_760_000;

fn reading(sensor: &str, ts_ms: i64, p: [f64; 3]) -> Reading {
    let mut r = Reading::new(SensorId::new(sensor), Source::Raw, ts_ms);
    r.set(Field::PL1, p[0]);
    r.set(Field::PL2, p[1]);
    r.set(Field::PL3, p[2]);
    r
}

fn windows() -> Windows {
    Windows::new(WindowConfig::default())
}

fn push(w: &mut Windows, sensor: &str, ts_ms: i64) -> Push {
    w.push(&reading(sensor, ts_ms, [1.0, 2.0, 3.0]), 0, ts_ms)
}

fn drain(w: &mut Windows) -> Vec<ClosedWindow> {
    let mut out = Vec::new();
    w.drain_closed(&mut out);
    out
}

fn key(sensor: &str) -> WindowKey {
    WindowKey { sensor: SensorId::new(sensor), source: Source::Raw }
}

#[test]
fn window_keys_round_trip_through_their_spool_form() {
    let key = WindowKey { sensor: SensorId::new("60a3aec3d2dd9849d6935976"), source: Source::TenSecond };
    assert_eq!(WindowKey::decode(&key.encode()), Some(key));
    assert_eq!(WindowKey::decode("no separator"), None);
    assert_eq!(WindowKey::decode("s\u{1f}hourly"), None);
}

#[test]
fn windows_close_at_the_watermark_not_before() {
    let mut w = windows();
    assert_eq!(push(&mut w, "a", T0 + 10_000), Push::Accepted);
    // Next window, but within lateness of the first one's end (T0 + 60 s + 5 s).
    assert_eq!(push(&mut w, "a", T0 + W + 4_999), Push::Accepted);
    assert!(drain(&mut w).is_empty());
    assert_eq!(w.open_windows(), 2);
    assert_eq!(push(&mut w, "a", T0 + W + 5_000), Push::Accepted);
    let closed = drain(&mut w);
    assert_eq!(closed.len(), 1);
    assert_eq!((closed[0].start_ms, closed[0].width_ms, closed[0].end_ms()), (T0, W, T0 + W));
    assert_eq!(closed[0].readings, 1);
    assert_eq!(w.open_windows(), 1);
    assert!(drain(&mut w).is_empty(), "a window is emitted once");
}

#[test]
fn late_readings_are_reported_with_the_frontier_and_not_merged() {
    let mut w = windows();
    assert_eq!(push(&mut w, "a", T0 + 1_000), Push::Accepted);
    assert_eq!(push(&mut w, "a", T0 + W + 6_000), Push::Accepted);
    assert_eq!(drain(&mut w).len(), 1);
    assert_eq!(push(&mut w, "a", T0 + 59_999), Push::Late { window_start_ms: T0, closed_until_ms: T0 + W });
    assert_eq!(push(&mut w, "a", T0 + W), Push::Accepted, "the frontier itself is on time");
    let mut out = Vec::new();
    w.close_all(&mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].readings, 2);
}

#[test]
fn out_of_order_readings_within_lateness_are_merged() {
    let mut w = windows();
    assert_eq!(push(&mut w, "a", T0 + W + 3_000), Push::Accepted);
    // Older minute arrives after the newer one: opens an earlier window.
    assert_eq!(push(&mut w, "a", T0 + 59_000), Push::Accepted);
    assert_eq!(push(&mut w, "a", T0 + 58_000), Push::Accepted);
    assert_eq!(w.open_windows(), 2);
    assert_eq!(push(&mut w, "a", T0 + 2 * W + 5_000), Push::Accepted);
    let closed = drain(&mut w);
    assert_eq!(closed.iter().map(|c| (c.start_ms, c.readings)).collect::<Vec<_>>(), [(T0, 2), (T0 + W, 1)]);
}

#[test]
fn idle_keys_are_closed_and_active_ones_kept() {
    let mut w = windows();
    assert_eq!(w.push(&reading("quiet", T0, [1.0; 3]), 0, 1_000), Push::Accepted);
    assert_eq!(w.push(&reading("busy", T0, [1.0; 3]), 0, 50_000), Push::Accepted);
    let mut out = Vec::new();
    // Listening again only since 40_000 (the broker was out of reach):
    // nobody is idle yet.
    w.close_idle(60_000, 30_000, 40_000, &mut out);
    assert!(out.is_empty());
    w.close_idle(60_000, 30_000, i64::MIN, &mut out); // cutoff 30_000
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].key, key("quiet"));
    assert_eq!(w.open_windows(), 1);
    // The quiet meter's minute is final now.
    assert!(matches!(push(&mut w, "quiet", T0 + 1), Push::Late { .. }));
}

#[test]
fn late_readings_do_not_keep_a_key_awake() {
    let mut w = windows();
    assert_eq!(w.push(&reading("a", T0, [1.0; 3]), 0, 0), Push::Accepted);
    assert_eq!(w.push(&reading("a", T0 + W + 5_000, [1.0; 3]), 0, 0), Push::Accepted);
    assert_eq!(drain(&mut w).len(), 1);
    // A stuck clock keeps sending the old minute.
    assert!(matches!(w.push(&reading("a", T0, [1.0; 3]), 0, 100_000), Push::Late { .. }));
    let mut out = Vec::new();
    w.close_idle(100_000, 10_000, i64::MIN, &mut out);
    assert_eq!(out.len(), 1);
}

#[test]
fn min_open_seq_tracks_the_oldest_contributing_batch() {
    let mut w = windows();
    assert_eq!(w.min_open_seq(), None);
    let r = |ts| reading("a", ts, [1.0; 3]);
    assert_eq!(w.push(&r(T0), 7, 0), Push::Accepted);
    assert_eq!(w.push(&r(T0 + W), 8, 0), Push::Accepted);
    assert_eq!(w.push(&reading("b", T0, [1.0; 3]), 9, 0), Push::Accepted);
    assert_eq!(w.min_open_seq(), Some(7));
    assert_eq!(w.push(&r(T0 + W + 5_000), 10, 0), Push::Accepted);
    assert_eq!(drain(&mut w).len(), 1);
    assert_eq!(w.min_open_seq(), Some(8));
    let mut out = Vec::new();
    w.close_all(&mut out);
    assert_eq!(w.min_open_seq(), None);
}

#[test]
fn restore_frontier_makes_earlier_readings_late() {
    let mut w = windows();
    w.restore_frontier(key("a"), T0 + W);
    assert_eq!(w.frontiers().collect::<Vec<_>>(), [(&key("a"), T0 + W)]);
    assert_eq!(push(&mut w, "a", T0 + 30_000), Push::Late { window_start_ms: T0, closed_until_ms: T0 + W });
    assert_eq!(push(&mut w, "a", T0 + W), Push::Accepted);
    // Restoring never moves a frontier back.
    w.restore_frontier(key("a"), T0);
    assert_eq!(w.frontiers().next(), Some((&key("a"), T0 + W)));
    // Other sources of the same sensor are separate keys.
    let mut ten = reading("a", T0, [1.0; 3]);
    ten.source = Source::TenSecond;
    assert_eq!(w.push(&ten, 0, 0), Push::Accepted);
}

#[test]
fn frontiers_list_keys_that_closed_a_window() {
    let mut w = windows();
    assert_eq!(push(&mut w, "a", T0), Push::Accepted);
    assert_eq!(w.frontiers().count(), 0);
    let mut out = Vec::new();
    w.close_all(&mut out);
    assert_eq!(w.frontiers().collect::<Vec<_>>(), [(&key("a"), T0 + W)]);
}

#[test]
fn stats_are_correct() {
    let mut w = windows();
    let mut r = reading("a", T0, [100.0, 200.0, 300.0]);
    r.set(Field::VL1, 230.0);
    assert_eq!(w.push(&r, 0, 0), Push::Accepted);
    let mut r = reading("a", T0 + 500, [-50.0, 0.0, 10.0]);
    r.set(Field::QL1, 5.0);
    assert_eq!(w.push(&r, 0, 0), Push::Accepted);
    let mut out = Vec::new();
    w.close_all(&mut out);
    let c = &out[0];
    assert_eq!(c.readings, 2);
    assert_eq!(
        c.fields.iter().map(|(f, _)| *f).collect::<Vec<_>>(),
        [Field::PL1, Field::PL2, Field::PL3, Field::QL1, Field::VL1]
    );
    let p1 = c.field(Field::PL1).unwrap();
    assert_eq!((p1.count, p1.sum, p1.min, p1.max, p1.mean()), (2, 50.0, -50.0, 100.0, 25.0));
    assert_eq!(*c.field(Field::VL1).unwrap(), FieldStats { count: 1, sum: 230.0, min: 230.0, max: 230.0 });
    assert_eq!(c.sums.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [PhaseSum::P, PhaseSum::Q]);
    let p = c.sum(PhaseSum::P).unwrap();
    assert_eq!((p.count, p.sum, p.min, p.max), (2, 560.0, -40.0, 600.0));
    assert_eq!(c.sum(PhaseSum::S), None);
}

#[test]
fn means_match_an_exact_computation_for_a_full_minute_at_12_hz() {
    let mut w = windows();
    // Values with many significant digits and a large offset: the case where
    // a naive running sum drifts.
    let values: Vec<f64> = (0..720).map(|i| 1e9 + (f64::from(i) * 0.7).sin() * 1234.5678 + 0.1).collect();
    for (i, v) in values.iter().enumerate() {
        let r = reading("a", T0 + i as i64 * 83, [*v, 0.0, 0.0]);
        assert_eq!(w.push(&r, 0, 0), Push::Accepted);
    }
    let mut out = Vec::new();
    w.close_all(&mut out);
    let s = out[0].field(Field::PL1).unwrap();
    assert_eq!(s.count, 720);
    // Reference: the mean of the deviations from the offset, which are
    // small, plus the offset.
    let reference = 1e9 + values.iter().map(|v| v - 1e9).sum::<f64>() / 720.0;
    assert!(((s.mean() - reference) / reference).abs() < 1e-12, "{} vs {reference}", s.mean());
}

#[test]
fn multiple_sensors_are_independent() {
    let mut w = windows();
    assert_eq!(push(&mut w, "a", T0), Push::Accepted);
    assert_eq!(push(&mut w, "b", T0), Push::Accepted);
    // Only a's watermark moves.
    assert_eq!(push(&mut w, "a", T0 + W + 5_000), Push::Accepted);
    let closed = drain(&mut w);
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].key, key("a"));
    // b is not late for a's frontier.
    assert_eq!(push(&mut w, "b", T0 + 1), Push::Accepted);
    assert_eq!(w.open_windows(), 2);
}

#[test]
fn negative_and_extreme_times_do_not_panic() {
    let mut w = windows();
    assert_eq!(push(&mut w, "a", -1), Push::Accepted);
    let mut out = Vec::new();
    w.close_all(&mut out);
    assert_eq!(out[0].start_ms, -W, "floor, not truncation toward zero");
    for ts in [i64::MIN, i64::MIN + 1, i64::MAX, i64::MAX - 1] {
        let mut w = Windows::new(WindowConfig { width_secs: 0, lateness_secs: u32::MAX, ..WindowConfig::default() });
        let _ = push(&mut w, "x", ts);
        drain(&mut w);
        w.close_idle(i64::MIN, i64::MAX, i64::MIN, &mut out);
        w.close_all(&mut out);
    }
    assert_eq!(
        WindowConfig { width_secs: 0, lateness_secs: 5, ..WindowConfig::default() }.validate(),
        Err(WindowConfigError::ZeroWidth)
    );
}

#[test]
fn config_defaults_and_serde() {
    let c: WindowConfig = serde_json::from_str(r#"{"lateness_secs": 10}"#).unwrap();
    assert_eq!(c, WindowConfig { width_secs: 60, lateness_secs: 10, ..WindowConfig::default() });
    assert!(serde_json::from_str::<WindowConfig>(r#"{"width": 10}"#).is_err());
}

#[test]
fn redelivered_readings_are_duplicates_not_merged_twice() {
    let mut w = windows();
    assert_eq!(push(&mut w, "a", T0 + 1_000), Push::Accepted);
    assert_eq!(push(&mut w, "a", T0 + 2_000), Push::Accepted);
    // In order and out of order, the same timestamp again is a duplicate.
    assert_eq!(push(&mut w, "a", T0 + 2_000), Push::Duplicate);
    assert_eq!(push(&mut w, "a", T0 + 1_000), Push::Duplicate);
    // Out of order but new is merged; another sensor's same time is its own.
    assert_eq!(push(&mut w, "a", T0 + 1_500), Push::Accepted);
    assert_eq!(push(&mut w, "b", T0 + 1_000), Push::Accepted);
    let mut out = Vec::new();
    w.close_all(&mut out);
    let a = out.iter().find(|c| c.key == key("a")).unwrap();
    assert_eq!(a.readings, 3);
    assert_eq!(a.field(Field::PL1).unwrap().count, 3);
}

#[test]
fn a_flood_of_new_sensors_is_refused_at_max_keys_and_known_ones_keep_flowing() {
    let mut w = Windows::new(WindowConfig { max_keys: 2, ..WindowConfig::default() });
    assert_eq!(push(&mut w, "a", T0), Push::Accepted);
    assert_eq!(push(&mut w, "b", T0), Push::Accepted);
    for i in 0..1_000 {
        assert_eq!(push(&mut w, &format!("flood-{i}"), T0), Push::KeyLimit);
    }
    assert_eq!(w.keys(), 2, "memory does not grow with the flood");
    assert_eq!(push(&mut w, "a", T0 + 1_000), Push::Accepted);
    assert_eq!(push(&mut w, "b", T0 + 1_000), Push::Accepted);
    assert_eq!(WindowConfig { max_keys: 0, ..WindowConfig::default() }.validate(), Err(WindowConfigError::NoKeys));
}

/// Pushes a reading of "a" at meter time `ts_ms`, arriving at `arrival_ms`.
fn push_at(w: &mut Windows, ts_ms: i64, arrival_ms: i64) -> Push {
    w.push(&reading("a", ts_ms, [1.0, 2.0, 3.0]), 0, arrival_ms)
}

#[test]
fn a_clock_that_jumps_an_hour_ahead_and_back_closes_no_window_early() {
    let mut w = windows();
    let hour = 3_600_000;
    assert_eq!(push_at(&mut w, T0 + 1_000, T0 + 1_000), Push::Accepted);
    // One minute of readings an hour ahead: refused, the watermark stays.
    for s in 0..60 {
        let pushed = push_at(&mut w, T0 + hour + 2_000 + s * 1_000, T0 + 2_000 + s * 1_000);
        assert!(matches!(pushed, Push::ClockJump { ahead_ms } if ahead_ms > hour - 1_000), "{pushed:?}");
    }
    assert!(drain(&mut w).is_empty(), "no window closed by the jumped readings");
    // The clock is right again: merged, as if the jump had not happened.
    assert_eq!(push_at(&mut w, T0 + 62_000, T0 + 62_000), Push::Accepted);
    assert_eq!(push_at(&mut w, T0 + 2 * W + 5_000, T0 + 2 * W + 5_000), Push::Accepted);
    let closed = drain(&mut w);
    assert_eq!(closed.iter().map(|c| (c.start_ms, c.readings)).collect::<Vec<_>>(), [(T0, 1), (T0 + W, 1)]);
}

#[test]
fn a_clock_that_stays_jumped_is_accepted_after_the_accept_time() {
    let mut w = windows();
    let hour = 3_600_000;
    assert_eq!(push_at(&mut w, T0, T0), Push::Accepted);
    assert!(matches!(push_at(&mut w, T0 + hour, T0 + 1_000), Push::ClockJump { .. }));
    assert!(matches!(push_at(&mut w, T0 + hour + 119_000, T0 + 119_999), Push::ClockJump { .. }));
    // 120 s of wall clock after the first jumped reading: the clock was set.
    assert_eq!(push_at(&mut w, T0 + hour + 120_000, T0 + 121_000), Push::Accepted);
    assert_eq!(push_at(&mut w, T0 + hour + 121_000, T0 + 122_000), Push::Accepted);
}

#[test]
fn silence_and_fast_backlogs_are_not_clock_jumps() {
    let mut w = windows();
    let hour = 3_600_000;
    assert_eq!(push_at(&mut w, T0, T0), Push::Accepted);
    // Silent for two hours, back on time.
    assert_eq!(push_at(&mut w, T0 + 2 * hour, T0 + 2 * hour), Push::Accepted);
    // A backlog delivered at 100x: each reading just after the one before.
    for k in 1..1_000 {
        assert_eq!(push_at(&mut w, T0 + 2 * hour + k * 1_000, T0 + 2 * hour + k * 10), Push::Accepted);
    }
    // Off: no check at all.
    let mut w = Windows::new(WindowConfig { clock_jump_secs: 0, ..WindowConfig::default() });
    assert_eq!(push_at(&mut w, T0, T0), Push::Accepted);
    assert_eq!(push_at(&mut w, T0 + hour, T0 + 1), Push::Accepted);
}
