//! Simulated meter data for the black-box tests, and the minute means the
//! tests expect, computed here independently of gridcast's decoder and
//! windows: straight from the values handed to the publisher.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

use super::{INFLUX_DB, influxql_values};
use gridcast_simulator::{
    Generator, GeneratorConfig, PublishOptions, PublishReport, Series, SimReading, Start, publish, sensor_hex,
};

/// The credited real-data sample shipped in the repository.
pub fn sample_csv() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("samples/uci_household_2007-01_14d.csv")
}

/// `minutes` minutes of 12 Hz readings for `sensors` sensors from the sample,
/// with the CSV's own (2007) timestamps, in time order.
pub fn simulated_readings(sensors: u32, minutes: usize) -> Vec<SimReading> {
    let series = Series::load(&sample_csv()).expect("the shipped sample loads");
    let config =
        GeneratorConfig { sensors, minutes: Some(minutes), start: Start::Csv, seed: 7, ..GeneratorConfig::default() };
    Generator::new(&series, config).expect("generator").readings().collect()
}

/// Publishes `readings` at QoS 1 from a thread of its own (with its own
/// runtime), as the meters' gateway would; the handle gives the report, and
/// panics if a message was never acknowledged.
pub fn publish_in_background<I>(options: PublishOptions, readings: I) -> std::thread::JoinHandle<PublishReport>
where
    I: IntoIterator<Item = SimReading> + Send + 'static,
{
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(publish(&options, readings, |_| {})).expect("every message acknowledged")
    })
}

/// One expected minute of one sensor.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExpectedMinute {
    pub readings: u64,
    /// Mean of p_l1, p_l2, p_l3 in W, and of their sum.
    pub p_mean: [f64; 3],
    pub p_sum_mean: f64,
    pub q_mean: [f64; 3],
}

/// Expected minutes by (sensor hex id, minute start in ms).
pub type Expected = BTreeMap<(String, i64), ExpectedMinute>;

/// Per-minute means of what was published, by plain summation.
pub fn expected_minutes(readings: &[SimReading]) -> Expected {
    // Sums first, in the same struct; divided by the count at the end.
    let mut minutes = Expected::new();
    for r in readings {
        let ts_ms = (r.ts_secs * 1000.0).round() as i64;
        let minute = ts_ms.div_euclid(60_000) * 60_000;
        let m = minutes.entry((sensor_hex(&r.sensor), minute)).or_default();
        m.readings += 1;
        for (phase, (p, q)) in r.p_milli.iter().zip(&r.q_milli).enumerate() {
            m.p_mean[phase] += *p as f64 / 1000.0;
            m.q_mean[phase] += *q as f64 / 1000.0;
        }
        m.p_sum_mean += r.p_milli.iter().map(|p| *p as f64 / 1000.0).sum::<f64>();
    }
    for m in minutes.values_mut() {
        let n = m.readings as f64;
        m.p_mean = m.p_mean.map(|s| s / n);
        m.q_mean = m.q_mean.map(|s| s / n);
        m.p_sum_mean /= n;
    }
    minutes
}

/// `|a - b| <= tol * max(|a|, |b|)`, with an absolute floor for zeros.
pub fn close(a: f64, b: f64, tol: f64) -> bool {
    let scale = a.abs().max(b.abs());
    (a - b).abs() <= tol * scale || (a - b).abs() <= 1e-9
}

/// `[time, sensor, readings, p_l1_mean, p_l2_mean, p_l3_mean, p_sum_mean, q_l1_mean]`
/// rows, only those with every column: InfluxDB 1.x stores a point's fields
/// one by one, and a query racing a write can see some of them (a raw window
/// always has all of these).
pub fn influx_rows(url: &str, measurement: &str) -> Vec<Vec<Value>> {
    let mut rows = influxql_values(
        url,
        INFLUX_DB,
        &format!(
            r#"SELECT "sensor", "readings", "p_l1_mean", "p_l2_mean", "p_l3_mean", "p_sum_mean", "q_l1_mean" FROM "{measurement}" WHERE "source" = 'raw'"#
        ),
    );
    rows.retain(|row| row.iter().all(|v| !v.is_null()));
    rows
}

pub fn check_influx_rows(rows: &[Vec<Value>], expected: &Expected) {
    for row in rows {
        let time = row[0].as_i64().unwrap();
        let sensor = row[1].as_str().unwrap().to_string();
        let want = expected.get(&(sensor.clone(), time)).unwrap_or_else(|| panic!("unexpected window {sensor} {time}"));
        assert_eq!(row[2].as_i64().unwrap() as u64, want.readings, "{sensor} {time}: readings");
        let got: Vec<f64> = row[3..8].iter().map(|v| v.as_f64().unwrap()).collect();
        let want_values = [want.p_mean[0], want.p_mean[1], want.p_mean[2], want.p_sum_mean, want.q_mean[0]];
        for (name, (g, w)) in ["p_l1", "p_l2", "p_l3", "p_sum", "q_l1"].iter().zip(got.iter().zip(want_values)) {
            assert!(close(*g, w, 1e-9), "InfluxDB {sensor} minute {time} {name}_mean: got {g}, expected {w}");
        }
    }
}
