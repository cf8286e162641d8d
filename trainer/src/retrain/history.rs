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
use gridcast_core::meter_csv::MeterRow;

use super::config::HistoryConfig;
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
    let mut windows: BTreeMap<i64, [Option<f64>; 3]> = BTreeMap::new();
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
    let rows = windows.into_iter().map(|(ts_ms, p_w)| MeterRow { line: 0, ts_ms, p_w }).collect();
    Ok(MeterRows::from_rows(rows))
}

/// Add the sensor's windows in `text` to `windows`; returns the lines that
/// did not parse. Timestamps are ms (ingest writes with ms precision).
fn windows_of(
    text: &str,
    measurement: &str,
    sensor: &str,
    source: &str,
    windows: &mut BTreeMap<i64, [Option<f64>; 3]>,
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
        windows.insert(ts_ms, [field("p_l1_mean"), field("p_l2_mean"), field("p_l3_mean")]);
    }
    unreadable
}
