//! Reading the product's CSV: `timestamp` (RFC 3339), `p_l1` and optional
//! `p_l2`, `p_l3` in watts; other columns are ignored. The rows come from
//! core's [`MeterCsv`], the parser the simulator uses too; an empty or `nan`
//! cell is a gap. Rows falling in the same interval are averaged per phase, so
//! 10 s data can feed a 1 min model. Errors name the line and say what was
//! expected there.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use anyhow::Context;
use gridcast_core::features::Interval;
use gridcast_core::meter_csv::{MeterCsv, MeterRow};

/// A meter CSV's rows, read once, before choosing the interval.
#[derive(Debug, Clone)]
pub struct MeterRows {
    rows: Vec<MeterRow>,
}

impl MeterRows {
    /// Read a meter CSV file.
    pub fn load(path: &Path) -> anyhow::Result<MeterRows> {
        let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        MeterRows::read(file).with_context(|| format!("reading {}", path.display()))
    }

    /// Rows from elsewhere (ingest's windows), in time order.
    pub fn from_rows(rows: Vec<MeterRow>) -> MeterRows {
        MeterRows { rows }
    }

    /// Read a meter CSV from any reader. `MeterCsv` checks the timestamps
    /// (strictly increasing) and the numbers, and refuses a file without data.
    pub fn read(mut input: impl Read) -> anyhow::Result<MeterRows> {
        let mut data = Vec::new();
        input.read_to_end(&mut data).context("reading the CSV")?;
        let rows = MeterCsv::new(&data)?.collect::<Result<Vec<_>, _>>()?;
        Ok(MeterRows { rows })
    }

    /// The data's own spacing in whole seconds: the most common gap between
    /// consecutive rows (so a few gaps or a missed reading do not change
    /// it); `None` for a single row.
    pub fn spacing_secs(&self) -> Option<u32> {
        let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
        for pair in self.rows.windows(2) {
            let gap = (pair[1].ts_ms - pair[0].ts_ms + 500) / 1000;
            if gap > 0 {
                *counts.entry(gap).or_default() += 1;
            }
        }
        // The most common gap; the shorter one on a tie.
        let (gap, _) = counts.into_iter().max_by_key(|&(gap, n)| (n, std::cmp::Reverse(gap)))?;
        u32::try_from(gap).ok()
    }

    /// The interval to average to: `requested` if it fits the data, else the
    /// data's own spacing. An interval fits when it is a whole multiple of
    /// the spacing (10 s rows make 60 s intervals); a shorter or misaligned
    /// one would leave most intervals empty, and is an error saying what the
    /// data's spacing is.
    pub fn interval_secs(&self, requested: Option<u32>) -> anyhow::Result<u32> {
        let spacing = self.spacing_secs();
        match (requested, spacing) {
            (Some(0), _) => anyhow::bail!("--interval-secs must be at least 1"),
            (Some(interval), Some(spacing)) if interval % spacing != 0 => anyhow::bail!(
                "--interval-secs {interval} does not fit the data: its rows are {} apart, so the interval must be a whole \
                 multiple of {spacing} s (leave --interval-secs out to use {spacing} s)",
                human_secs(spacing)
            ),
            (Some(interval), _) => Ok(interval),
            (None, Some(spacing)) => Ok(spacing),
            (None, None) => anyhow::bail!("one data row is not a series: the interval cannot be told"),
        }
    }

    /// Per-interval averages per phase, in time order; an interval with no
    /// value for a phase has NaN there (a gap stays a gap).
    pub fn intervals(&self, interval_secs: u32) -> Vec<Interval> {
        let step = interval_secs.max(1) as i64;
        let mut out: Vec<Interval> = Vec::new();
        // running sums for the interval being filled: (slot, sums, counts)
        let mut acc: Option<(i64, [f64; 3], [u32; 3])> = None;
        let flush = |acc: (i64, [f64; 3], [u32; 3]), out: &mut Vec<Interval>| {
            let (slot, s, c) = acc;
            let p = std::array::from_fn(|i| if c[i] == 0 { f32::NAN } else { (s[i] / c[i] as f64) as f32 });
            out.push(Interval { ts: slot * step, p });
        };
        for row in &self.rows {
            let slot = row.ts_ms.div_euclid(step * 1000);
            match &mut acc {
                Some((s, _, _)) if *s == slot => {}
                _ => {
                    if let Some(a) = acc.take() {
                        flush(a, &mut out);
                    }
                    acc = Some((slot, [0.0; 3], [0; 3]));
                }
            }
            let (_, sums, counts) = acc.as_mut().expect("set above");
            for ((value, sum), count) in row.p_w.into_iter().zip(sums).zip(counts) {
                if let Some(value) = value {
                    *sum += value;
                    *count += 1;
                }
            }
        }
        if let Some(a) = acc {
            flush(a, &mut out);
        }
        out
    }
}

/// `600` -> `10 min`, `45` -> `45 s`.
fn human_secs(secs: u32) -> String {
    match secs {
        s if s % 3600 == 0 => format!("{} h", s / 3600),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// Load a meter CSV and average it to an interval: `requested`, or the
/// data's own spacing. Returns the interval with the intervals.
pub fn load_series(path: &Path, requested: Option<u32>) -> anyhow::Result<(u32, Vec<Interval>)> {
    let rows = MeterRows::load(path)?;
    let interval = rows.interval_secs(requested).with_context(|| format!("{}", path.display()))?;
    Ok((interval, rows.intervals(interval)))
}

/// Load a meter CSV into per-interval averages, in time order.
pub fn load_intervals(path: &Path, interval_secs: u32) -> anyhow::Result<Vec<Interval>> {
    Ok(MeterRows::load(path)?.intervals(interval_secs))
}

/// Like [`load_intervals`] from any reader.
pub fn read_intervals(input: impl Read, interval_secs: u32) -> anyhow::Result<Vec<Interval>> {
    Ok(MeterRows::read(input)?.intervals(interval_secs))
}

/// A features CSV for `predict-batch`: columns chosen by name, in `names`
/// order; a missing column is an error naming it, an empty cell is NaN.
pub fn read_feature_rows(input: impl Read, names: &[String]) -> anyhow::Result<Vec<f32>> {
    let mut rdr = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(input);
    let headers = rdr.headers().context("line 1: reading the header")?.clone();
    let cols = names
        .iter()
        .map(|n| {
            headers
                .iter()
                .position(|h| h == n)
                .with_context(|| format!("line 1: the model needs a column `{n}`, the file has none"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut out = Vec::new();
    for rec in rdr.records() {
        let rec = rec.context("malformed CSV record")?;
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        for (&c, n) in cols.iter().zip(names) {
            let s = rec.get(c).unwrap_or("");
            out.push(if s.is_empty() || s.eq_ignore_ascii_case("nan") {
                f32::NAN
            } else {
                s.parse().with_context(|| format!("line {line}: {n} = {s:?} is not a number"))?
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_number_error_names_the_line() {
        let csv = "timestamp,p_l1,p_l2,p_l3\n2007-01-01T00:00:00Z,1,2,3\n2007-01-01T00:01:00Z,x,2,3\n";
        let e = format!("{:#}", read_intervals(csv.as_bytes(), 60).unwrap_err());
        assert!(e.contains("line 3") && e.contains("p_l1"), "{e}");
    }

    #[test]
    fn bad_timestamp_error_names_the_line() {
        let csv = "timestamp,p_l1\n2007-01-01T00:00:00Z,1\nyesterday,2\n";
        let e = format!("{:#}", read_intervals(csv.as_bytes(), 60).unwrap_err());
        assert!(e.contains("line 3") && e.contains("RFC 3339"), "{e}");
    }

    #[test]
    fn single_phase_file_and_sub_interval_rows_are_averaged() {
        let csv =
            "timestamp,p_l1,other\n2007-01-01T00:00:00Z,100,a\n2007-01-01T00:00:30Z,200,b\n2007-01-01T00:02:00Z,50,c\n";
        let iv = read_intervals(csv.as_bytes(), 60).unwrap();
        assert_eq!(iv.len(), 2);
        assert_eq!(iv[0].p[0], 150.0);
        assert!(iv[0].p[1].is_nan() && iv[0].p[2].is_nan());
        assert_eq!(iv[1].ts - iv[0].ts, 120);
    }

    #[test]
    fn rows_out_of_order_are_refused() {
        let csv = "timestamp,p_l1\n2007-01-01T00:01:00Z,1\n2007-01-01T00:00:00Z,2\n";
        let e = format!("{:#}", read_intervals(csv.as_bytes(), 60).unwrap_err());
        assert!(e.contains("line 3"), "{e}");
    }

    /// `n` rows `every` seconds apart from 2007-01-01, with a gap after row 3.
    fn rows(n: usize, every: i64) -> MeterRows {
        let mut csv = String::from("timestamp,p_l1\n");
        for i in 0..n as i64 {
            let t = 1_167_609_600 + i * every + if i > 3 { 5 * every } else { 0 };
            let ts = chrono::DateTime::from_timestamp(t, 0).unwrap().to_rfc3339();
            csv.push_str(&format!("{ts},{}\n", 100 + i));
        }
        MeterRows::read(csv.as_bytes()).unwrap()
    }

    #[test]
    fn the_interval_is_the_data_spacing_when_not_given() {
        assert_eq!(rows(20, 600).spacing_secs(), Some(600), "10-minute export, one gap");
        assert_eq!(rows(20, 600).interval_secs(None).unwrap(), 600);
        assert_eq!(rows(20, 900).interval_secs(None).unwrap(), 900);
        assert_eq!(rows(20, 10).interval_secs(Some(60)).unwrap(), 60, "10 s rows average into minutes");
        let iv = rows(20, 600).intervals(600);
        assert_eq!(iv.len(), 20, "one interval a row: none empty");
    }

    #[test]
    fn an_interval_that_does_not_fit_the_data_says_the_spacing_found() {
        let e = rows(20, 600).interval_secs(Some(60)).unwrap_err().to_string();
        assert!(e.contains("10 min apart") && e.contains("multiple of 600 s"), "{e}");
        let e = rows(20, 900).interval_secs(Some(600)).unwrap_err().to_string();
        assert!(e.contains("15 min apart"), "{e}");
        assert!(rows(1, 60).interval_secs(None).is_err());
    }

    #[test]
    fn missing_feature_column_is_named() {
        let e = read_feature_rows("a,b\n1,2\n".as_bytes(), &["a".into(), "total".into()]).unwrap_err();
        assert!(e.to_string().contains("`total`"), "{e}");
    }
}
