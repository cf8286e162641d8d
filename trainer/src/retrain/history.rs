//! One sensor's history as intervals: from a meter CSV, or from the
//! line-protocol files ingest's `file` sink writes (per-phase window means,
//! `p_l1_mean` ... `p_l3_mean`, tags `sensor` and `source`). A window written
//! twice (a sink retried after a crash) counts once; lines of other sensors,
//! sources or measurements are passed over; a line that does not parse is
//! counted and skipped, never fatal.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use gridcast_core::features::Interval;

use super::config::HistoryConfig;
use super::parts::{self, PartRow};
use crate::data::MeterRows;

/// The history averaged to `interval_secs`.
pub async fn load(config: &HistoryConfig, interval_secs: u32) -> anyhow::Result<Vec<Interval>> {
    let rows = match (&config.csv, &config.lines_dir, &config.influx) {
        (Some(csv), _, _) => MeterRows::load(csv)?,
        (None, Some(dir), _) => {
            let sensor = config.sensor.as_deref().context("[history] sensor is needed with lines_dir")?;
            from_lines_dir(dir, &config.measurement, sensor, config.source.name())?
        }
        (None, None, Some(influx)) => {
            let sensor = config.sensor.as_deref().context("[history] sensor is needed with [history.influx]")?;
            super::influx::load(influx, &config.measurement, sensor, config.source.name()).await?
        }
        (None, None, None) => anyhow::bail!("[history] has none of csv, lines_dir and [history.influx]"),
    };
    let interval = rows.interval_secs(Some(interval_secs))?;
    Ok(rows.intervals(interval))
}

/// The windows of `sensor` in every `*.lp` file of `dir`, by window start.
pub fn from_lines_dir(dir: &Path, measurement: &str, sensor: &str, source: &str) -> anyhow::Result<MeterRows> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading the folder {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "lp"))
        .collect();
    files.sort();
    let mut windows: BTreeMap<(i64, String), PartRow> = BTreeMap::new();
    let mut unreadable = 0u64;
    for file in &files {
        let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        unreadable += windows_of(&text, measurement, sensor, source, &mut windows);
    }
    if unreadable > 0 {
        eprintln!("history: skipped {unreadable} line(s) that are not line protocol in {}", dir.display());
    }
    anyhow::ensure!(
        !windows.is_empty(),
        "no {measurement} windows of sensor {sensor:?} (source {source}) in {} ({} .lp files)",
        dir.display(),
        files.len()
    );
    Ok(MeterRows::from_rows(parts::windows(windows)))
}

/// The per-phase fields ingest writes, without their suffixes.
const PHASES: [&str; 3] = ["p_l1", "p_l2", "p_l3"];

/// Add the sensor's windows in `text` to `windows`; returns the lines that
/// did not parse. Timestamps are ms (ingest writes with ms precision).
fn windows_of(
    text: &str,
    measurement: &str,
    sensor: &str,
    source: &str,
    windows: &mut BTreeMap<(i64, String), PartRow>,
) -> u64 {
    let mut unreadable = 0;
    for line in influxdb_line_protocol::parse_lines(text) {
        let Ok(line) = line else {
            unreadable += 1;
            continue;
        };
        let tag =
            |k: &str| line.series.tag_set.as_ref()?.iter().find(|(key, _)| key.as_str() == k).map(|(_, v)| v.as_str());
        if line.series.measurement.as_str() != measurement
            || tag("sensor") != Some(sensor)
            || tag("source") != Some(source)
        {
            continue;
        }
        let Some(ts_ms) = line.timestamp else {
            unreadable += 1;
            continue;
        };
        let field = |name: &str| match line.field_value(name) {
            Some(influxdb_line_protocol::FieldValue::F64(v)) if v.is_finite() => Some(*v),
            _ => None,
        };
        let count = |name: &str| match line.field_value(name) {
            Some(influxdb_line_protocol::FieldValue::I64(n)) => Some(*n as f64),
            _ => None,
        };
        let row = PartRow {
            mean: PHASES.map(|p| field(&format!("{p}_mean"))),
            sum: PHASES.map(|p| field(&format!("{p}_sum"))),
            count: PHASES.map(|p| count(&format!("{p}_count"))),
        };
        windows.insert((ts_ms, tag("part").unwrap_or_default().to_string()), row);
    }
    unreadable
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_windows_of_replicas_add_up_and_a_window_written_twice_counts_once() {
        let text = concat!(
            "m,part=a,sensor=s,source=raw readings=3i,p_l1_mean=10,p_l1_sum=30,p_l1_count=3i 60000\n",
            "m,part=b,sensor=s,source=raw readings=1i,p_l1_mean=50,p_l1_sum=50,p_l1_count=1i 60000\n",
            "m,part=b,sensor=s,source=raw readings=1i,p_l1_mean=50,p_l1_sum=50,p_l1_count=1i 60000\n",
            "m,sensor=s,source=raw readings=2i,p_l1_mean=7,p_l1_sum=14,p_l1_count=2i 120000\n",
            "m,sensor=other,source=raw readings=2i,p_l1_mean=1,p_l1_sum=2,p_l1_count=2i 120000\n",
            "not line protocol\n",
        );
        let mut windows = BTreeMap::new();
        assert_eq!(windows_of(text, "m", "s", "raw", &mut windows), 1);
        let rows = parts::windows(windows);
        assert_eq!(
            rows.iter().map(|r| (r.ts_ms, r.p_w[0])).collect::<Vec<_>>(),
            [(60000, Some(20.0)), (120000, Some(7.0))]
        );
    }
}
