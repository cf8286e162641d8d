//! The simulated meter: minute rows in, 12 Hz readings out, for N sensors.
//!
//! Pure and deterministic: the same series, config and seed give the same
//! readings, bit for bit, on every machine (the noise comes from a hash of
//! `(seed, sensor, minute, k)`, not from a stateful RNG, so it does not depend
//! on iteration order or on a crate's RNG algorithm).
//!
//! Within a minute, each phase's power follows a quadratic that starts at the
//! midpoint between the previous minute and this one, ends at the midpoint
//! between this minute and the next, and has this minute's value as its mean:
//! the curve is continuous across minutes and the per-minute mean of the
//! readings stays close to the CSV's value (exact up to the noise and the
//! sampling), which is what the windows downstream compute. A load that
//! would have to dip below 0 W for that (one that switched at the boundary)
//! holds the minute's value instead. On top sits ±1 % relative noise (so a
//! circuit at 0 W stays at 0 W), and reactive power follows from a per-sensor,
//! per-phase power factor between 0.90 and 0.98 that drifts slowly.

use std::sync::Arc;

use gridcast_core::payload::{FEATURE_RAW, encode_raw};

use crate::series::{MinuteRow, Series};

/// Readings per second per sensor.
pub const READINGS_PER_SECOND: u32 = 12;
/// Readings per minute per sensor.
pub const READINGS_PER_MINUTE: u32 = 60 * READINGS_PER_SECOND;
/// Size of one raw binary record (`=Bd12sBqqqqqq`).
pub const RECORD_LEN: usize = gridcast_core::payload::RAW_RECORD_LEN;

/// Where the simulated clock starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Use the CSV's own timestamps (past the end of the file, when
    /// `minutes` asks for more rows than it has, minutes continue from its last row).
    Csv,
    /// The first minute starts at this Unix second; minute `m` at `+ 60 m`
    /// (gaps in the CSV are closed up).
    At(i64),
}

/// How to turn a series into readings.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratorConfig {
    /// Number of simulated sensors (at least 1).
    pub sensors: u32,
    /// Minutes to simulate; `None` = as many as the CSV has rows. More than
    /// that wraps around to the first row.
    pub minutes: Option<usize>,
    pub start: Start,
    /// Seed of the noise and of the power factors.
    pub seed: u64,
    /// Sensor `i` replays the CSV from row `i * sensor_offset_minutes`
    /// (wrapping), so sensors differ. The default, one day, keeps each
    /// sensor's daily rhythm on the clock's time of day.
    pub sensor_offset_minutes: usize,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig { sensors: 3, minutes: None, start: Start::Csv, seed: 1, sensor_offset_minutes: 1440 }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum GeneratorError {
    #[error("the simulator needs at least one sensor")]
    NoSensors,
    #[error("the simulator needs at least one minute to replay")]
    NoMinutes,
    #[error("minute {minute} would start at Unix second {ts}, out of range")]
    TimeOutOfRange { minute: usize, ts: i128 },
}

/// One simulated 12 Hz reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimReading {
    /// The sensor's 12-byte id (see [`sensor_id`]).
    pub sensor: [u8; 12],
    /// Event time, Unix seconds: `minute_start + k / 12`, the nearest f64.
    pub ts_secs: f64,
    /// Active power L1..L3 in mW.
    pub p_milli: [i64; 3],
    /// Reactive power L1..L3 in mvar.
    pub q_milli: [i64; 3],
}

/// The id of simulated sensor `index`: `b"gridcast"` then the index as a
/// big-endian u32, e.g. `677269646361737400000001` for sensor 1.
pub fn sensor_id(index: u32) -> [u8; 12] {
    let mut id = [0u8; 12];
    id[..8].copy_from_slice(b"gridcast");
    id[8..].copy_from_slice(&index.to_be_bytes());
    id
}

/// Lowercase hex of a sensor id, as in topics and in the `sensor` tag.
pub fn sensor_hex(id: &[u8; 12]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// Encode readings as one raw-binary payload: their 70-byte records
/// concatenated, in the order given.
pub fn encode_batch(batch: &[SimReading]) -> Vec<u8> {
    let mut out = Vec::with_capacity(batch.len() * RECORD_LEN);
    for r in batch {
        // Phase 0: the record carries all three phases, as the meter's own
        // ten-second records do.
        out.extend_from_slice(&encode_raw(FEATURE_RAW, r.ts_secs, &r.sensor, 0, r.p_milli, r.q_milli));
    }
    out
}

/// The simulated meter. Cheap to clone (the rows are shared).
#[derive(Debug, Clone)]
pub struct Generator {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    rows: Vec<MinuteRow>,
    config: GeneratorConfig,
    ids: Vec<[u8; 12]>,
    minutes: usize,
}

impl Generator {
    pub fn new(series: &Series, config: GeneratorConfig) -> Result<Generator, GeneratorError> {
        if config.sensors == 0 {
            return Err(GeneratorError::NoSensors);
        }
        let rows = series.rows().to_vec();
        let minutes = config.minutes.unwrap_or(rows.len());
        if minutes == 0 || rows.is_empty() {
            return Err(GeneratorError::NoMinutes);
        }
        let ids = (0..config.sensors).map(sensor_id).collect();
        let inner = Inner { rows, config, ids, minutes };
        // Minute starts only grow, so checking the first and last covers all:
        // 12 * ts must fit an i64 and stay exact in an f64 (< 2^53).
        for minute in [0, minutes - 1] {
            let ts = inner.minute_start_wide(minute);
            if ts.abs() > (1i128 << 48) {
                return Err(GeneratorError::TimeOutOfRange { minute, ts });
            }
        }
        Ok(Generator { inner: Arc::new(inner) })
    }

    pub fn config(&self) -> &GeneratorConfig {
        &self.inner.config
    }

    /// The sensors' ids, by index.
    pub fn sensors(&self) -> &[[u8; 12]] {
        &self.inner.ids
    }

    /// Number of simulated minutes.
    pub fn minutes(&self) -> usize {
        self.inner.minutes
    }

    /// Start of simulated minute `minute`, Unix seconds.
    pub fn minute_start(&self, minute: usize) -> Option<i64> {
        (minute < self.inner.minutes).then(|| self.inner.minute_start(minute))
    }

    /// Total readings the iterator yields.
    pub fn total_readings(&self) -> u64 {
        self.inner.minutes as u64 * READINGS_PER_MINUTE as u64 * self.inner.ids.len() as u64
    }

    /// The CSV row sensor `sensor` replays in simulated minute `minute`.
    pub fn source_row(&self, sensor: u32, minute: usize) -> &MinuteRow {
        &self.inner.rows[self.inner.row_index(sensor, minute)]
    }

    /// All readings in time order: for each instant, every sensor in index order.
    pub fn readings(&self) -> Readings {
        Readings { inner: self.inner.clone(), minute: 0, k: 0, sensor: 0, shapes: Vec::new() }
    }

    /// One payload carrying `batch`'s records, concatenated (see [`encode_batch`]).
    pub fn payload(&self, batch: &[SimReading]) -> Vec<u8> {
        encode_batch(batch)
    }
}

impl Inner {
    /// Start of minute `minute`, in i128 so that `new` can range-check it.
    fn minute_start_wide(&self, minute: usize) -> i128 {
        match self.config.start {
            Start::At(t0) => t0 as i128 + 60 * minute as i128,
            Start::Csv => match self.rows.get(minute) {
                Some(row) => row.ts_secs as i128,
                None => {
                    let last = self.rows.len() - 1;
                    self.rows[last].ts_secs as i128 + 60 * (minute - last) as i128
                }
            },
        }
    }

    /// Start of a minute `new` has range-checked.
    fn minute_start(&self, minute: usize) -> i64 {
        self.minute_start_wide(minute) as i64
    }

    fn row_index(&self, sensor: u32, minute: usize) -> usize {
        let n = self.rows.len();
        let offset = (sensor as usize % n) * (self.config.sensor_offset_minutes % n) % n;
        (minute % n + offset) % n
    }

    /// The curves of one sensor's minute: per phase, `p(x) = a + b x + c x (1 - x)`
    /// with `x` running from 0 to 1 across the minute, and `tan(phi)` for
    /// reactive power.
    fn shape(&self, sensor: u32, minute: usize) -> MinuteShape {
        let n = self.rows.len();
        let r = self.row_index(sensor, minute);
        let cur = self.rows[r].p_w;
        // Neighbours are the rows this sensor replays in the previous and next
        // simulated minute, so the curve is continuous where the sensor's
        // stream is; at the ends of the run the minute's own value stands in.
        let prev = if minute == 0 { cur } else { self.rows[(r + n - 1) % n].p_w };
        let next = if minute + 1 >= self.minutes { cur } else { self.rows[(r + 1) % n].p_w };
        let mut phases = [PhaseShape::default(); 3];
        for (j, shape) in phases.iter_mut().enumerate() {
            let (m, start, end) = (cur[j], (prev[j] + cur[j]) / 2.0, (cur[j] + next[j]) / 2.0);
            // The quadratic's mean over [0, 1] is (start + end) / 2 + c / 6; pick c so it is m.
            let c = 6.0 * (m - (start + end) / 2.0);
            let (a, b, c) = if m >= 0.0 && quadratic_min(start, end - start, c) < 0.0 {
                // A consumer's power never goes negative. When the smooth curve
                // would dip below 0 W (a load that switched on or off at the
                // minute boundary), hold the minute's value instead: a step, as
                // a real switching load makes, with the mean kept exact.
                (m, 0.0, 0.0)
            } else {
                (start, end - start, c)
            };
            let pf = self.power_factor(sensor, j, minute);
            *shape = PhaseShape { a, b, c, tan_phi: (1.0 - pf * pf).sqrt() / pf };
        }
        MinuteShape { phases }
    }

    /// A power factor in [0.90, 0.98]: a per-sensor, per-phase base that
    /// drifts by ±0.01 over a three-hour cycle.
    fn power_factor(&self, sensor: u32, phase: usize, minute: usize) -> f64 {
        let h = hash(&[self.config.seed, 0x9f_u64, sensor as u64, phase as u64]);
        let base = 0.91 + 0.06 * unit(h);
        // A triangle wave rather than a sine: plain arithmetic and sqrt are
        // exact in IEEE 754, libm's sin is not the same everywhere.
        let t = minute as f64 / 180.0 + unit(h.rotate_left(17));
        let wave = 4.0 * (t.fract() - 0.5).abs() - 1.0;
        (base + 0.01 * wave).clamp(0.90, 0.98)
    }

    fn reading(&self, shapes: &[MinuteShape], sensor: u32, minute: usize, k: u32) -> SimReading {
        let start = self.minute_start(minute);
        // Sample at the middle of each twelfth of a second: the midpoint rule
        // is exact for the linear part, so the sampled mean is the curve's mean.
        let x = (k as f64 + 0.5) / READINGS_PER_MINUTE as f64;
        let h = hash(&[self.config.seed, sensor as u64, minute as u64, k as u64]);
        let shape = &shapes[sensor as usize];
        let mut p_milli = [0i64; 3];
        let mut q_milli = [0i64; 3];
        for (j, s) in shape.phases.iter().enumerate() {
            let mut p = s.a + s.b * x + s.c * x * (1.0 - x);
            // Triangular noise in [-1 %, +1 %] from two 10-bit slices of the hash.
            let u1 = ((h >> (j * 20)) & 0x3ff) as f64;
            let u2 = ((h >> (j * 20 + 10)) & 0x3ff) as f64;
            p *= 1.0 + 0.01 * (u1 - u2) / 1023.0;
            p_milli[j] = (p * 1000.0).round() as i64;
            q_milli[j] = (p * s.tan_phi * 1000.0).round() as i64;
        }
        SimReading {
            sensor: self.ids[sensor as usize],
            // One rounding from the exact rational: the nearest f64 to start + k/12.
            ts_secs: (start * READINGS_PER_SECOND as i64 + k as i64) as f64 / READINGS_PER_SECOND as f64,
            p_milli,
            q_milli,
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct PhaseShape {
    a: f64,
    b: f64,
    c: f64,
    tan_phi: f64,
}

#[derive(Debug, Clone, Copy)]
struct MinuteShape {
    phases: [PhaseShape; 3],
}

/// Iterator over a generator's readings, in time order. Owns what it needs
/// (`Send + 'static`), so a task can hold it.
#[derive(Debug)]
pub struct Readings {
    inner: Arc<Inner>,
    minute: usize,
    k: u32,
    sensor: u32,
    /// This minute's curves, one per sensor; computed when the minute begins.
    shapes: Vec<MinuteShape>,
}

impl Iterator for Readings {
    type Item = SimReading;

    fn next(&mut self) -> Option<SimReading> {
        if self.minute >= self.inner.minutes {
            return None;
        }
        if self.shapes.is_empty() {
            self.shapes = (0..self.inner.ids.len() as u32).map(|s| self.inner.shape(s, self.minute)).collect();
        }
        let reading = self.inner.reading(&self.shapes, self.sensor, self.minute, self.k);
        self.sensor += 1;
        if self.sensor as usize == self.inner.ids.len() {
            self.sensor = 0;
            self.k += 1;
            if self.k == READINGS_PER_MINUTE {
                self.k = 0;
                self.minute += 1;
                self.shapes.clear();
            }
        }
        Some(reading)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let sensors = self.inner.ids.len() as u64;
        let done = (self.minute as u64 * READINGS_PER_MINUTE as u64 + self.k as u64) * sensors + self.sensor as u64;
        let total = self.inner.minutes as u64 * READINGS_PER_MINUTE as u64 * sensors;
        let left = usize::try_from(total.saturating_sub(done)).unwrap_or(usize::MAX);
        (left, Some(left))
    }
}

impl ExactSizeIterator for Readings {}

/// The least value of `a + b x + c x (1 - x)` over `x` in [0, 1].
fn quadratic_min(a: f64, b: f64, c: f64) -> f64 {
    let f = |x: f64| a + b * x + c * x * (1.0 - x);
    let mut least = f(0.0).min(f(1.0));
    // Convex (c < 0): the vertex, where the derivative b + c (1 - 2x) is 0, may be inside.
    if c < 0.0 {
        let x = (b + c) / (2.0 * c);
        if (0.0..=1.0).contains(&x) {
            least = least.min(f(x));
        }
    }
    least
}

/// SplitMix64's finaliser over a sequence of words: a counter-based hash that
/// is the same on every platform and in every version of this code.
fn hash(words: &[u64]) -> u64 {
    let mut h: u64 = 0x9e37_79b9_7f4a_7c15;
    for &w in words {
        h = mix(h ^ w.wrapping_mul(0xd6e8_feb8_6659_fd93));
    }
    h
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A hash's top 53 bits as a number in [0, 1).
fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_040; // a whole minute

    fn series(values: &[[f64; 3]]) -> Series {
        let rows = values
            .iter()
            .enumerate()
            .map(|(i, p)| MinuteRow { ts_secs: 1_167_609_600 + 60 * i as i64, p_w: *p })
            .collect();
        Series::from_rows(rows).unwrap()
    }

    fn generator(sensors: u32, minutes: Option<usize>, start: Start) -> Generator {
        let s = series(&[[100.0, 0.0, 2500.0], [200.0, 0.0, 2400.0], [150.0, 50.0, 10.0], [0.0, 3000.0, 900.0]]);
        let config = GeneratorConfig { sensors, minutes, start, seed: 7, sensor_offset_minutes: 1 };
        Generator::new(&s, config).unwrap()
    }

    #[test]
    fn same_seed_same_readings_other_seed_other_noise() {
        let a: Vec<_> = generator(2, None, Start::At(T0)).readings().collect();
        let b: Vec<_> = generator(2, None, Start::At(T0)).readings().collect();
        assert_eq!(a, b);
        let s = series(&[[100.0, 0.0, 2500.0], [200.0, 0.0, 2400.0]]);
        let other = Generator::new(&s, GeneratorConfig { seed: 8, ..GeneratorConfig::default() }).unwrap();
        let same = Generator::new(&s, GeneratorConfig { seed: 7, ..GeneratorConfig::default() }).unwrap();
        assert_ne!(other.readings().take(100).collect::<Vec<_>>(), same.readings().take(100).collect::<Vec<_>>());
    }

    #[test]
    fn every_sensor_gets_720_readings_in_every_minute() {
        let g = generator(3, None, Start::At(T0));
        let readings: Vec<_> = g.readings().collect();
        assert_eq!(readings.len() as u64, g.total_readings());
        assert_eq!(readings.len(), 4 * 720 * 3);
        for sensor in g.sensors() {
            for minute in 0..4 {
                let start = T0 + 60 * minute;
                let n = readings
                    .iter()
                    .filter(|r| r.sensor == *sensor && r.ts_secs >= start as f64 && r.ts_secs < (start + 60) as f64)
                    .count();
                assert_eq!(n, 720, "sensor {sensor:?} minute {minute}");
            }
        }
    }

    #[test]
    fn readings_are_in_time_order_with_sensors_interleaved() {
        let g = generator(3, Some(2), Start::At(T0));
        let readings: Vec<_> = g.readings().collect();
        for (i, chunk) in readings.chunks(3).enumerate() {
            let ids: Vec<_> = chunk.iter().map(|r| r.sensor).collect();
            assert_eq!(ids, g.sensors(), "instant {i}");
            assert!(chunk.iter().all(|r| r.ts_secs == chunk[0].ts_secs));
        }
        assert!(readings.windows(2).all(|w| w[0].ts_secs <= w[1].ts_secs));
    }

    #[test]
    fn timestamps_are_the_nearest_f64_to_minute_start_plus_k_twelfths() {
        let g = generator(1, None, Start::At(T0));
        for (i, r) in g.readings().enumerate() {
            let twelfths = T0 * 12 + i as i64; // one sensor: reading i is k = i since T0
            assert_eq!(r.ts_secs, twelfths as f64 / 12.0, "reading {i}");
            assert_eq!((r.ts_secs * 12.0).round() as i64, twelfths);
            // Decoders take milliseconds; every reading lands in its own minute.
            let ms = (r.ts_secs * 1000.0).round() as i64;
            assert_eq!(ms.div_euclid(60_000), (T0 + 60 * (i as i64 / 720)) / 60);
        }
    }

    #[test]
    fn csv_start_uses_the_files_times_and_continues_past_its_end() {
        let g = generator(1, Some(6), Start::Csv);
        assert_eq!(g.minute_start(0), Some(1_167_609_600));
        assert_eq!(g.minute_start(3), Some(1_167_609_780));
        assert_eq!(g.minute_start(5), Some(1_167_609_900));
        assert_eq!(g.readings().next().unwrap().ts_secs, 1_167_609_600.0);
    }

    #[test]
    fn sensors_replay_offset_rows_and_wrap() {
        let g = generator(3, None, Start::At(T0));
        assert_eq!(g.source_row(0, 0).p_w[0], 100.0);
        assert_eq!(g.source_row(1, 0).p_w[0], 200.0);
        assert_eq!(g.source_row(2, 3).p_w[0], 200.0); // row (3 + 2) % 4 = 1
        assert_eq!(g.sensors()[1], *b"gridcast\0\0\0\x01");
        assert_eq!(sensor_hex(&g.sensors()[1]), "677269646361737400000001");
    }

    #[test]
    fn minute_means_follow_the_csv_and_power_is_never_negative() {
        let g = generator(2, None, Start::At(T0));
        let readings: Vec<_> = g.readings().collect();
        for (s, sensor) in g.sensors().iter().enumerate() {
            for minute in 0..4 {
                let row = g.source_row(s as u32, minute).p_w;
                let mine: Vec<_> =
                    readings.iter().filter(|r| r.sensor == *sensor).skip(720 * minute).take(720).collect();
                for (j, &want) in row.iter().enumerate() {
                    let mean = mine.iter().map(|r| r.p_milli[j] as f64 / 1000.0).sum::<f64>() / 720.0;
                    // Noise (mean 0, ±1 %) and 720-point sampling stay well inside 0.1 % + 1 mW.
                    let tolerance = 0.001 * want + 0.001;
                    let phase = j + 1;
                    assert!((mean - want).abs() <= tolerance, "s{s} m{minute} L{phase}: {mean} vs {want}");
                    assert!(mine.iter().all(|r| r.p_milli[j] >= 0));
                    if want == 0.0 {
                        assert!(mine.iter().all(|r| r.p_milli[j] == 0), "0 W stays 0 W");
                    }
                }
            }
        }
    }

    #[test]
    fn reactive_power_matches_a_power_factor_between_090_and_098() {
        let g = generator(3, None, Start::At(T0));
        for r in g.readings().filter(|r| r.p_milli[2] > 100_000) {
            let (p, q) = (r.p_milli[2] as f64, r.q_milli[2] as f64);
            let pf = p / (p * p + q * q).sqrt();
            assert!((0.8999..=0.9801).contains(&pf), "pf {pf}");
        }
    }

    #[test]
    fn payload_is_concatenated_70_byte_records() {
        let g = generator(2, Some(1), Start::At(T0));
        let batch: Vec<_> = g.readings().take(3).collect();
        let payload = g.payload(&batch);
        assert_eq!(payload.len(), 3 * RECORD_LEN);
        for (record, r) in payload.chunks(RECORD_LEN).zip(&batch) {
            assert_eq!(record[0], FEATURE_RAW);
            assert_eq!(f64::from_le_bytes(record[1..9].try_into().unwrap()), r.ts_secs);
            assert_eq!(&record[9..21], &r.sensor);
            assert_eq!(record[21], 0);
            assert_eq!(i64::from_le_bytes(record[22..30].try_into().unwrap()), r.p_milli[0]);
            assert_eq!(i64::from_le_bytes(record[62..70].try_into().unwrap()), r.q_milli[2]);
        }
    }

    #[test]
    fn bad_configs_are_errors() {
        let s = series(&[[1.0, 2.0, 3.0]]);
        let no_sensors = GeneratorConfig { sensors: 0, ..GeneratorConfig::default() };
        assert_eq!(Generator::new(&s, no_sensors).unwrap_err(), GeneratorError::NoSensors);
        let no_minutes = GeneratorConfig { minutes: Some(0), ..GeneratorConfig::default() };
        assert_eq!(Generator::new(&s, no_minutes).unwrap_err(), GeneratorError::NoMinutes);
        let far = GeneratorConfig { start: Start::At(i64::MAX), ..GeneratorConfig::default() };
        assert!(matches!(Generator::new(&s, far), Err(GeneratorError::TimeOutOfRange { .. })));
    }
}
