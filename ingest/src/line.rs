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
use influxdb_line_protocol::LineProtocolBuilder;

/// Append one line per window to `buf`.
/// `part` tags every line (the replica's name) when windows are partial.
pub fn write_windows(measurement: &str, part: Option<&str>, windows: &[ClosedWindow], buf: Vec<u8>) -> Vec<u8> {
    let mut builder = LineProtocolBuilder::new_with(buf);
    for window in windows {
        let line = builder.measurement(measurement);
        let line = match part {
            Some(part) => line.tag("part", part),
            None => line,
        };
        let mut line = line
            .tag("sensor", window.key.sensor.as_str())
            .tag("source", window.key.source.name())
            .field("readings", window.readings as i64);
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
        let text = String::from_utf8(write_windows("m", None, &[window()], Vec::new())).unwrap();
        assert!(text.starts_with("m,sensor=s1,source=raw readings=360i,p_l1_mean=100.00138888888888"), "{text}");
        assert!(text.contains(",p_l1_sum=36000.5,p_l1_count=360i,"), "{text}");
        assert!(text.contains(",p_sum_sum=36000.5,p_sum_count=360i 60000\n"), "{text}");
    }

    #[test]
    fn a_partial_window_carries_its_part_tag_so_replicas_never_overwrite_each_other() {
        let text = String::from_utf8(write_windows("m", Some("ingest-0"), &[window()], Vec::new())).unwrap();
        assert!(text.starts_with("m,part=ingest-0,sensor=s1,source=raw readings=360i,"), "{text}");
    }
}
