//! A minimal HTTP/1.1 client on `std::net`, and the read-back and write
//! helpers built on it: enough to talk to InfluxDB 1.x and VictoriaMetrics
//! on loopback from a synchronous test, with no runtime and no dependencies.
//!
//! One request per connection (`Connection: close`); responses may be
//! chunked (VictoriaMetrics streams exports that way). Plain `http://` only.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

/// How long one request may take, connect to last byte.
const TIMEOUT: Duration = Duration::from_secs(60);

/// A response: status code and decoded body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `method url` with `body` and returns the response, or the I/O
/// error (a server that is down is an error, not a panic: fault tests
/// expect it).
pub fn request(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> std::io::Result<Response> {
    let (authority, target) = split_url(url);
    let mut stream = TcpStream::connect(authority)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\
         Content-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{method} {url}: malformed response: {}", String::from_utf8_lossy(&raw)),
        )
    })
}

/// GET `url`, panicking if the server cannot be reached.
pub fn get(url: &str) -> Response {
    request("GET", url, &[], b"").unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// POST `body` to `url`, panicking if the server cannot be reached.
pub fn post(url: &str, body: &[u8]) -> Response {
    request("POST", url, &[], body).unwrap_or_else(|e| panic!("POST {url}: {e}"))
}

/// `k1=v1&k2=v2`, percent-encoded.
pub fn query_string(pairs: &[(&str, &str)]) -> String {
    pairs.iter().map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v))).collect::<Vec<_>>().join("&")
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for byte in s.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `http://host:port/path?q` -> (`host:port`, `/path?q`).
fn split_url(url: &str) -> (&str, &str) {
    let rest = url.strip_prefix("http://").unwrap_or_else(|| panic!("{url:?}: only http:// URLs are supported"));
    match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    }
}

fn parse_response(raw: &[u8]) -> Option<Response> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let body = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("content-length") {
            length = value.parse::<usize>().ok();
        }
    }
    let body = if chunked { dechunk(body)? } else { body[..length.unwrap_or(body.len()).min(body.len())].to_vec() };
    Some(Response { status, body })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data.windows(2).position(|w| w == b"\r\n")?;
        let size_field = std::str::from_utf8(&data[..eol]).ok()?;
        let size = usize::from_str_radix(size_field.split(';').next()?.trim(), 16).ok()?;
        data = &data[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

// --- InfluxDB 1.x ---------------------------------------------------------------

/// Runs InfluxQL `q` against database `db` (GET /query, times as epoch ms)
/// and returns the JSON answer. Panics on any error, including one InfluxDB
/// reports inside the results.
pub fn influxql_query(url: &str, db: &str, q: &str) -> Value {
    let full = format!("{url}/query?{}", query_string(&[("db", db), ("q", q), ("epoch", "ms")]));
    let response = get(&full);
    assert_eq!(response.status, 200, "GET {full}: {}", response.text());
    let answer: Value = serde_json::from_slice(&response.body)
        .unwrap_or_else(|e| panic!("GET {full}: not JSON ({e}): {}", response.text()));
    let errors: Vec<&Value> = std::iter::once(&answer["error"])
        .chain(answer["results"].as_array().into_iter().flatten().map(|r| &r["error"]))
        .filter(|e| !e.is_null())
        .collect();
    assert!(errors.is_empty(), "InfluxQL {q:?} on {db}: {errors:?}");
    answer
}

/// The rows of the first series `q` returns, each as `[time_ms, values...]`
/// in the order of the SELECT; empty when nothing matched.
pub fn influxql_values(url: &str, db: &str, q: &str) -> Vec<Vec<Value>> {
    let answer = influxql_query(url, db, q);
    answer["results"][0]["series"][0]["values"]
        .as_array()
        .map(|rows| rows.iter().map(|row| row.as_array().cloned().unwrap_or_default()).collect())
        .unwrap_or_default()
}

/// A gridcast service's `/metrics` on `127.0.0.1:port`, as name (without
/// the `gridcast_` prefix) -> value; `None` while nothing answers.
pub fn gridcast_metrics(port: u16) -> Option<std::collections::BTreeMap<String, f64>> {
    let response = request("GET", &format!("http://127.0.0.1:{port}/metrics"), &[], b"").ok()?;
    Some(
        response
            .text()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' '))
            .filter_map(|(k, v)| Some((k.trim_start_matches("gridcast_").to_string(), v.parse().ok()?)))
            .collect(),
    )
}

/// Creates database `db` (a no-op if it exists); panics on any error.
pub fn influx_create_database(url: &str, db: &str) {
    let full = format!("{url}/query?{}", query_string(&[("q", &format!("CREATE DATABASE \"{db}\""))]));
    let response = post(&full, b"");
    assert!(response.status == 200 && !response.text().contains("\"error\""), "POST {full}: {}", response.text());
}

/// Writes line protocol with millisecond timestamps (POST /write) and
/// panics unless InfluxDB answers 204.
pub fn influx_write(url: &str, db: &str, lines: &str) {
    let full = format!("{url}/write?{}", query_string(&[("db", db), ("precision", "ms")]));
    let response = post(&full, lines.as_bytes());
    assert_eq!(response.status, 204, "POST {full}: {}", response.text());
}

// --- VictoriaMetrics --------------------------------------------------------------

/// Makes everything VictoriaMetrics has accepted searchable now rather than
/// within about a second (GET /internal/force_flush). Samples of known
/// series show at once after it; a new series may take up to ~1 s more, so
/// poll with [`super::eventually`].
pub fn victoria_flush(url: &str) {
    let response = get(&format!("{url}/internal/force_flush"));
    assert_eq!(response.status, 200, "force_flush at {url}: {}", response.text());
}

/// Every sample of the series matching `match_expr` (a series selector such
/// as `{__name__=~"m_.*"}` or `m_power_active{phase="1"}`), all time, one
/// JSON object per series: `{"metric": {"__name__": .., tags..},
/// "values": [..], "timestamps": [ms..]}`. Does not flush first.
pub fn victoria_export(url: &str, match_expr: &str) -> Vec<Value> {
    let full = format!("{url}/api/v1/export?{}", query_string(&[("match[]", match_expr)]));
    let response = get(&full);
    assert_eq!(response.status, 200, "GET {full}: {}", response.text());
    response
        .text()
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("GET {full}: line {line:?}: {e}")))
        .collect()
}

/// Writes line protocol with millisecond timestamps the way gridcast does
/// (POST /api/v2/write), uncompressed, and panics unless VictoriaMetrics
/// answers 204. VictoriaMetrics answers 204 even to lines it drops
/// (unparsable, or timestamps outside the retention): check with an export.
pub fn victoria_write(url: &str, lines: &str) {
    let full = format!(
        "{url}/api/v2/write?{}",
        query_string(&[("bucket", "gridcast"), ("org", "gridcast"), ("precision", "ms")])
    );
    let response = post(&full, lines.as_bytes());
    assert_eq!(response.status, 204, "POST {full}: {}", response.text());
}
