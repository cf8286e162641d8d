//! History from InfluxDB: the `meter_window` series ingest wrote, read with
//! InfluxQL over v1 `/query` (InfluxDB 1.x; 2.x and 3.x serve it too).
//!
//! The rows are the ones [`super::history::from_lines_dir`] makes of the same
//! windows in ingest's line files, so either source trains the same model:
//! one row per window start (ms), the per-phase means `p_l1_mean` ..
//! `p_l3_mean`, a missing phase `None`, a window written twice counted once.
//!
//! A year of minutes is half a million rows, so the query asks for a chunked
//! answer: InfluxDB sends one JSON document per `chunk_size` rows, one per
//! line, and a series longer than that comes in pieces marked `"partial"`.
//! The body is read as it arrives and parsed line by line; only the rows are
//! kept, never the whole answer. Parsing (`ResponseParser`) is pure and
//! tested without a server; `fetch` only moves bytes from the socket to it.
//!
//! Two differences from the line files remain, both from what InfluxDB's JSON
//! can say: a window with none of the three phases is not returned at all
//! (the files give a row of `None`s), and an integer field is returned as a
//! number like a float (the files treat it as missing). Ingest writes every
//! phase mean as a float, so neither happens with its windows. Values agree
//! bit for bit only when serde_json is built with `float_roundtrip`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use gridcast_core::meter_csv::MeterRow;
use gridcast_edge::secret::Secret;
use serde::Deserialize;
use serde_json::Value;

use super::config::InfluxHistoryConfig;
use super::parts::{self, PartRow};
use crate::data::MeterRows;

/// The fields read, in phase order: ingest's per-phase window means, and
/// the sums and counts that add partial windows up ([`super::parts`]).
const PHASES: [&str; 3] = ["p_l1_mean", "p_l2_mean", "p_l3_mean"];
const SUMS: [&str; 3] = ["p_l1_sum", "p_l2_sum", "p_l3_sum"];
const COUNTS: [&str; 3] = ["p_l1_count", "p_l2_count", "p_l3_count"];

/// How long to wait for InfluxDB, so that a server that hangs is an error.
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    /// For the TCP (and TLS) connection.
    connect: Duration,
    /// For the response headers, and then for each piece of the body.
    read: Duration,
}

const TIMEOUTS: Timeouts = Timeouts { connect: Duration::from_secs(10), read: Duration::from_secs(60) };

/// The windows of `sensor` (tag `source` = `source`) in `measurement`.
pub async fn load(
    config: &InfluxHistoryConfig,
    measurement: &str,
    sensor: &str,
    source: &str,
) -> anyhow::Result<MeterRows> {
    let query = select(measurement, &config.retention_policy, sensor, source, config.days)?;
    let windows = fetch(config, &query, TIMEOUTS).await?;
    if windows.non_numeric > 0 {
        eprintln!(
            "history: read {} value(s) that are not numbers as missing ({measurement} of sensor {sensor:?} in {})",
            windows.non_numeric, config.url
        );
    }
    let rows = windows.into_rows();
    if rows.is_empty() {
        let span = if config.days > 0.0 { format!(" in the last {} days", config.days) } else { String::new() };
        anyhow::bail!(
            "no {measurement} windows of sensor {sensor:?} (source {source}){span} in database {:?} at {}",
            config.database,
            config.url
        );
    }
    Ok(MeterRows::from_rows(rows))
}

// ---- The query -------------------------------------------------------------

/// The InfluxQL that selects one sensor's phase means, oldest first (a raw
/// SELECT is in time order), over the last `days` (0: all).
fn select(measurement: &str, retention_policy: &str, sensor: &str, source: &str, days: f64) -> anyhow::Result<String> {
    anyhow::ensure!(
        days.is_finite() && days >= 0.0,
        "invalid [history.influx] section: days must be 0 (all of the history) or more, not {days}"
    );
    let fields = [PHASES, SUMS, COUNTS].concat().into_iter().map(quote_ident).collect::<Vec<_>>().join(",");
    let from = match retention_policy {
        "" => quote_ident(measurement),
        rp => format!("{}.{}", quote_ident(rp), quote_ident(measurement)),
    };
    let mut query = format!(
        "SELECT {fields} FROM {from} WHERE \"sensor\"={} AND \"source\"={}",
        quote_string(sensor),
        quote_string(source)
    );
    if days > 0.0 {
        // InfluxQL durations are integers; milliseconds keep fractional days.
        query.push_str(&format!(" AND time > now() - {}ms", (days * 86_400_000.0).round() as i64));
    }
    // One series per part: partial windows of replicas are added up, not
    // taken for one window written twice.
    query.push_str(" GROUP BY \"part\"");
    Ok(query)
}

/// An InfluxQL identifier in double quotes. InfluxQL's scanner reads `\\`,
/// `\"` and `\n` inside quotes and refuses a raw newline, so these are all
/// that need escaping (as influxql's own `QuoteIdent` does).
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", escape(name, '"'))
}

/// An InfluxQL string literal in single quotes (as influxql's `QuoteString`):
/// a sensor id with a quote in it stays one literal and cannot add a clause.
fn quote_string(value: &str) -> String {
    format!("'{}'", escape(value, '\''))
}

fn escape(text: &str, quote: char) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// `{url}/query?db=..&q=..&epoch=ms&chunked=true&chunk_size=N`.
fn query_url(config: &InfluxHistoryConfig, query: &str) -> anyhow::Result<reqwest::Url> {
    let base = config.url.trim_end_matches('/');
    let mut url = reqwest::Url::parse(&format!("{base}/query"))
        .with_context(|| format!("invalid [history.influx] section: url {:?} is not a URL", config.url))?;
    {
        let mut pairs = url.query_pairs_mut();
        pairs.append_pair("db", &config.database).append_pair("q", query);
        pairs.append_pair("epoch", "ms").append_pair("chunked", "true");
        // 0 leaves the chunk size to the server (10 000 rows in 1.x).
        if config.chunk_size > 0 {
            pairs.append_pair("chunk_size", &config.chunk_size.to_string());
        }
    }
    Ok(url)
}

// ---- The HTTP exchange -----------------------------------------------------

/// Send `query` and parse the answer as it arrives.
async fn fetch(config: &InfluxHistoryConfig, query: &str, timeouts: Timeouts) -> anyhow::Result<Windows> {
    let mut response = send(config, query, timeouts).await?;
    let mut parser = ResponseParser::default();
    loop {
        let piece = match tokio::time::timeout(timeouts.read, response.chunk()).await {
            Err(_) => anyhow::bail!(
                "InfluxDB at {} stopped sending its answer (nothing for {} s)",
                config.url,
                timeouts.read.as_secs_f64()
            ),
            Ok(Err(e)) => anyhow::bail!("the answer from InfluxDB at {} was cut off: {}", config.url, root_cause(&e)),
            Ok(Ok(piece)) => piece,
        };
        let Some(bytes) = piece else { break };
        parser.feed(&bytes).map_err(|e| explain(e, config))?;
    }
    parser.finish().map_err(|e| explain(e, config))
}

/// The request, authenticated, up to a successful status.
async fn send(config: &InfluxHistoryConfig, query: &str, timeouts: Timeouts) -> anyhow::Result<reqwest::Response> {
    let url = query_url(config, query)?;
    let client =
        reqwest::Client::builder().connect_timeout(timeouts.connect).build().context("building an HTTP client")?;
    let mut request = client.get(url);
    // A token (2.x/3.x) wins over 1.x credentials; both go in headers, so
    // neither ends up in a URL or an error message.
    if let Some(token) = &config.token {
        request = request.header(reqwest::header::AUTHORIZATION, format!("Token {}", token.expose()));
    } else if let Some(username) = &config.username {
        request = request.basic_auth(username, config.password.as_ref().map(Secret::expose));
    }
    let response = match tokio::time::timeout(timeouts.read, request.send()).await {
        Err(_) => anyhow::bail!(
            "InfluxDB at {} took the connection but did not answer within {} s",
            config.url,
            timeouts.read.as_secs_f64()
        ),
        Ok(Err(e)) if e.is_connect() => anyhow::bail!(
            "InfluxDB is not reachable at {}: {} (is it running, and is [history.influx] url right?)",
            config.url,
            root_cause(&e)
        ),
        Ok(Err(e)) => anyhow::bail!("querying InfluxDB at {} failed: {}", config.url, root_cause(&e)),
        Ok(Ok(response)) => response,
    };
    check_status(response, config, timeouts).await
}

/// The response if its status is a success, else an error that says what
/// to fix.
async fn check_status(
    response: reqwest::Response,
    config: &InfluxHistoryConfig,
    timeouts: Timeouts,
) -> anyhow::Result<reqwest::Response> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = match tokio::time::timeout(timeouts.read, response.text()).await {
        Ok(Ok(text)) => preview(text.trim().as_bytes(), 300),
        _ => String::new(),
    };
    let (url, db) = (&config.url, &config.database);
    match status.as_u16() {
        401 | 403 => anyhow::bail!(
            "InfluxDB at {url} refused the credentials ({status}: {body}): set [history.influx] username and \
             password (1.x) or token (2.x/3.x)"
        ),
        404 => anyhow::bail!(
            "InfluxDB at {url} has no database {db:?} ({status}: {body}): check [history.influx] database and url"
        ),
        _ => anyhow::bail!("InfluxDB at {url} answered {status} to the query on database {db:?}: {body}"),
    }
}

/// A parse error as what it means for the user.
fn explain(error: ResponseError, config: &InfluxHistoryConfig) -> anyhow::Error {
    let (url, db) = (&config.url, &config.database);
    match error {
        // InfluxDB 1.x answers 200 with this statement error.
        ResponseError::Server(message) if message.starts_with("database not found") => anyhow::anyhow!(
            "database {db:?} does not exist on InfluxDB at {url} ({message}): create it, or fix [history.influx] database"
        ),
        ResponseError::Server(message) if message.contains("authoriz") => anyhow::anyhow!(
            "InfluxDB at {url} did not authorize the query on database {db:?} ({message}): check [history.influx] \
             username and password, or token"
        ),
        ResponseError::Server(message) => {
            anyhow::anyhow!("InfluxDB at {url} refused the query on database {db:?}: {message}")
        }
        other => {
            anyhow::Error::new(other).context(format!("reading the answer of InfluxDB at {url} (database {db:?})"))
        }
    }
}

/// The innermost cause of an error ("Connection refused (os error 111)"),
/// which says more than reqwest's "error sending request".
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// At most `max` bytes of `bytes` as text, for error messages.
fn preview(bytes: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(max)]).into_owned();
    if bytes.len() > max { format!("{text}...") } else { text }
}

// ---- The answer (pure) -----------------------------------------------------

/// What is wrong with a `/query` answer.
#[derive(Debug, thiserror::Error, PartialEq)]
enum ResponseError {
    #[error(
        "the answer is not InfluxDB JSON at byte {offset} ({reason}); it starts with {preview:?} \
         (is [history.influx] url an InfluxDB?)"
    )]
    NotJson { offset: u64, reason: String, preview: String },
    #[error("the answer is JSON but not a /query answer (no \"results\" and no \"error\"): {preview:?}")]
    NotQueryAnswer { preview: String },
    /// A top-level or statement `"error"`, as InfluxDB words it.
    #[error("{0}")]
    Server(String),
    #[error("a series has no time column (columns {0:?})")]
    NoTimeColumn(Vec<String>),
    #[error("a row's time is not a millisecond timestamp: {0}")]
    BadTime(String),
    #[error("the answer ended in the middle of a series (a chunk marked partial was the last)")]
    Truncated,
    #[error("the answer is empty")]
    Empty,
}

/// One document of a chunked answer (one line of the body).
#[derive(Debug, Deserialize)]
struct Document {
    results: Option<Vec<StatementResult>>,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct StatementResult {
    #[serde(default)]
    series: Vec<Series>,
    error: Option<String>,
    /// More of this statement's answer follows in the next document.
    #[serde(default)]
    partial: bool,
}

#[derive(Debug, Deserialize)]
struct Series {
    /// The GROUP BY tags: `part` (empty for whole windows).
    #[serde(default)]
    tags: BTreeMap<String, String>,
    #[serde(default)]
    columns: Vec<String>,
    #[serde(default)]
    values: Vec<Vec<Value>>,
    /// More rows of this series follow in the next document.
    #[serde(default)]
    partial: bool,
}

/// Turns the body, fed in whatever pieces the network delivers, into
/// windows. Framing (lines) is kept apart from meaning (documents).
#[derive(Debug, Default)]
struct ResponseParser {
    lines: Lines,
    windows: Windows,
}

impl ResponseParser {
    /// Parse every document `bytes` completes.
    fn feed(&mut self, bytes: &[u8]) -> Result<(), ResponseError> {
        let windows = &mut self.windows;
        self.lines.push(bytes, |line, offset| windows.read_line(line, offset))?;
        // An HTML error page or other garbage is told at its first byte, not
        // after the server has sent all of it.
        match self.lines.pending().iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') | None => Ok(()),
            Some(_) => Err(not_json(self.lines.pending(), self.lines.consumed, "expected '{'".into())),
        }
    }

    /// The windows, once the body has ended.
    fn finish(mut self) -> Result<Windows, ResponseError> {
        let (rest, offset) = (std::mem::take(&mut self.lines.pending), self.lines.consumed);
        self.windows.read_line(&rest, offset)?;
        if self.windows.documents == 0 {
            return Err(ResponseError::Empty);
        }
        if self.windows.open {
            return Err(ResponseError::Truncated);
        }
        Ok(self.windows)
    }
}

/// Splits the body into lines as it arrives; InfluxDB ends every document
/// of a chunked answer with a newline.
#[derive(Debug, Default)]
struct Lines {
    /// The start of a line whose newline has not arrived yet.
    pending: Vec<u8>,
    /// Bytes of the body before `pending` (for error offsets).
    consumed: u64,
}

impl Lines {
    /// Append `bytes` and hand each completed line, with its offset in the
    /// body, to `each`.
    fn push(
        &mut self,
        bytes: &[u8],
        mut each: impl FnMut(&[u8], u64) -> Result<(), ResponseError>,
    ) -> Result<(), ResponseError> {
        // Only the new bytes are searched for newlines: a long line arriving
        // in many pieces is scanned once.
        let mut from = self.pending.len();
        self.pending.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(newline) = self.pending[from..].iter().position(|&b| b == b'\n') {
            let end = from + newline;
            each(&self.pending[start..end], self.consumed + start as u64)?;
            start = end + 1;
            from = start;
        }
        self.pending.drain(..start);
        self.consumed += start as u64;
        Ok(())
    }

    fn pending(&self) -> &[u8] {
        &self.pending
    }
}

/// The rows read so far and what was seen on the way.
#[derive(Debug, Default)]
struct Windows {
    /// By (window start, part): a window written twice counts once.
    rows: BTreeMap<(i64, String), PartRow>,
    /// Values that were neither a number nor null (read as missing).
    non_numeric: u64,
    /// Documents read.
    documents: u64,
    /// Whether the last document said more of its series follows.
    open: bool,
}

impl Windows {
    /// Read one line of the body: normally one document, possibly none
    /// (a blank line) or several (a server that puts them on one line).
    ///
    /// Each document must be an object. serde would also read a [`Document`]
    /// from an array (`[[],null]`), which `feed` refuses at a line's first
    /// byte: the same body would be read or refused by where the network
    /// cut it.
    fn read_line(&mut self, line: &[u8], offset: u64) -> Result<(), ResponseError> {
        let mut documents = serde_json::Deserializer::from_slice(line).into_iter::<Document>();
        loop {
            let at = documents.byte_offset();
            match line.get(at..).unwrap_or_default().iter().position(|b| !b.is_ascii_whitespace()) {
                None => break,
                Some(skip) if line[at + skip] != b'{' => {
                    return Err(not_json(&line[at + skip..], offset + (at + skip) as u64, "expected '{'".into()));
                }
                Some(_) => {}
            }
            let Some(document) = documents.next() else { break };
            let document = document.map_err(|e| {
                let at = documents.byte_offset();
                not_json(&line[at.min(line.len())..], offset + at as u64, e.to_string())
            })?;
            self.read_document(document, line)?;
        }
        Ok(())
    }

    fn read_document(&mut self, document: Document, line: &[u8]) -> Result<(), ResponseError> {
        if let Some(error) = document.error {
            return Err(ResponseError::Server(error));
        }
        let Some(results) = document.results else {
            return Err(ResponseError::NotQueryAnswer { preview: preview(line, 120) });
        };
        self.documents += 1;
        self.open = false;
        // One statement was sent, so one result is expected; any number is read.
        for result in results {
            if let Some(error) = result.error {
                return Err(ResponseError::Server(error));
            }
            self.open = result.partial || result.series.last().is_some_and(|s| s.partial);
            for series in result.series {
                self.read_series(series)?;
            }
        }
        Ok(())
    }

    /// Add a series' rows. Its columns are looked up by name: `time` and
    /// whichever phases it has (a phase it lacks is missing in every row).
    fn read_series(&mut self, series: Series) -> Result<(), ResponseError> {
        let column = |name: &str| series.columns.iter().position(|c| c == name);
        let time = column("time").ok_or_else(|| ResponseError::NoTimeColumn(series.columns.clone()))?;
        let (means, sums, counts) = (PHASES.map(column), SUMS.map(column), COUNTS.map(column));
        let part = series.tags.get("part").cloned().unwrap_or_default();
        for row in &series.values {
            let ts_ms = row
                .get(time)
                .and_then(Value::as_i64)
                .ok_or_else(|| ResponseError::BadTime(format!("{:?}", row.get(time))))?;
            let mut value = |columns: [Option<usize>; 3]| columns.map(|i| self.phase_value(i.and_then(|i| row.get(i))));
            let figures = PartRow { mean: value(means), sum: value(sums), count: value(counts) };
            self.rows.insert((ts_ms, part.clone()), figures);
        }
        Ok(())
    }

    /// A phase's value: a number, or `None` for null (the window had no such
    /// phase) and for anything else (counted). InfluxDB prints the shortest
    /// decimal that reads back as the stored f64; serde_json reads it back
    /// bit for bit only with its `float_roundtrip` feature (else a mean with
    /// 17 significant digits can be one ulp off the line files' value).
    fn phase_value(&mut self, value: Option<&Value>) -> Option<f64> {
        match value {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => n.as_f64().filter(|v| v.is_finite()),
            Some(_) => {
                self.non_numeric += 1;
                None
            }
        }
    }

    /// The rows by window start, one per window: a window written twice
    /// (in two series of one part, say) counts once, the last read winning,
    /// as in the line files; the parts of a window are added up.
    fn into_rows(self) -> Vec<MeterRow> {
        parts::windows(self.rows)
    }
}

fn not_json(rest: &[u8], offset: u64, reason: String) -> ResponseError {
    ResponseError::NotJson { offset, reason, preview: preview(rest, 80) }
}

/// Entry point for `fuzz/` (target `influxql_response`), not an API: a body
/// fed to the parser in `pieces`, as the network may deliver it; its rows,
/// or the error's message.
#[doc(hidden)]
pub fn fuzz_parse_response(pieces: &[&[u8]]) -> Result<Vec<MeterRow>, String> {
    let mut parser = ResponseParser::default();
    for piece in pieces {
        parser.feed(piece).map_err(|e| e.to_string())?;
    }
    Ok(parser.finish().map_err(|e| e.to_string())?.into_rows())
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// Two chunks of one series, as InfluxDB 1.x sends them with chunk_size=2.
    const TWO_CHUNKS: &str = concat!(
        r#"{"results":[{"statement_id":0,"series":[{"name":"meter_window","columns":["time","p_l1_mean","p_l2_mean","p_l3_mean"],"values":[[1000,1.5,2,null],[2000,3.25,"x",null]],"partial":true}],"partial":true}]}"#,
        "\n",
        r#"{"results":[{"statement_id":0,"series":[{"name":"meter_window","columns":["time","p_l1_mean","p_l2_mean","p_l3_mean"],"values":[[3000,4,null,5.5]]}]}]}"#,
        "\n",
    );

    fn row(ts_ms: i64, p_w: [Option<f64>; 3]) -> MeterRow {
        MeterRow { line: 0, ts_ms, p_w }
    }

    fn parse(pieces: &[&[u8]]) -> Result<Windows, ResponseError> {
        let mut parser = ResponseParser::default();
        for piece in pieces {
            parser.feed(piece)?;
        }
        parser.finish()
    }

    fn parse_str(body: &str) -> Result<Windows, ResponseError> {
        parse(&[body.as_bytes()])
    }

    #[test]
    fn quotes_and_backslashes_are_escaped_so_a_sensor_id_stays_one_literal() {
        assert_eq!(quote_string("plain"), "'plain'");
        assert_eq!(quote_string(r#"o'k" \ x"#), r#"'o\'k" \\ x'"#);
        assert_eq!(quote_string("a\nb"), r"'a\nb'");
        assert_eq!(quote_ident(r#"m"e'a\s"#), r#""m\"e'a\\s""#);
        let q = select("meter_window", "", "a' OR 'x'='x", "raw", 0.0).unwrap();
        assert_eq!(
            q,
            concat!(
                r#"SELECT "p_l1_mean","p_l2_mean","p_l3_mean","p_l1_sum","p_l2_sum","p_l3_sum","p_l1_count","p_l2_count","p_l3_count""#,
                r#" FROM "meter_window" WHERE "sensor"='a\' OR \'x\'=\'x' AND "source"='raw' GROUP BY "part""#
            )
        );
    }

    #[test]
    fn the_retention_policy_and_the_last_days_go_into_the_query() {
        let q = select("meter_window", "one year", "s", "raw", 1.5).unwrap();
        assert!(q.contains(r#" FROM "one year"."meter_window" WHERE "#), "{q}");
        assert!(q.ends_with(" AND time > now() - 129600000ms GROUP BY \"part\""), "{q}");
        for days in [-1.0, f64::NAN, f64::INFINITY] {
            let e = select("m", "", "s", "raw", days).unwrap_err().to_string();
            assert!(e.contains("days"), "{e}");
        }
    }

    #[test]
    fn the_url_asks_for_a_chunked_answer_in_milliseconds() {
        let config =
            InfluxHistoryConfig { url: "http://h:8086/".into(), chunk_size: 100, ..InfluxHistoryConfig::default() };
        let url = query_url(&config, "SELECT 1").unwrap();
        assert_eq!(url.path(), "/query");
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        for (k, v) in
            [("db", "gridcast"), ("q", "SELECT 1"), ("epoch", "ms"), ("chunked", "true"), ("chunk_size", "100")]
        {
            assert!(pairs.contains(&(k.into(), v.into())), "{k}={v} in {url}");
        }
        let bad = InfluxHistoryConfig { url: "not a url".into(), ..InfluxHistoryConfig::default() };
        assert!(query_url(&bad, "q").unwrap_err().to_string().contains("not a URL"));
    }

    #[test]
    fn a_series_in_partial_chunks_is_read_whole_whatever_the_pieces() {
        let want = vec![
            row(1000, [Some(1.5), Some(2.0), None]),
            row(2000, [Some(3.25), None, None]),
            row(3000, [Some(4.0), None, Some(5.5)]),
        ];
        let bytes = TWO_CHUNKS.as_bytes();
        let whole = parse(&[bytes]).unwrap();
        let byte_by_byte = parse(&bytes.chunks(1).collect::<Vec<_>>()).unwrap();
        let odd_pieces = parse(&bytes.chunks(37).collect::<Vec<_>>()).unwrap();
        for windows in [whole, byte_by_byte, odd_pieces] {
            assert_eq!(windows.documents, 2);
            assert_eq!(windows.non_numeric, 1, "the \"x\"");
            assert_eq!(windows.into_rows(), want);
        }
        // The last document without its newline is read at the end.
        assert_eq!(parse_str(TWO_CHUNKS.trim_end()).unwrap().rows.len(), 3);
    }

    #[test]
    fn an_answer_that_ends_inside_a_partial_series_is_truncated() {
        let first = TWO_CHUNKS.lines().next().unwrap();
        assert_eq!(parse_str(&format!("{first}\n")).unwrap_err(), ResponseError::Truncated);
        let half = &TWO_CHUNKS[..TWO_CHUNKS.len() - 20];
        assert!(matches!(parse_str(half).unwrap_err(), ResponseError::NotJson { .. }));
    }

    #[test]
    fn statement_and_top_level_errors_are_the_servers_words() {
        let e = parse_str("{\"results\":[{\"statement_id\":0,\"error\":\"database not found: nope\"}]}\n").unwrap_err();
        assert_eq!(e, ResponseError::Server("database not found: nope".into()));
        let e = parse_str(r#"{"error":"error parsing query: found BADSTRING"}"#).unwrap_err();
        assert_eq!(e, ResponseError::Server("error parsing query: found BADSTRING".into()));
        let config = InfluxHistoryConfig { database: "nope".into(), ..InfluxHistoryConfig::default() };
        let text = explain(ResponseError::Server("database not found: nope".into()), &config).to_string();
        assert!(text.contains("database \"nope\" does not exist on InfluxDB at http://127.0.0.1:8086"), "{text}");
    }

    #[test]
    fn garbage_is_an_error_at_its_first_byte_never_a_panic() {
        // Before any newline arrives: the server may keep sending.
        let mut parser = ResponseParser::default();
        let e = parser.feed(b"<html><body>502 Bad Gateway").unwrap_err();
        assert!(
            matches!(&e, ResponseError::NotJson { offset: 0, preview, .. } if preview.starts_with("<html>")),
            "{e}"
        );
        // After a good document, with the offset of the bad one.
        let body = format!("{}\nnonsense\n", TWO_CHUNKS.lines().next().unwrap());
        let e = parse_str(&body).unwrap_err();
        let at = TWO_CHUNKS.lines().next().unwrap().len() as u64 + 1;
        assert!(matches!(&e, ResponseError::NotJson { offset, .. } if *offset == at), "{e}");
        for body in ["[1,2]\n", "\u{0}\u{ff}\n", "{\"results\":[{\"series\":7}]}\n", "{{{{\n"] {
            assert!(matches!(parse_str(body).unwrap_err(), ResponseError::NotJson { .. }), "{body:?}");
        }
        assert!(matches!(parse_str("{\"hello\":1}\n").unwrap_err(), ResponseError::NotQueryAnswer { .. }));
        assert_eq!(parse_str("").unwrap_err(), ResponseError::Empty);
        assert_eq!(parse_str(" \n\n").unwrap_err(), ResponseError::Empty);
    }

    #[test]
    fn a_document_that_is_not_an_object_is_refused_wherever_the_body_is_cut() {
        // What fuzz/'s influxql_response checks (whole or in pieces, one
        // verdict) caught: read whole, this was an empty answer; cut after
        // "[[]", it was refused.
        let body = b"[[],null]\n";
        for pieces in [&[&body[..]][..], &[&body[..3], &body[3..]]] {
            assert!(matches!(parse(pieces).unwrap_err(), ResponseError::NotJson { offset: 0, .. }), "{pieces:?}");
        }
        // Nor after a good document on the same line.
        let first = TWO_CHUNKS.lines().nth(1).unwrap();
        let e = parse_str(&format!("{first} [[],null]\n")).unwrap_err();
        assert!(matches!(&e, ResponseError::NotJson { offset, .. } if *offset == first.len() as u64 + 1), "{e}");
    }

    #[test]
    fn rows_without_a_millisecond_time_are_an_error() {
        let rfc3339 =
            r#"{"results":[{"series":[{"columns":["time","p_l1_mean"],"values":[["2026-01-01T00:00:00Z",1]]}]}]}"#;
        assert!(matches!(parse_str(rfc3339).unwrap_err(), ResponseError::BadTime(_)));
        let no_time = r#"{"results":[{"series":[{"columns":["p_l1_mean"],"values":[[1]]}]}]}"#;
        assert!(matches!(parse_str(no_time).unwrap_err(), ResponseError::NoTimeColumn(_)));
    }

    #[test]
    fn an_empty_result_and_missing_phase_columns_are_fine() {
        let empty = parse_str("{\"results\":[{\"statement_id\":0}]}\n").unwrap();
        assert!(empty.into_rows().is_empty());
        let one_phase = r#"{"results":[{"series":[{"columns":["time","p_l1_mean"],"values":[[5,1]]}]}]}"#;
        assert_eq!(parse_str(one_phase).unwrap().into_rows(), vec![row(5, [Some(1.0), None, None])]);
    }

    #[test]
    fn a_value_comes_back_bit_for_bit_as_the_line_files_give_it() {
        // 17 significant digits, as a window mean often has: serde_json
        // reads it exactly only with its `float_roundtrip` feature.
        let body = r#"{"results":[{"series":[{"columns":["time","p_l1_mean"],"values":[[1,221.82999999999998]]}]}]}"#;
        let rows = parse_str(body).unwrap().into_rows();
        assert_eq!(rows[0].p_w[0], Some(221.82999999999998));
        assert_ne!(221.82999999999998_f64, 221.83);
    }

    #[test]
    fn the_parts_of_a_window_from_replicas_are_added_up() {
        let body = concat!(
            r#"{"results":[{"series":[{"tags":{"part":"ingest-0"},"columns":["time","p_l1_mean","p_l1_sum","p_l1_count"],"#,
            r#""values":[[1000,10,30,3],[2000,5,5,1]]},"#,
            r#"{"tags":{"part":"ingest-1"},"columns":["time","p_l1_mean","p_l1_sum","p_l1_count"],"values":[[1000,50,50,1]]}]}]}"#
        );
        let rows = parse_str(body).unwrap().into_rows();
        assert_eq!(rows, vec![row(1000, [Some(20.0), None, None]), row(2000, [Some(5.0), None, None])]);
    }

    #[test]
    fn a_window_in_two_series_counts_once_the_last_read_winning_in_time_order() {
        let body = concat!(
            r#"{"results":[{"series":[{"columns":["time","p_l1_mean"],"values":[[2000,1],[1000,2]]},"#,
            r#"{"columns":["time","p_l1_mean"],"values":[[2000,3]]}]}]}"#
        );
        let rows = parse_str(body).unwrap().into_rows();
        assert_eq!(rows, vec![row(1000, [Some(2.0), None, None]), row(2000, [Some(3.0), None, None])]);
    }

    /// A server on 127.0.0.1 that reads one request and sends `parts`, each
    /// after a short pause, then keeps the connection open for a while.
    fn fake_server(parts: Vec<&'static str>) -> InfluxHistoryConfig {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut buf).unwrap();
                if n == 0 {
                    return;
                }
                request.extend_from_slice(&buf[..n]);
            }
            for part in parts {
                let _ = stream.write_all(part.as_bytes());
                let _ = stream.flush();
                std::thread::sleep(Duration::from_millis(50));
            }
            std::thread::sleep(Duration::from_secs(3));
        });
        InfluxHistoryConfig { url, ..InfluxHistoryConfig::default() }
    }

    const SHORT: Timeouts = Timeouts { connect: Duration::from_secs(2), read: Duration::from_millis(500) };

    #[tokio::test]
    async fn a_server_that_never_answers_is_an_error_not_a_hang() {
        let config = fake_server(vec![]);
        let e = format!("{:#}", fetch(&config, "SELECT 1", SHORT).await.unwrap_err());
        assert!(e.contains(&config.url) && e.contains("did not answer"), "{e}");
    }

    #[tokio::test]
    async fn a_server_that_stops_in_the_middle_of_a_chunk_is_an_error_not_a_hang() {
        let config = fake_server(vec![
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
            "5\r\n{\"res\r\n",
        ]);
        let e = format!("{:#}", fetch(&config, "SELECT 1", SHORT).await.unwrap_err());
        assert!(e.contains(&config.url) && e.contains("stopped sending"), "{e}");
    }

    #[tokio::test]
    async fn a_connection_closed_early_is_cut_off() {
        let config = fake_server(vec![
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n{\"res",
        ]);
        // The thread keeps the socket open 3 s, then drops it.
        let timeouts = Timeouts { read: Duration::from_secs(10), ..SHORT };
        let e = format!("{:#}", fetch(&config, "SELECT 1", timeouts).await.unwrap_err());
        assert!(e.contains(&config.url) && e.contains("cut off"), "{e}");
    }

    #[tokio::test]
    async fn a_refused_login_says_which_settings_to_check() {
        let config = fake_server(vec![
            "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: 54\r\n\r\n\
             {\"error\":\"unable to parse authentication credentials\"}",
        ]);
        let e = format!("{:#}", fetch(&config, "SELECT 1", SHORT).await.unwrap_err());
        assert!(e.contains(&config.url) && e.contains("refused the credentials") && e.contains("token"), "{e}");
        let config = fake_server(vec!["HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"]);
        let e = format!("{:#}", fetch(&config, "SELECT 1", SHORT).await.unwrap_err());
        assert!(e.contains("no database \"gridcast\""), "{e}");
    }
}
