//! Closed windows as InfluxDB line protocol, millisecond precision (pure).
//!
//! One line per window: measurement, tags `sensor` and `source`, and for every
//! field present `<field>_mean`, `_min`, `_max`, `_sum` (floats) and `_count`
//! (integer), plus the phase sums and the window's reading count. Tag keys and
//! field keys come from disjoint sets, and a field's type is fixed by its
//! suffix, so neither can collide or change type between writes.
//!
//! **Partial windows.** Replicas on a shared subscription each see part of a
//! sensor's minute (Mosquitto dispatches round-robin). Each then writes its
//! part under its own `part` tag (its MQTT client id), so no replica
//! overwrites another's point, and the minute's figures are sums over the
//! parts: mean = `sum("x_sum") / sum("x_count")`, readings = `sum("readings")`,
//! min of the mins, max of the maxes. The dashboards query the same way,
//! which is exact for whole windows too (one part).

use gridcast_core::window::{ClosedWindow, FieldStats};
use gridcast_edge::stats::Snapshot;
use influxdb_line_protocol::LineProtocolBuilder;

/// Append one line per window to `buf`.
/// The tags ingest adds to every window besides `sensor` and `source`.
#[derive(Debug, Clone, Default)]
pub struct ExtraTags {
    /// The replica's name, when it writes partial windows.
    pub part: Option<String>,
    /// The configured site, if any.
    pub site: Option<String>,
}

/// One line per window, with `tags` (in key order: part, sensor, site, source).
pub fn write_windows(measurement: &str, tags: &ExtraTags, windows: &[ClosedWindow], buf: Vec<u8>) -> Vec<u8> {
    let mut builder = LineProtocolBuilder::new_with(buf);
    for window in windows {
        let line = tag_if(builder.measurement(measurement), "part", tags.part.as_deref());
        let line = tag_if(line.tag("sensor", window.key.sensor.as_str()), "site", tags.site.as_deref());
        let mut line = line.tag("source", window.key.source.name()).field("readings", window.readings as i64);
        for (field, stats) in &window.fields {
            line = stat_fields(line, field.name(), stats);
        }
        for (sum, stats) in &window.sums {
            line = stat_fields(line, sum.name(), stats);
        }
        builder = line.timestamp(window.start_ms).close_line();
    }
    builder.build()
}

/// Ingest's own counters as one line (`[pipeline] stats_measurement`),
/// written through the sinks beside the windows so a site's Grafana can
/// draw ingest's health without Prometheus. Tags `instance` (the client id)
/// and `site` (if configured);
/// integer fields, each a running total since ingest started (queries take
/// `non_negative_derivative` or `non_negative_difference`), except the
/// spool's and the windows' current levels.
pub fn write_stats(
    measurement: &str,
    (instance, site): (&str, Option<&str>),
    stats: &Snapshot,
    spool_waiting_bytes: u64,
    spool_max_bytes: u64,
    now_ms: i64,
    buf: Vec<u8>,
) -> Vec<u8> {
    let int = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let line = LineProtocolBuilder::new_with(buf).measurement(measurement).tag("instance", instance);
    tag_if(line, "site", site)
        .field("messages", int(stats.messages))
        .field("readings", int(stats.readings))
        .field("late_readings", int(stats.late_readings))
        .field("duplicate_readings", int(stats.duplicate_readings))
        .field("key_limit_readings", int(stats.key_limit_readings))
        .field("rejected_messages", int(stats.decode_errors_total()))
        .field("windows_closed", int(stats.windows_closed))
        .field("open_windows", int(stats.open_windows))
        .field("mqtt_reconnects", int(stats.mqtt_reconnects))
        .field("sink_lines_written", int(stats.sinks.values().map(|s| s.lines_written).sum()))
        .field("sink_retries", int(stats.sinks.values().map(|s| s.retries).sum()))
        .field("spool_full_waits", int(stats.spool_full_waits))
        .field("spool_waiting_bytes", int(spool_waiting_bytes))
        .field("spool_max_bytes", int(spool_max_bytes))
        .timestamp(now_ms)
        .close_line()
        .build()
}

type AfterMeasurement<B> = LineProtocolBuilder<B, influxdb_line_protocol::builder::AfterMeasurement>;

/// The tag `key` when there is a `value`.
fn tag_if(line: AfterMeasurement<Vec<u8>>, key: &str, value: Option<&str>) -> AfterMeasurement<Vec<u8>> {
    match value {
        Some(value) => line.tag(key, value),
        None => line,
    }
}

type AfterField<B> = LineProtocolBuilder<B, influxdb_line_protocol::builder::AfterField>;

fn stat_fields(line: AfterField<Vec<u8>>, name: &str, stats: &FieldStats) -> AfterField<Vec<u8>> {
    line.field(&format!("{name}_mean"), stats.mean())
        .field(&format!("{name}_min"), stats.min)
        .field(&format!("{name}_max"), stats.max)
        .field(&format!("{name}_sum"), stats.sum)
        .field(&format!("{name}_count"), stats.count as i64)
}

#[cfg(test)]
mod tests {
    use gridcast_core::window::WindowKey;
    use gridcast_core::{Field, PhaseSum, SensorId, Source};

    use super::*;

    fn window() -> ClosedWindow {
        let stats = FieldStats { count: 360, sum: 36_000.5, min: 10.0, max: 500.25 };
        ClosedWindow {
            key: WindowKey { sensor: SensorId::new("s1"), source: Source::Raw },
            start_ms: 60_000,
            width_ms: 60_000,
            readings: 360,
            fields: vec![(Field::PL1, stats)],
            sums: vec![(PhaseSum::P, stats)],
        }
    }

    #[test]
    fn a_whole_window_is_one_line_with_means_and_the_sums_queries_add_up() {
        let text = String::from_utf8(write_windows("m", &ExtraTags::default(), &[window()], Vec::new())).unwrap();
        assert!(text.starts_with("m,sensor=s1,source=raw readings=360i,p_l1_mean=100.00138888888888"), "{text}");
        assert!(text.contains(",p_l1_sum=36000.5,p_l1_count=360i,"), "{text}");
        assert!(text.contains(",p_sum_sum=36000.5,p_sum_count=360i 60000\n"), "{text}");
    }

    #[test]
    fn ingest_counters_are_one_line_of_integers_tagged_with_the_instance() {
        let mut stats = Snapshot { readings: 720, late_readings: 2, open_windows: 3, ..Snapshot::default() };
        stats.decode_errors.insert("bad_length", 4);
        let text = String::from_utf8(write_stats("s", ("ingest-0", None), &stats, 10, 100, 5_000, Vec::new())).unwrap();
        assert!(text.starts_with("s,instance=ingest-0 messages=0i,readings=720i,late_readings=2i,"), "{text}");
        assert!(text.contains(",rejected_messages=4i,windows_closed=0i,open_windows=3i,"), "{text}");
        assert!(text.ends_with(",spool_waiting_bytes=10i,spool_max_bytes=100i 5000\n"), "{text}");
    }

    #[test]
    fn a_partial_window_carries_its_part_tag_so_replicas_never_overwrite_each_other() {
        let tags = ExtraTags { part: Some("ingest-0".into()), site: Some("plant 2".into()) };
        let text = String::from_utf8(write_windows("m", &tags, &[window()], Vec::new())).unwrap();
        assert!(text.starts_with("m,part=ingest-0,sensor=s1,site=plant\\ 2,source=raw readings=360i,"), "{text}");
    }
}
