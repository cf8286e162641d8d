//! The minute series the simulator replays: the product's meter CSV, one row a
//! minute, `timestamp` (RFC 3339) and `p_l1`, optionally `p_l2` and `p_l3`, in
//! W. Other columns are ignored, so an export with extra columns loads as is.
//!
//! This is the only part of `gridcast simulate` that reads a file; the
//! generator turns the rows into 12 Hz readings without touching I/O.

use std::io::Read;
use std::path::{Path, PathBuf};

use gridcast_core::meter_csv::{MeterCsv, MeterCsvError, PHASE_COLUMNS};

/// One minute of the source data.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MinuteRow {
    /// Start of the minute, Unix seconds.
    pub ts_secs: i64,
    /// Mean active power per phase (L1, L2, L3) in W; 0 for a phase the CSV
    /// does not have.
    pub p_w: [f64; 3],
}

/// The rows of a minute CSV, in strictly increasing time order, at least a
/// minute apart (so that the 12 Hz readings of one row never overlap the next).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    rows: Vec<MinuteRow>,
}

/// What can be wrong with a minute CSV. Line numbers count the header as line 1,
/// as an editor does.
#[derive(Debug, thiserror::Error)]
pub enum SeriesError {
    // The underlying errors are part of each message (not `#[source]`), so a
    // report reads them once, next to the line they are about.
    #[error("cannot open the minute CSV {}: {error}", path.display())]
    Open { path: PathBuf, error: std::io::Error },
    #[error("cannot read the minute CSV: {0}")]
    Read(std::io::Error),
    #[error("the CSV header has no `{0}` column (need `timestamp` and `p_l1`; `p_l2`, `p_l3` are optional)")]
    MissingColumn(&'static str),
    #[error("line {line}: {error}")]
    Csv { line: u64, error: csv::Error },
    #[error("line {line}: column `{column}`: {message}")]
    BadValue { line: u64, column: &'static str, message: String },
    #[error(
        "line {line}: timestamp {ts} is less than a minute after the previous row ({previous}); \
         rows must be one per minute, in time order"
    )]
    NotIncreasing { line: u64, ts: String, previous: String },
    #[error("the CSV has a header but no data rows")]
    Empty,
}

impl SeriesError {
    /// The 1-based line the error is on, when it is about one line.
    pub fn line(&self) -> Option<u64> {
        match self {
            SeriesError::Csv { line, .. }
            | SeriesError::BadValue { line, .. }
            | SeriesError::NotIncreasing { line, .. } => Some(*line),
            _ => None,
        }
    }
}

/// The shared parser's errors in this module's terms.
impl From<MeterCsvError> for SeriesError {
    fn from(error: MeterCsvError) -> Self {
        match error {
            MeterCsvError::MissingColumn { column, .. } => SeriesError::MissingColumn(column),
            MeterCsvError::Csv { line, error } => SeriesError::Csv { line, error },
            MeterCsvError::BadTimestamp { line, text } => SeriesError::BadValue {
                line,
                column: "timestamp",
                message: format!("{text:?} is not an RFC 3339 timestamp"),
            },
            MeterCsvError::BadValue { line, column, text } => {
                SeriesError::BadValue { line, column, message: format!("{text:?} is not a finite number (W)") }
            }
            MeterCsvError::NotIncreasing { line, ts, previous } => SeriesError::NotIncreasing { line, ts, previous },
            MeterCsvError::Empty => SeriesError::Empty,
        }
    }
}

impl Series {
    /// Load a minute CSV from a file.
    pub fn load(path: &Path) -> Result<Series, SeriesError> {
        let file = std::fs::File::open(path).map_err(|error| SeriesError::Open { path: path.to_path_buf(), error })?;
        Series::parse(std::io::BufReader::new(file))
    }

    /// Parse a minute CSV from any reader: the rows core's [`MeterCsv`] reads,
    /// with a value in every present phase column, on whole seconds and at
    /// least a minute apart.
    pub fn parse(mut reader: impl Read) -> Result<Series, SeriesError> {
        // Read it whole: a year of minutes is ~20 MB, and the shared parser
        // works on bytes.
        let mut data = Vec::new();
        reader.read_to_end(&mut data).map_err(SeriesError::Read)?;
        let csv = MeterCsv::new(&data)?;
        let phases = csv.phases();
        let mut rows: Vec<MinuteRow> = Vec::new();
        for row in csv {
            let row = row?;
            // Readings are placed at whole twelfths of a second from the minute
            // start; a fractional start would make their timestamps inexact.
            let fraction_ms = row.ts_ms.rem_euclid(1000);
            if fraction_ms != 0 {
                return Err(SeriesError::BadValue {
                    line: row.line,
                    column: "timestamp",
                    message: format!("{fraction_ms} ms past a whole second; rows start on whole seconds"),
                });
            }
            let ts_secs = row.ts_ms.div_euclid(1000);
            let mut p_w = [0.0; 3];
            for (phase, value) in row.p_w.into_iter().enumerate() {
                p_w[phase] = match (value, phases[phase]) {
                    (Some(value), _) => value,
                    (None, false) => 0.0,
                    (None, true) => {
                        return Err(SeriesError::BadValue {
                            line: row.line,
                            column: PHASE_COLUMNS[phase],
                            message: "empty or NaN; every row needs a value in W".into(),
                        });
                    }
                };
            }
            if let Some(prev) = rows.last()
                && ts_secs < prev.ts_secs + 60
            {
                return Err(SeriesError::NotIncreasing {
                    line: row.line,
                    ts: format_ts(ts_secs),
                    previous: format_ts(prev.ts_secs),
                });
            }
            rows.push(MinuteRow { ts_secs, p_w });
        }
        Ok(Series { rows })
    }

    /// Build a series from rows already in memory (tests, demos). The same
    /// ordering rule as for files applies; the error's "line" is the row's
    /// index + 2, where it would be in a CSV with a header.
    pub fn from_rows(rows: Vec<MinuteRow>) -> Result<Series, SeriesError> {
        if rows.is_empty() {
            return Err(SeriesError::Empty);
        }
        for (i, pair) in rows.windows(2).enumerate() {
            if pair[1].ts_secs < pair[0].ts_secs + 60 {
                return Err(SeriesError::NotIncreasing {
                    line: i as u64 + 3,
                    ts: format_ts(pair[1].ts_secs),
                    previous: format_ts(pair[0].ts_secs),
                });
            }
        }
        for (i, row) in rows.iter().enumerate() {
            if let Some(phase) = row.p_w.iter().position(|p| !p.is_finite()) {
                return Err(SeriesError::BadValue {
                    line: i as u64 + 2,
                    column: PHASE_COLUMNS[phase],
                    message: "not a finite number".into(),
                });
            }
        }
        Ok(Series { rows })
    }

    pub fn rows(&self) -> &[MinuteRow] {
        &self.rows
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Never true for a loaded series (an empty CSV is an error); here for clippy's sake.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

fn format_ts(ts_secs: i64) -> String {
    chrono::DateTime::from_timestamp(ts_secs, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| ts_secs.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Series, SeriesError> {
        Series::parse(text.as_bytes())
    }

    #[test]
    fn loads_three_phases_and_ignores_other_columns() {
        let s = parse(
            "timestamp,p_l1,note,p_l2,p_l3\n\
             2007-01-01T00:00:00Z,10,x,20.5,30\n\
             2007-01-01T00:01:00+00:00,11,y,21,31\n",
        )
        .unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s.rows()[0], MinuteRow { ts_secs: 1_167_609_600, p_w: [10.0, 20.5, 30.0] });
        assert_eq!(s.rows()[1].ts_secs, 1_167_609_660);
    }

    #[test]
    fn missing_optional_phases_read_as_zero() {
        let s = parse("p_l1,timestamp\n5,2007-01-01T00:00:00Z\n").unwrap();
        assert_eq!(s.rows()[0].p_w, [5.0, 0.0, 0.0]);
    }

    #[test]
    fn missing_required_column_is_named() {
        let e = parse("timestamp,p_l2\n2007-01-01T00:00:00Z,1\n").unwrap_err();
        assert!(matches!(e, SeriesError::MissingColumn("p_l1")), "{e}");
        let e = parse("time,p_l1\n").unwrap_err();
        assert!(e.to_string().contains("`timestamp`"), "{e}");
    }

    #[test]
    fn bad_number_error_names_line_and_column() {
        let e = parse(
            "timestamp,p_l1,p_l2\n\
             2007-01-01T00:00:00Z,1,2\n\
             2007-01-01T00:01:00Z,1,?\n",
        )
        .unwrap_err();
        assert_eq!(e.line(), Some(3));
        let msg = e.to_string();
        assert!(msg.starts_with("line 3: column `p_l2`"), "{msg}");
    }

    #[test]
    fn bad_timestamp_error_names_line() {
        let e = parse("timestamp,p_l1\n2007-01-01T00:00:00Z,1\n\n2007-01-01 00:01,1\n").unwrap_err();
        // The blank line is skipped by csv but still counted.
        assert_eq!(e.line(), Some(4), "{e}");
        assert!(e.to_string().contains("RFC 3339"), "{e}");
        // Last line, no newline after it, CRLF line ends.
        let e = parse("timestamp,p_l1\r\n2007-01-01T00:00:00Z,1\r\n\r\n2007-01-01T00:01:00Z,x").unwrap_err();
        assert_eq!(e.line(), Some(4), "{e}");
    }

    #[test]
    fn empty_and_nan_values_are_errors() {
        let e = parse("timestamp,p_l1\n2007-01-01T00:00:00Z,\n").unwrap_err();
        assert_eq!(e.line(), Some(2));
        let e = parse("timestamp,p_l1\n2007-01-01T00:00:00Z,NaN\n").unwrap_err();
        assert_eq!(e.line(), Some(2));
    }

    #[test]
    fn ragged_row_error_names_line() {
        let e = parse("timestamp,p_l1\n2007-01-01T00:00:00Z,1\n2007-01-01T00:01:00Z,1,2\n").unwrap_err();
        assert_eq!(e.line(), Some(3), "{e}");
    }

    #[test]
    fn rows_out_of_order_or_closer_than_a_minute_are_rejected() {
        let e = parse(
            "timestamp,p_l1\n\
             2007-01-01T00:01:00Z,1\n\
             2007-01-01T00:01:30Z,1\n",
        )
        .unwrap_err();
        assert_eq!(e.line(), Some(3));
        assert!(e.to_string().contains("less than a minute"), "{e}");
    }

    #[test]
    fn gaps_are_allowed() {
        let s = parse("timestamp,p_l1\n2007-01-01T00:00:00Z,1\n2007-01-01T00:05:00Z,1\n").unwrap();
        assert_eq!(s.rows()[1].ts_secs - s.rows()[0].ts_secs, 300);
    }

    #[test]
    fn header_only_is_empty() {
        assert!(matches!(parse("timestamp,p_l1\n"), Err(SeriesError::Empty)));
    }

    #[test]
    fn shipped_sample_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/uci_household_2007-01_14d.csv");
        let s = Series::load(&path).unwrap();
        assert!(s.len() > 20_000, "{}", s.len());
    }
}
