//! `gridcast retrain`'s history from a real InfluxDB 1.x: the windows ingest
//! wrote come back as exactly the rows ingest's line files give (chunked
//! answers, gaps, missing phases, other sensors and sources beside), and a
//! server that is down, not InfluxDB, or without the database is an error
//! that says so.
//!
//! Needs the shared test servers: `scripts/test-servers start && source
//! target/test-servers/env` (or `scripts/test`). Each test writes to a
//! measurement of its own, so tests may run in parallel.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use gridcast_core::meter_csv::MeterRow;
use gridcast_trainer::data::MeterRows;
use gridcast_trainer::retrain::config::InfluxHistoryConfig;
use gridcast_trainer::retrain::{history, influx};

/// The database `scripts/test-servers start` creates.
const DB: &str = "gridcast";

/// 2026-01-01T00:00:00Z in ms.
const START_MS: i64 = 1_767_225_600_000;

/// The InfluxDB 1.x the test set-up runs; a test without it fails.
fn influx_url() -> String {
    match std::env::var("GRIDCAST_TEST_INFLUXDB_V1") {
        Ok(url) if !url.is_empty() => url.trim_end_matches('/').to_owned(),
        _ => panic!(
            "GRIDCAST_TEST_INFLUXDB_V1 is not set: start the test servers with `scripts/test-servers start` \
             and `source target/test-servers/env`, or run `scripts/test`"
        ),
    }
}

/// A measurement name no other test in this run uses.
fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}_{}_{}_{nanos}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Reading the test database in chunks of 100 rows.
fn config(url: &str) -> InfluxHistoryConfig {
    InfluxHistoryConfig { url: url.to_owned(), database: DB.into(), chunk_size: 100, ..InfluxHistoryConfig::default() }
}

/// Write line protocol (ms timestamps) to the test database.
async fn write(url: &str, lines: &str) {
    let response = reqwest::Client::new()
        .post(format!("{url}/write?db={DB}&precision=ms"))
        .body(lines.to_owned())
        .send()
        .await
        .unwrap_or_else(|e| panic!("writing to InfluxDB at {url}: {e}"));
    let status = response.status();
    assert_eq!(status.as_u16(), 204, "write to {url}: {status} {}", response.text().await.unwrap_or_default());
}

/// Rows compared exactly: `MeterRows` has no accessor, and its Debug form
/// prints every f64 so that it reads back bit for bit. A mismatch shows
/// where the two first differ, not half a million rows.
#[track_caller]
fn assert_same_rows(got: &MeterRows, want: &MeterRows) {
    let (got, want) = (format!("{got:?}"), format!("{want:?}"));
    if got != want {
        let at = got.bytes().zip(want.bytes()).take_while(|(g, w)| g == w).count();
        let from = got[..at].rfind("MeterRow {").unwrap_or(0);
        let near = |s: &str| s[from..s.len().min(at + 150)].to_string();
        panic!("rows differ at byte {at}:\n got: {}\nwant: {}", near(&got), near(&want));
    }
}

/// One line as ingest writes it (fields abridged); a missing phase has no field.
fn line(measurement: &str, sensor: &str, source: &str, ts_ms: i64, p_w: [Option<f64>; 3]) -> String {
    let mut fields = vec!["readings=720i".to_string()];
    for (phase, value) in p_w.iter().enumerate() {
        if let Some(v) = value {
            fields.push(format!("p_l{}_mean={v:?}", phase + 1));
        }
    }
    format!("{measurement},sensor={sensor},source={source} {} {ts_ms}\n", fields.join(","))
}

/// 1100 minutes of sensor `a` (source raw) with an hour's gap, missing
/// phases, zero and negative values and one window written twice, beside
/// sensor `b` and sensor `a`'s one-minute windows. Returns the line
/// protocol and the rows expected for `a`/raw.
fn history(measurement: &str) -> (String, Vec<MeterRow>) {
    let mut lines = String::new();
    let mut want = Vec::new();
    for i in 0..1100i64 {
        if (400..460).contains(&i) {
            continue; // the gap: no windows at all
        }
        let ts_ms = START_MS + i * 60_000;
        let p1 = match i {
            3 => Some(0.0),
            4 => Some(-12.5),
            5 => None,
            _ => Some(200.0 + i as f64 * 0.37),
        };
        let p2 = (i % 7 != 0).then_some(100.0 + (i % 13) as f64 * 1.5);
        let p3 = (i % 11 != 0).then_some(i as f64 * 0.001 + 50.125);
        lines.push_str(&line(measurement, "a", "raw", ts_ms, [p1, p2, p3]));
        lines.push_str(&line(measurement, "b", "raw", ts_ms, [Some(1.0), Some(2.0), Some(3.0)]));
        lines.push_str(&line(measurement, "a", "one_minute", ts_ms, [Some(7.0), None, None]));
        want.push(MeterRow { line: 0, ts_ms, p_w: [p1, p2, p3] });
    }
    // A sink retried after a crash writes the same window again.
    let again = lines.lines().nth(30).unwrap().to_string();
    lines.push_str(&again);
    lines.push('\n');
    (lines, want)
}

#[tokio::test]
async fn influxdb_gives_exactly_the_rows_the_line_files_give() {
    let url = influx_url();
    let measurement = unique("history");
    let (lines, want) = history(&measurement);
    write(&url, &lines).await;

    let got = influx::load(&config(&url), &measurement, "a", "raw").await.unwrap();
    assert!(want.len() > 10 * 100, "more rows than ten chunks of 100");
    assert_same_rows(&got, &MeterRows::from_rows(want));

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gridcast-2026-01-01.lp"), &lines).unwrap();
    let from_files = history::from_lines_dir(dir.path(), &measurement, "a", "raw").unwrap();
    assert_same_rows(&got, &from_files);
    assert_eq!(got.intervals(60).len(), from_files.intervals(60).len());

    // The other sensor and source come back on their own too.
    let b = influx::load(&config(&url), &measurement, "b", "raw").await.unwrap();
    assert_same_rows(&b, &history::from_lines_dir(dir.path(), &measurement, "b", "raw").unwrap());
    let one_minute = influx::load(&config(&url), &measurement, "a", "one_minute").await.unwrap();
    assert_eq!(one_minute.intervals(60)[0].p[0], 7.0);
}

#[tokio::test]
async fn a_sensor_id_with_quotes_and_backslashes_is_matched_exactly_and_cannot_widen_the_query() {
    let url = influx_url();
    let measurement = unique("quoted");
    let odd = r#"o'k"q\z"#;
    let mut lines = String::new();
    for i in 0..3 {
        lines.push_str(&line(&measurement, odd, "raw", START_MS + i * 60_000, [Some(i as f64), None, Some(1.5)]));
        lines.push_str(&line(&measurement, "b", "raw", START_MS + i * 60_000, [Some(9.0), None, None]));
    }
    write(&url, &lines).await;
    let got = influx::load(&config(&url), &measurement, odd, "raw").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gridcast-2026-01-01.lp"), &lines).unwrap();
    let from_files = history::from_lines_dir(dir.path(), &measurement, odd, "raw").unwrap();
    assert_same_rows(&got, &from_files);
    assert_eq!(got.intervals(60).len(), 3);

    for injection in [r#"x' OR "sensor"='b"#, r#"x\' OR "sensor"='b"#, "x' OR 1=1 --"] {
        let e = format!("{:#}", influx::load(&config(&url), &measurement, injection, "raw").await.unwrap_err());
        assert!(e.contains("no ") && e.contains(&format!("{injection:?}")), "{injection}: {e}");
    }
}

#[tokio::test]
async fn days_keeps_only_the_last_days_of_the_history() {
    let url = influx_url();
    let measurement = unique("recent");
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    let (old, recent) = (now_ms - 10 * 86_400_000, now_ms - 3_600_000);
    let lines = [old, recent].map(|ts| line(&measurement, "a", "raw", ts, [Some(1.0), None, None])).concat();
    write(&url, &lines).await;
    let all = influx::load(&config(&url), &measurement, "a", "raw").await.unwrap();
    assert_eq!(all.intervals(60).len(), 2);
    let last_two_days = InfluxHistoryConfig { days: 2.0, ..config(&url) };
    let got = influx::load(&last_two_days, &measurement, "a", "raw").await.unwrap();
    let want = MeterRow { line: 0, ts_ms: recent, p_w: [Some(1.0), None, None] };
    assert_same_rows(&got, &MeterRows::from_rows(vec![want]));
}

#[tokio::test]
async fn no_windows_is_an_error_naming_the_sensor_the_database_and_the_url() {
    let url = influx_url();
    let measurement = unique("empty");
    write(&url, &line(&measurement, "a", "raw", START_MS, [Some(1.0), None, None])).await;
    let e = format!("{:#}", influx::load(&config(&url), &measurement, "nobody", "raw").await.unwrap_err());
    for part in ["\"nobody\"", &measurement, "source raw", "database \"gridcast\"", &url] {
        assert!(e.contains(part), "{part:?} in {e}");
    }
}

#[tokio::test]
async fn a_database_that_does_not_exist_is_named() {
    let url = influx_url();
    let missing = unique("no_such_db");
    let config = InfluxHistoryConfig { database: missing.clone(), ..config(&url) };
    let e = format!("{:#}", influx::load(&config, "meter_window", "a", "raw").await.unwrap_err());
    assert!(e.contains(&format!("database {missing:?} does not exist")) && e.contains(&url), "{e}");
}

#[tokio::test]
async fn influxdb_down_is_an_error_naming_the_url() {
    // A port nobody listens on: bound a moment ago, then let go.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let e = format!("{:#}", influx::load(&config(&url), "meter_window", "a", "raw").await.unwrap_err());
    assert!(e.contains(&format!("InfluxDB is not reachable at {url}")), "{e}");
}

#[tokio::test]
async fn a_server_that_answers_garbage_is_a_clear_error_not_a_panic() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "the client closed before sending a request");
            request.extend_from_slice(&buf[..n]);
        }
        let body = "<html><body>It works!</body></html>\n";
        let head = format!("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n", body.len());
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(body.as_bytes()).unwrap();
        String::from_utf8_lossy(&request).into_owned()
    });
    let e = format!("{:#}", influx::load(&config(&url), "meter_window", "a", "raw").await.unwrap_err());
    assert!(e.contains(&url) && e.contains("not InfluxDB JSON") && e.contains("<html>"), "{e}");
    let request = server.join().unwrap();
    assert!(request.starts_with("GET /query?db=gridcast&q=SELECT"), "{request}");
    assert!(request.contains("chunked=true") && request.contains("chunk_size=100"), "{request}");
}
