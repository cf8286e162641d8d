//! The meter CSV (`timestamp`, `p_l1`, optional `p_l2`, `p_l3`) that
//! `gridcast train`, retrain's `[history] csv` and the simulator read.
//!
//! Beyond "no panic": rows come in strictly increasing time with finite
//! values and growing line numbers, and reading stops at the first error.
#![no_main]

use gridcast_core::meter_csv::MeterCsv;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let csv = match MeterCsv::new(data) {
        Ok(csv) => csv,
        Err(e) => {
            let _ = (e.to_string(), e.line());
            return;
        }
    };
    assert!(csv.phases()[0], "p_l1 is required");
    let mut previous: Option<(i64, u64)> = None;
    let mut failed = false;
    for row in csv {
        assert!(!failed, "a row after an error");
        match row {
            Ok(row) => {
                if let Some((ts, line)) = previous {
                    assert!(row.ts_ms > ts, "time goes back: {} after {ts}", row.ts_ms);
                    assert!(row.line > line, "line {} after line {line}", row.line);
                }
                assert!(row.line >= 2, "a data row on the header's line");
                assert!(row.p_w.iter().flatten().all(|v| v.is_finite()));
                previous = Some((row.ts_ms, row.line));
            }
            Err(e) => {
                let _ = (e.to_string(), e.line());
                failed = true;
            }
        }
    }
});
