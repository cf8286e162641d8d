//! History from InfluxDB: the `meter_window` series ingest wrote, read with
//! InfluxQL over v1 `/query` (chunked).

use super::config::InfluxHistoryConfig;
use crate::data::MeterRows;

/// The windows of `sensor` (tag `source` = `source`) in `measurement`.
pub async fn load(
    config: &InfluxHistoryConfig,
    measurement: &str,
    sensor: &str,
    source: &str,
) -> anyhow::Result<MeterRows> {
    let _ = (config, measurement, sensor, source);
    anyhow::bail!("history from InfluxDB is not built yet")
}
