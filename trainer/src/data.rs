//! Reading the product's CSV: `timestamp` (RFC 3339), `p_l1` and optional
//! `p_l2`, `p_l3` in watts; other columns are ignored. The rows come from
//! core's [`MeterCsv`], the parser the simulator uses too; an empty or `nan`
//! cell is a gap. Rows falling in the same interval are averaged per phase, so
//! 10 s data can feed a 1 min model. Errors name the line and say what was
//! expected there.

use std::io::Read;
use std::path::Path;

use anyhow::Context;
use gridcast_core::features::Interval;
use gridcast_core::meter_csv::MeterCsv;

/// Load a meter CSV into per-interval averages, in time order.
pub fn load_intervals(path: &Path, interval_secs: u32) -> anyhow::Result<Vec<Interval>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    read_intervals(file, interval_secs).with_context(|| format!("reading {}", path.display()))
}

/// Like [`load_intervals`] from any reader.
pub fn read_intervals(mut input: impl Read, interval_secs: u32) -> anyhow::Result<Vec<Interval>> {
    let mut data = Vec::new();
    input.read_to_end(&mut data).context("reading the CSV")?;
    let step = interval_secs as i64;
    let mut out: Vec<Interval> = Vec::new();
    // running sums for the interval being filled: (slot, sums, counts)
    let mut acc: Option<(i64, [f64; 3], [u32; 3])> = None;
    let flush = |acc: (i64, [f64; 3], [u32; 3]), out: &mut Vec<Interval>| {
        let (slot, s, c) = acc;
        let p = std::array::from_fn(|i| if c[i] == 0 { f32::NAN } else { (s[i] / c[i] as f64) as f32 });
        out.push(Interval { ts: slot * step, p });
    };
    // MeterCsv checks the timestamps (strictly increasing) and the numbers,
    // and refuses a file without data rows.
    for row in MeterCsv::new(&data)? {
        let row = row?;
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
    Ok(out)
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

    #[test]
    fn missing_feature_column_is_named() {
        let e = read_feature_rows("a,b\n1,2\n".as_bytes(), &["a".into(), "total".into()]).unwrap_err();
        assert!(e.to_string().contains("`total`"), "{e}");
    }
}
