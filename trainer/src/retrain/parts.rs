//! Partial windows, added up (pure). Ingest replicas on a shared
//! subscription each see part of a sensor's minute (Mosquitto dispatches
//! round-robin) and write their part under their own `part` tag. A window
//! is then several rows, one per part; its mean per phase is the sum of the
//! parts' sums over the sum of their counts. A whole window (one part, no
//! `part` tag) is taken as it is: its mean is used bit for bit.
//!
//! Both history readers (InfluxDB and ingest's line files) key what they
//! read by (window start, part), the later row of a key winning (a window
//! written twice counts once), and hand the result to [`windows`].

use std::collections::BTreeMap;

use gridcast_core::meter_csv::MeterRow;

/// One part's figures of one window: per phase (L1, L2, L3) the mean, the
/// sum and the count ingest wrote (`p_l1_mean`, `p_l1_sum`, `p_l1_count`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PartRow {
    pub mean: [Option<f64>; 3],
    pub sum: [Option<f64>; 3],
    pub count: [Option<f64>; 3],
}

/// The window's per-phase means from its parts.
pub fn combine(parts: &[PartRow]) -> [Option<f64>; 3] {
    if let [one] = parts {
        return one.mean;
    }
    std::array::from_fn(|phase| {
        let (mut sum, mut count) = (0.0, 0.0);
        for part in parts {
            let Some(n) = part.count[phase].filter(|n| *n > 0.0) else { continue };
            // Windows written before ingest wrote sums carry the mean only.
            let Some(s) = part.sum[phase].or_else(|| part.mean[phase].map(|m| m * n)) else { continue };
            sum += s;
            count += n;
        }
        (count > 0.0).then(|| sum / count)
    })
}

/// One row per window start, from rows keyed by (window start, part).
pub fn windows(parts: BTreeMap<(i64, String), PartRow>) -> Vec<MeterRow> {
    let mut rows = Vec::new();
    let mut group: Vec<PartRow> = Vec::new();
    let mut group_ts = None;
    for ((ts_ms, _part), row) in parts {
        if group_ts.is_some_and(|ts| ts != ts_ms) {
            rows.push(MeterRow { line: 0, ts_ms: group_ts.unwrap(), p_w: combine(&group) });
            group.clear();
        }
        group_ts = Some(ts_ms);
        group.push(row);
    }
    if let Some(ts_ms) = group_ts {
        rows.push(MeterRow { line: 0, ts_ms, p_w: combine(&group) });
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(mean: f64, sum: Option<f64>, count: f64) -> PartRow {
        PartRow { mean: [Some(mean), None, None], sum: [sum, None, None], count: [Some(count), None, None] }
    }

    #[test]
    fn a_whole_window_keeps_its_mean_bit_for_bit() {
        let one = part(0.1 + 0.2, Some(1.0), 3.0);
        assert_eq!(combine(&[one]), [Some(0.1 + 0.2), None, None]);
    }

    #[test]
    fn parts_add_up_to_the_mean_of_all_their_readings() {
        // 3 readings summing to 30 and 1 reading of 50: the mean is 20, not 30.
        let parts = [part(10.0, Some(30.0), 3.0), part(50.0, Some(50.0), 1.0)];
        assert_eq!(combine(&parts), [Some(20.0), None, None]);
        // A part written before sums were: its mean times its count.
        let parts = [part(10.0, None, 3.0), part(50.0, Some(50.0), 1.0)];
        assert_eq!(combine(&parts), [Some(20.0), None, None]);
    }

    #[test]
    fn rows_are_grouped_by_window_start_in_time_order() {
        let mut parts = BTreeMap::new();
        parts.insert((2000, "b".to_string()), part(50.0, Some(50.0), 1.0));
        parts.insert((1000, String::new()), part(7.0, Some(14.0), 2.0));
        parts.insert((2000, "a".to_string()), part(10.0, Some(30.0), 3.0));
        let rows = windows(parts);
        assert_eq!(
            rows.iter().map(|r| (r.ts_ms, r.p_w[0])).collect::<Vec<_>>(),
            [(1000, Some(7.0)), (2000, Some(20.0))]
        );
    }
}
