//! The product's meter CSV, read one way for every tool: a `timestamp`
//! (RFC 3339) and `p_l1`, optionally `p_l2` and `p_l3`, in W; other columns
//! are ignored. The simulator replays it and the trainer learns from it; each
//! adds its own rules (one row a minute, averaging per interval) on top of the
//! rows read here.
//!
//! Parsing works on bytes already in memory, so core stays free of I/O; the
//! callers read the file. Having the bytes also lets every row carry its true
//! line, counted here rather than taken from csv (see `Lines`).

use crate::payload::rfc3339;

/// The power columns, L1 to L3. `p_l1` is required, the others optional.
pub const PHASE_COLUMNS: [&str; 3] = ["p_l1", "p_l2", "p_l3"];

/// One data row of a meter CSV.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeterRow {
    /// 1-based line of the row in the file, the header being line 1 (blank
    /// lines are skipped but counted, as an editor does).
    pub line: u64,
    /// The row's timestamp, Unix milliseconds.
    pub ts_ms: i64,
    /// Active power per phase (L1, L2, L3) in W. `None` for an empty cell, a
    /// `nan`, or a column the file does not have ([`MeterCsv::phases`] tells
    /// the last apart).
    pub p_w: [Option<f64>; 3],
}

/// What can be wrong with a meter CSV. Every error about a place in the file
/// names its line.
#[derive(Debug, thiserror::Error)]
pub enum MeterCsvError {
    // The csv error is part of the message (not `#[source]`), so a report
    // reads it once, next to the line it is about.
    #[error(
        "line {line}: the header has no `{column}` column \
         (need `timestamp` and `p_l1`; `p_l2`, `p_l3` are optional)"
    )]
    MissingColumn { line: u64, column: &'static str },
    #[error("line {line}: {error}")]
    Csv { line: u64, error: csv::Error },
    #[error("line {line}: column `timestamp`: {text:?} is not an RFC 3339 timestamp (like 2007-01-01T00:00:00Z)")]
    BadTimestamp { line: u64, text: String },
    #[error("line {line}: column `{column}`: {text:?} is not a finite number of watts")]
    BadValue { line: u64, column: &'static str, text: String },
    #[error(
        "line {line}: timestamp {ts} is not after the previous row's ({previous}); \
         rows must be in time order without duplicates"
    )]
    NotIncreasing { line: u64, ts: String, previous: String },
    #[error("the CSV has a header but no data rows")]
    Empty,
}

impl MeterCsvError {
    /// The 1-based line the error is on, when it is about one line.
    pub fn line(&self) -> Option<u64> {
        match self {
            MeterCsvError::MissingColumn { line, .. }
            | MeterCsvError::Csv { line, .. }
            | MeterCsvError::BadTimestamp { line, .. }
            | MeterCsvError::BadValue { line, .. }
            | MeterCsvError::NotIncreasing { line, .. } => Some(*line),
            MeterCsvError::Empty => None,
        }
    }
}

/// The rows of a meter CSV, in file order, each checked: a valid timestamp
/// later than the previous row's, and finite numbers in the power columns.
///
/// Iteration stops after the first error. A file without data rows yields
/// one [`MeterCsvError::Empty`].
pub struct MeterCsv<'a> {
    csv: csv::Reader<&'a [u8]>,
    lines: Lines<'a>,
    record: csv::StringRecord,
    ts_col: usize,
    phase_cols: [Option<usize>; 3],
    /// The previous row's timestamp, parsed and as written (for the error).
    previous: Option<i64>,
    previous_text: String,
    done: bool,
}

impl<'a> MeterCsv<'a> {
    /// Read the header of `data` and find the columns.
    pub fn new(data: &'a [u8]) -> Result<Self, MeterCsvError> {
        let mut lines = Lines { data, byte: 0, line: 1 };
        let mut csv = csv::ReaderBuilder::new().has_headers(true).trim(csv::Trim::All).from_reader(data);
        let headers = match csv.headers() {
            Ok(headers) => headers.clone(),
            Err(error) => {
                let line = lines.at(error.position().map_or(0, |p| p.byte()));
                return Err(MeterCsvError::Csv { line, error });
            }
        };
        let line = lines.at(headers.position().map_or(0, |p| p.byte()));
        let column = |name: &'static str| headers.iter().position(|h| h == name);
        let ts_col = column("timestamp").ok_or(MeterCsvError::MissingColumn { line, column: "timestamp" })?;
        let phase_cols = PHASE_COLUMNS.map(column);
        if phase_cols[0].is_none() {
            return Err(MeterCsvError::MissingColumn { line, column: "p_l1" });
        }
        Ok(MeterCsv {
            csv,
            lines,
            record: csv::StringRecord::new(),
            ts_col,
            phase_cols,
            previous: None,
            previous_text: String::new(),
            done: false,
        })
    }

    /// Which of `p_l1`, `p_l2`, `p_l3` the file has (`p_l1` always).
    pub fn phases(&self) -> [bool; 3] {
        self.phase_cols.map(|c| c.is_some())
    }

    fn read_row(&mut self) -> Option<Result<MeterRow, MeterCsvError>> {
        let here = self.csv.position().byte();
        match self.csv.read_record(&mut self.record) {
            Ok(true) => {}
            Ok(false) => return self.previous.is_none().then_some(Err(MeterCsvError::Empty)),
            Err(error) => {
                let line = self.lines.at(error.position().map_or(here, |p| p.byte()));
                return Some(Err(MeterCsvError::Csv { line, error }));
            }
        }
        let line = self.lines.at(self.record.position().map_or(here, |p| p.byte()));
        Some(self.check_row(line))
    }

    fn check_row(&mut self, line: u64) -> Result<MeterRow, MeterCsvError> {
        let ts_text = self.record.get(self.ts_col).unwrap_or("");
        let ts_ms =
            rfc3339::parse_ms(ts_text).ok_or_else(|| MeterCsvError::BadTimestamp { line, text: ts_text.into() })?;
        let mut p_w = [None; 3];
        for (phase, col) in self.phase_cols.iter().enumerate() {
            let Some(col) = col else { continue };
            let text = self.record.get(*col).unwrap_or("");
            // `parse` takes "nan" (any case, signed) as NaN, a gap like an empty cell.
            p_w[phase] = match text.parse::<f64>() {
                _ if text.is_empty() => None,
                Ok(value) if value.is_nan() => None,
                Ok(value) if value.is_finite() => Some(value),
                _ => return Err(MeterCsvError::BadValue { line, column: PHASE_COLUMNS[phase], text: text.into() }),
            };
        }
        if let Some(previous) = self.previous
            && ts_ms <= previous
        {
            return Err(MeterCsvError::NotIncreasing {
                line,
                ts: ts_text.into(),
                previous: self.previous_text.clone(),
            });
        }
        self.previous = Some(ts_ms);
        self.previous_text.clear();
        self.previous_text.push_str(ts_text);
        Ok(MeterRow { line, ts_ms, p_w })
    }
}

impl Iterator for MeterCsv<'_> {
    type Item = Result<MeterRow, MeterCsvError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let row = self.read_row();
        // Rows after a bad one would be read out of context; stop.
        self.done = !matches!(row, Some(Ok(_)));
        row
    }
}

/// Line numbers from csv byte positions. csv's own line count is off after
/// skipped blank lines (it reports where it started looking, on the blank
/// line), so skip line breaks and count them here, from where the last call
/// stopped: positions only grow, so a whole file is counted once. A line
/// break is what ends a csv record: `\n`, `\r\n` or a lone `\r` (old Mac
/// files), so two records never share a line number.
struct Lines<'a> {
    data: &'a [u8],
    byte: usize,
    line: u64,
}

impl Lines<'_> {
    /// The 1-based line of the record csv says starts at `byte`.
    fn at(&mut self, byte: u64) -> u64 {
        let data = self.data;
        let mut at = usize::try_from(byte).unwrap_or(data.len()).min(data.len());
        while at < data.len() && matches!(data[at], b'\n' | b'\r') {
            at += 1;
        }
        if at < self.byte {
            (self.byte, self.line) = (0, 1);
        }
        self.line += line_breaks(&data[self.byte..at]);
        self.byte = at;
        self.line
    }
}

/// The line breaks in `bytes`. `at` never stops between the `\r` and the
/// `\n` of a CRLF, so a `\r` at the end of `bytes` is a lone one.
fn line_breaks(bytes: &[u8]) -> u64 {
    let lone_cr = |i: usize| bytes.get(i + 1) != Some(&b'\n');
    bytes.iter().enumerate().filter(|&(i, &b)| b == b'\n' || (b == b'\r' && lone_cr(i))).count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(text: &str) -> Result<Vec<MeterRow>, MeterCsvError> {
        MeterCsv::new(text.as_bytes())?.collect()
    }

    fn error(text: &str) -> MeterCsvError {
        rows(text).unwrap_err()
    }

    #[test]
    fn reads_rows_with_their_lines_after_blank_lines() {
        let rows = rows(
            "timestamp,p_l1,p_l2,p_l3\n\
             2007-01-01T00:00:00Z,1,2,3\n\
             \n\
             \r\n\
             2007-01-01T01:01:00.5+01:00,4,5,6\n",
        )
        .unwrap();
        assert_eq!(rows[0], MeterRow { line: 2, ts_ms: 1_167_609_600_000, p_w: [Some(1.0), Some(2.0), Some(3.0)] });
        assert_eq!(rows[1], MeterRow { line: 5, ts_ms: 1_167_609_660_500, p_w: [Some(4.0), Some(5.0), Some(6.0)] });
    }

    #[test]
    fn blank_lines_before_the_header_are_counted() {
        let e = error("\n\ntime,p_l1\n");
        assert_eq!(e.line(), Some(3), "{e}");
        let rows = rows("\n\ntimestamp,p_l1\n2007-01-01T00:00:00Z,1\n").unwrap();
        assert_eq!(rows[0].line, 4);
    }

    #[test]
    fn optional_and_other_columns() {
        let mut csv = MeterCsv::new(b"note, p_l1 ,timestamp,p_l3\nx,1.5,2007-01-01T00:00:00Z,-2\n").unwrap();
        assert_eq!(csv.phases(), [true, false, true]);
        assert_eq!(csv.next().unwrap().unwrap().p_w, [Some(1.5), None, Some(-2.0)]);
        assert!(csv.next().is_none());
    }

    #[test]
    fn empty_and_nan_cells_are_gaps() {
        let rows = rows(
            "timestamp,p_l1,p_l2,p_l3\n\
             2007-01-01T00:00:00Z,,nan,NaN\n\
             2007-01-01T00:01:00Z, ,-nan,7\n",
        )
        .unwrap();
        assert_eq!(rows[0].p_w, [None, None, None]);
        assert_eq!(rows[1].p_w, [None, None, Some(7.0)]);
    }

    #[test]
    fn missing_required_columns_are_named() {
        let e = error("time,p_l1\n");
        assert!(matches!(e, MeterCsvError::MissingColumn { line: 1, column: "timestamp" }), "{e}");
        let e = error("timestamp,p_l2\n2007-01-01T00:00:00Z,1\n");
        assert!(matches!(e, MeterCsvError::MissingColumn { line: 1, column: "p_l1" }), "{e}");
        assert!(matches!(error(""), MeterCsvError::MissingColumn { column: "timestamp", .. }));
    }

    #[test]
    fn bad_values_name_line_and_column() {
        let e = error("timestamp,p_l1,p_l2\n2007-01-01T00:00:00Z,1,2\n\n2007-01-01T00:01:00Z,1,x\n");
        assert!(matches!(&e, MeterCsvError::BadValue { line: 4, column: "p_l2", text } if text == "x"), "{e}");
        assert!(e.to_string().starts_with("line 4: column `p_l2`"), "{e}");
        for infinite in ["inf", "-Infinity", "1e999"] {
            let e = error(&format!("timestamp,p_l1\n2007-01-01T00:00:00Z,{infinite}\n"));
            assert!(matches!(e, MeterCsvError::BadValue { line: 2, column: "p_l1", .. }), "{e}");
        }
    }

    #[test]
    fn bad_timestamp_names_line() {
        // Last line, no newline after it, CRLF line ends.
        let e = error("timestamp,p_l1\r\n2007-01-01T00:00:00Z,1\r\n\r\n2007-01-01 00:01,1");
        assert!(matches!(e, MeterCsvError::BadTimestamp { line: 4, .. }), "{e}");
        assert!(e.to_string().contains("RFC 3339"), "{e}");
    }

    #[test]
    fn a_lone_carriage_return_ends_a_line_as_it_ends_a_record() {
        let e = error("timestamp,p_l1\r2007-01-01T00:00:00Z,1\r\r2007-01-01T00:01:00Z,x\r");
        assert!(matches!(e, MeterCsvError::BadValue { line: 4, .. }), "{e}");
        // Found by fuzz/ (meter_csv): two records on "line 3" before.
        let mut csv = MeterCsv::new(
            b"note, p_l1 ,timestamp\n\nx,1.5,2007-01-01T00:00:00Z\r\x08y,nan,2008-01-01T00:01:00+01:00\n\
              \"q,\"\"\",,2007-01-01 00:02:00.5z\n",
        )
        .unwrap();
        assert_eq!(csv.next().unwrap().unwrap().line, 3);
        assert_eq!(csv.next().unwrap().unwrap().line, 4);
        assert!(matches!(csv.next().unwrap(), Err(MeterCsvError::NotIncreasing { line: 5, .. })));
    }

    #[test]
    fn ragged_row_is_a_csv_error_on_its_line() {
        let e = error("timestamp,p_l1\n2007-01-01T00:00:00Z,1\n\n2007-01-01T00:01:00Z,1,2\n");
        assert!(matches!(e, MeterCsvError::Csv { line: 4, .. }), "{e}");
    }

    #[test]
    fn timestamps_must_strictly_increase() {
        let e = error("timestamp,p_l1\n2007-01-01T00:01:00Z,1\n2007-01-01T00:00:00Z,2\n");
        assert!(matches!(e, MeterCsvError::NotIncreasing { line: 3, .. }), "{e}");
        let e = error("timestamp,p_l1\n2007-01-01T00:01:00Z,1\n2007-01-01T01:01:00+01:00,2\n");
        assert!(e.to_string().contains("(2007-01-01T00:01:00Z)"), "{e}");
    }

    #[test]
    fn header_only_is_empty_and_iteration_stops_after_an_error() {
        assert!(matches!(error("timestamp,p_l1\n"), MeterCsvError::Empty));
        let mut csv = MeterCsv::new(b"timestamp,p_l1\nnow,1\n2007-01-01T00:00:00Z,1\n").unwrap();
        assert!(csv.next().unwrap().is_err());
        assert!(csv.next().is_none());
    }
}
