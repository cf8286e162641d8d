//! Reading the product's CSV: `timestamp` (RFC 3339), `p_l1` and optional
//! `p_l2`, `p_l3` in watts; other columns are ignored. Rows falling in the
//! same interval are averaged per phase, so 10 s data can feed a 1 min model.
//! Errors name the line and say what was expected there.

use std::path::Path;

use anyhow::{Context, bail};
use chrono::DateTime;
use gridcast_core::features::Interval;

/// Load a meter CSV into per-interval averages, in time order.
pub fn load_intervals(path: &Path, interval_secs: u32) -> anyhow::Result<Vec<Interval>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    read_intervals(file, interval_secs).with_context(|| format!("reading {}", path.display()))
}

/// Like [`load_intervals`] from any reader.
pub fn read_intervals(input: impl std::io::Read, interval_secs: u32) -> anyhow::Result<Vec<Interval>> {
    let mut rdr = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(input);
    let headers = rdr.headers().context("line 1: reading the header")?.clone();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let Some(ts_col) = col("timestamp") else {
        bail!("line 1: no `timestamp` column (header is {:?})", headers.iter().collect::<Vec<_>>());
    };
    let phase_cols = [col("p_l1"), col("p_l2"), col("p_l3")];
    if phase_cols[0].is_none() {
        bail!("line 1: no `p_l1` column (need timestamp,p_l1[,p_l2,p_l3] in W)");
    }
    let step = interval_secs as i64;
    let mut out: Vec<Interval> = Vec::new();
    // running sums for the interval being filled: (slot, sums, counts)
    let mut acc: Option<(i64, [f64; 3], [u32; 3])> = None;
    let mut prev_ts = i64::MIN;
    let flush = |acc: (i64, [f64; 3], [u32; 3]), out: &mut Vec<Interval>| {
        let (slot, s, c) = acc;
        let p = std::array::from_fn(|i| if c[i] == 0 { f32::NAN } else { (s[i] / c[i] as f64) as f32 });
        out.push(Interval { ts: slot * step, p });
    };
    for rec in rdr.records() {
        let rec = rec.context("malformed CSV record")?;
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        let ts_s = rec.get(ts_col).unwrap_or("");
        let ts = DateTime::parse_from_rfc3339(ts_s)
            .with_context(|| format!("line {line}: timestamp {ts_s:?} is not RFC 3339 (like 2007-01-01T00:00:00Z)"))?
            .timestamp();
        if ts <= prev_ts {
            bail!(
                "line {line}: timestamp {ts_s} is not after the previous row's; rows must be in time order without duplicates"
            );
        }
        prev_ts = ts;
        let mut v = [f64::NAN; 3];
        for (i, c) in phase_cols.iter().enumerate() {
            let Some(c) = c else { continue };
            let s = rec.get(*c).unwrap_or("");
            if s.is_empty() || s.eq_ignore_ascii_case("nan") {
                continue;
            }
            v[i] = s
                .parse::<f64>()
                .with_context(|| format!("line {line}: p_l{} = {s:?} is not a number of watts", i + 1))?;
        }
        let slot = ts.div_euclid(step);
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
        for i in 0..3 {
            if v[i].is_finite() {
                sums[i] += v[i];
                counts[i] += 1;
            }
        }
    }
    if let Some(a) = acc {
        flush(a, &mut out);
    }
    if out.is_empty() {
        bail!("no data rows after the header");
    }
    Ok(out)
}

/// A features CSV for `predict-batch`: columns chosen by name, in `names`
/// order; a missing column is an error naming it, an empty cell is NaN.
pub fn read_feature_rows(input: impl std::io::Read, names: &[String]) -> anyhow::Result<Vec<f32>> {
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

    #[test]
    fn missing_feature_column_is_named() {
        let e = read_feature_rows("a,b\n1,2\n".as_bytes(), &["a".into(), "total".into()]).unwrap_err();
        assert!(e.to_string().contains("`total`"), "{e}");
    }
}
