//! Closed windows as InfluxDB line protocol, millisecond precision (pure).
//!
//! One line per window: measurement, tags `sensor` and `source`, and for every
//! field present `<field>_mean`, `_min`, `_max` (floats) and `_count`
//! (integer), plus the phase sums and the window's reading count. Tag keys and
//! field keys come from disjoint sets, and a field's type is fixed by its
//! suffix, so neither can collide or change type between writes.

use gridcast_core::window::{ClosedWindow, FieldStats};
use influxdb_line_protocol::LineProtocolBuilder;

/// Append one line per window to `buf`.
pub fn write_windows(measurement: &str, windows: &[ClosedWindow], buf: Vec<u8>) -> Vec<u8> {
    let mut builder = LineProtocolBuilder::new_with(buf);
    for window in windows {
        let mut line = builder
            .measurement(measurement)
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
        .field(&format!("{name}_count"), stats.count as i64)
}
