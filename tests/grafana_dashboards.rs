//! The Grafana dashboards, checked the only way possible without a Grafana
//! server: every panel's InfluxQL query, and every template variable's, of
//! every dashboard in `grafana/dashboards/` is run against a real InfluxDB
//! 1.x with Grafana's macros expanded as Grafana would. The database holds
//! what a deployment's holds, written by the real programs from the same
//! simulated meters: windows from `gridcast ingest` (raw 12 Hz readings and
//! the meter's own one-minute feature 17) and predictions from `gridcast
//! predict` (the binary, shipped model, absolute 50 W rule). Each query must
//! succeed and return a value that is neither null nor zero.
//!
//! The prediction dashboard's values are then checked against the
//! predictions' raw rows (MAE, bias, skill, shares, per-interval counts,
//! rolling and running MAE, the model table), and those rows' actuals
//! against the published readings.
//!
//! Needs the shared test servers: run `scripts/test`, or
//! `scripts/test-servers start && source target/test-servers/env`.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use gridcast_core::payload::{encode_one_minute, encode_raw};
use gridcast_edge::sinks::{HttpOptions, SinkConfig};
use gridcast_ingest::IngestConfig;
use gridcast_simulator::{PublishOptions, publish, sensor_hex};
use serde_json::Value;

use support::gridcast::{GridcastProcess, PredictToml, model_tag, shipped_model};
use support::meter::{close, expected_minutes, simulated_readings};
use support::mqtt::publish_all;
use support::{eventually, influx_create_database, influxql_query, influxql_values, shared_servers, unique};

/// The measurements the dashboards read: ingest's and the predictor's defaults.
const WINDOWS: &str = "meter_window";
const PREDICTIONS: &str = "gridcast_prediction";
const PREDICTIONS_DASHBOARD: &str = "gridcast-predictions.json";
const INGEST_DASHBOARD: &str = "gridcast-ingest.json";
const SENSORS: u32 = 3;
/// Enough judged minutes per sensor for the 15-point rolling MAE to draw.
const MINUTES: usize = 20;
/// Minutes of the meters' own one-minute records.
const ONE_MINUTE_RECORDS: usize = 5;
/// `$__interval` as the tests expand it: the prediction interval, so each
/// (sensor, interval) bucket holds exactly one prediction.
const INTERVAL: &str = "1m";
/// The site tag ingest and predict write here (the dashboards' `$site`).
const SITE: &str = "test-site";
/// Ingest's counters measurement (its default).
const INGEST_STATS: &str = "gridcast_ingest_stats";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_panel_query_returns_data_from_real_influxdb() {
    let servers = shared_servers();
    let database = unique("dashboards");
    influx_create_database(&servers.influxdb_v1, &database);

    let dir = tempfile::tempdir().unwrap();
    let topic_prefix = unique("dash");
    let mut config = IngestConfig::default();
    config.mqtt.host = servers.mqtt.ip().to_string();
    config.mqtt.port = servers.mqtt.port();
    config.mqtt.client_id = unique("dash-ingest");
    config.mqtt.topics = vec![format!("{topic_prefix}/#")];
    config.spool.dir = dir.path().join("spool");
    config.http.listen = "127.0.0.1:0".into();
    config.pipeline.idle_close_secs = 2;
    config.pipeline.site = SITE.into();
    config.pipeline.stats_write_secs = 1;
    let spool_max_bytes = config.spool.max_bytes;
    config.sinks = vec![SinkConfig::InfluxdbV1 {
        url: servers.influxdb_v1.clone(),
        database: database.clone(),
        retention_policy: None,
        username: None,
        password: None,
        password_file: None,
        http: HttpOptions::default(),
    }];
    let ingest = gridcast_ingest::Ingest::start(config).await.unwrap();
    ingest.subscribed(Duration::from_secs(10)).await.unwrap();
    // The predictor reads the raw readings only, beside ingest, as deployed.
    let predict_config = PredictToml::new(&servers, dir.path(), &format!("{topic_prefix}/raw/#"), &database).to_toml();
    let mut predict = tokio::task::block_in_place(|| {
        let mut predict =
            GridcastProcess::start("predict", dir.path(), &predict_config, &[("GRIDCAST_PREDICT__SITE", SITE)]);
        predict.wait_subscribed(1);
        predict
    });

    // Raw readings from the meters, and the meters' own one-minute records.
    let readings = simulated_readings(SENSORS, MINUTES);
    let expected = expected_minutes(&readings);
    let sensors: Vec<[u8; 12]> = {
        let mut s: Vec<[u8; 12]> = readings.iter().map(|r| r.sensor).collect();
        s.sort();
        s.dedup();
        s
    };
    let first_minute = (readings[0].ts_secs / 60.0).floor() * 60.0;
    let options = PublishOptions {
        host: servers.mqtt.ip().to_string(),
        port: servers.mqtt.port(),
        client_id: unique("dash-meter"),
        topic_prefix: format!("{topic_prefix}/raw"),
        speedup: 0.0,
        ..PublishOptions::default()
    };
    // Ingest's counters are in InfluxDB before anything is published, so
    // the health panels see them move.
    let (influx, db) = (servers.influxdb_v1.clone(), database.clone());
    tokio::task::spawn_blocking(move || {
        eventually(Duration::from_secs(30), "ingest's first counters line", || {
            let q = format!(r#"SELECT count("readings") FROM "{INGEST_STATS}""#);
            (!influxql_values(&influx, &db, &q).is_empty()).then_some(())
        })
    })
    .await
    .unwrap();
    publish(&options, readings, |_| {}).await.unwrap();
    publish_one_minute_records(servers.mqtt, &topic_prefix, &sensors, first_minute).await;
    // One message that does not decode and one reading of a minute long
    // written: ingest rejects the first and counts the second as late.
    publish_bad_and_late(servers.mqtt, &topic_prefix, &sensors[0], first_minute).await;
    // A deploy event as the agent writes it (its own line function), inside
    // the range: the "Deploys and rollbacks" annotation.
    let event = gridcast_agent::machine::Event {
        kind: gridcast_agent::machine::EventKind::Rollback,
        digest: "sha256:0123".into(),
        reason: "error 2.1 of persistence's, against 0.8 before the switch".into(),
    };
    let deploy_ms = (first_minute as i64 + 300) * 1000;
    let line = gridcast_agent::events::line("pi-1", &event, "v-test", deploy_ms);
    support::influx_write(&servers.influxdb_v1, &database, std::str::from_utf8(&line).unwrap());

    let influx = servers.influxdb_v1.clone();
    let db = database.clone();
    tokio::task::spawn_blocking(move || {
        eventually(Duration::from_secs(60), "every raw window, and one-minute windows", || {
            let answer = influxql_query(
                &influx,
                &db,
                &format!(r#"SELECT count("readings") FROM "{WINDOWS}" GROUP BY "source""#),
            );
            let counts: BTreeMap<String, i64> =
                series(&answer).iter().map(|s| (s.tag("source"), s.rows[0][1].as_i64().unwrap_or_default())).collect();
            let raw_windows = SENSORS as i64 * MINUTES as i64;
            let q = format!(r#"SELECT last("rejected_messages"), last("late_readings") FROM "{INGEST_STATS}""#);
            let last = influxql_values(&influx, &db, &q);
            let counted = last.first().is_some_and(|row| row[1].as_i64() == Some(1) && row[2].as_i64() == Some(1));
            (counts.get("raw") == Some(&raw_windows) && counts.contains_key("one_minute") && counted).then_some(())
        })
    })
    .await
    .unwrap();
    ingest.stop().await.unwrap();
    // Each sensor's last minute is predicted but never measured.
    let judged = SENSORS as usize * (MINUTES - 1);
    let rows = tokio::task::block_in_place(|| {
        predict.wait_for(Duration::from_secs(60), &format!("{judged} predictions in InfluxDB"), || {
            let rows = prediction_rows(&servers.influxdb_v1, &database);
            (rows.len() == judged).then_some(rows)
        })
    });
    drop(predict);

    let sensor_regex = sensors.iter().map(sensor_hex).collect::<Vec<_>>().join("|");
    let time_filter = format!(
        "time >= {}ms AND time <= {}ms",
        first_minute as i64 * 1000,
        (first_minute as i64 + 60 * (MINUTES as i64 + 1)) * 1000
    );
    // Ingest's counters are stamped with the wall clock, the meters' data
    // with the sample's 2007 times: the health panels get a range of their
    // own, and the `$__interval` Grafana gives a few minutes' range.
    let expand_with = |query: &str, sensor_regex: &str, site_regex: &str| {
        let (filter, interval) =
            if query.contains(INGEST_STATS) { ("time > now() - 1h", "1s") } else { (time_filter.as_str(), INTERVAL) };
        query
            .replace("$timeFilter", filter)
            .replace("$__interval", interval)
            .replace("/^$sensor$/", &format!("/^({sensor_regex})$/"))
            .replace("/^$site$/", &format!("/^({site_regex})$/"))
    };
    let expand = |query: &str, sensor_regex: &str| expand_with(query, sensor_regex, SITE);
    let mut checked = 0;
    let mut prediction_answers = BTreeMap::new();
    let mut ingest_answers = BTreeMap::new();
    for (dashboard, queries) in dashboard_queries() {
        for q in queries {
            let query = expand(&q.query, &sensor_regex);
            let answer = influxql_query(&servers.influxdb_v1, &database, &query);
            let has_values = series(&answer)
                .iter()
                .any(|s| s.rows.iter().any(|row| row[1..].iter().any(|x| !x.is_null() && x.as_f64() != Some(0.0))));
            assert!(has_values, "{dashboard}: {}: no data from {query:?}: {answer}", q.what);
            checked += 1;
            if dashboard == PREDICTIONS_DASHBOARD {
                prediction_answers.insert(q.what, answer);
            } else {
                ingest_answers.insert(q.what, answer);
            }
        }
    }
    assert!(checked >= 32, "only {checked} queries found in the dashboards");

    // The predictions themselves: actuals are the published minutes' means.
    for r in &rows {
        let want = &expected[&(r.sensor.clone(), r.time)];
        assert!(
            close(r.actual, want.p_sum_mean, 1e-4),
            "{} {}: actual {} vs published {}",
            r.sensor,
            r.time,
            r.actual,
            want.p_sum_mean
        );
    }
    check_prediction_panels(&rows, &prediction_answers);

    // The ingest dashboard's means add the windows' parts up (sum of sums
    // over sum of counts): each minute is the published minute's mean.
    let power = panel_query(INGEST_DASHBOARD, "Total active power per sensor", "A");
    let answer = influxql_query(&servers.influxdb_v1, &database, &expand(&power, &sensor_regex));
    let mut minutes = 0;
    for s in series(&answer) {
        let sensor = s.tag("sensor");
        for row in s.rows.iter().filter(|r| !r[1].is_null()) {
            let want = expected[&(sensor.clone(), row[0].as_i64().unwrap())].p_sum_mean;
            assert_close(&format!("total power of {sensor} at {}", row[0]), row[1].as_f64().unwrap(), want);
            minutes += 1;
        }
    }
    assert_eq!(minutes, expected.len(), "every published minute drawn once");

    check_ingest_panels(&ingest_answers, spool_max_bytes);

    // The site variable: All (`.*`) is every site, another site is nothing.
    let mae_panel = panel_query(PREDICTIONS_DASHBOARD, "MAE", "A");
    let all_sites = influxql_query(&servers.influxdb_v1, &database, &expand_with(&mae_panel, &sensor_regex, ".*"));
    assert_close(
        "MAE of every site",
        single_value(&all_sites),
        mean(&rows.iter().map(|r| r.abs_error).collect::<Vec<_>>()),
    );
    let other = influxql_query(&servers.influxdb_v1, &database, &expand_with(&mae_panel, &sensor_regex, "other-site"));
    assert!(series(&other).is_empty(), "another site's MAE: {other}");

    // The sensor variable filters: one sensor's MAE is that sensor's own.
    let one = sensor_hex(&sensors[1]);
    let answer = influxql_query(&servers.influxdb_v1, &database, &expand(&mae_panel, &one));
    let own: Vec<f64> = rows.iter().filter(|r| r.sensor == one).map(|r| r.abs_error).collect();
    assert_eq!(own.len(), MINUTES - 1);
    assert_close("MAE of one sensor", single_value(&answer), mean(&own));
}

/// One row of the predictor's measurement.
#[derive(Debug, Clone)]
struct Prediction {
    time: i64,
    sensor: String,
    model: String,
    predicted: f64,
    actual: f64,
    error: f64,
    abs_error: f64,
    mispredicted: bool,
}

fn prediction_rows(url: &str, db: &str) -> Vec<Prediction> {
    let q = format!(
        r#"SELECT "sensor", "model", "predicted", "actual", "error", "abs_error", "mispredicted" FROM "{PREDICTIONS}""#
    );
    influxql_values(url, db, &q)
        .into_iter()
        .map(|r| Prediction {
            time: r[0].as_i64().unwrap(),
            sensor: r[1].as_str().unwrap().to_string(),
            model: r[2].as_str().unwrap().to_string(),
            predicted: r[3].as_f64().unwrap(),
            actual: r[4].as_f64().unwrap(),
            error: r[5].as_f64().unwrap(),
            abs_error: r[6].as_f64().unwrap(),
            mispredicted: r[7].as_bool().unwrap(),
        })
        .collect()
}

/// The ingest dashboard's per-phase and health panels: the one-minute
/// records' constant voltage, current and power factor, the one rejected
/// message and the one late reading, and the spool's limit.
fn check_ingest_panels(answers: &BTreeMap<String, Value>, spool_max_bytes: u64) {
    let answer = |title: &str| {
        answers
            .get(&panel_what(title, "A"))
            .unwrap_or_else(|| panic!("{INGEST_DASHBOARD} has no panel {title:?} with query A"))
    };
    for (title, want) in [("Voltage per phase", 230.0), ("Current per phase", 2.0), ("Power factor per phase", 0.913)] {
        let mut values = 0;
        for s in series(answer(title)) {
            for row in s.rows.iter().filter(|r| !r[1].is_null()) {
                for value in &row[1..4] {
                    assert_close(title, value.as_f64().unwrap(), want);
                    values += 1;
                }
            }
        }
        assert_eq!(values, 3 * SENSORS as usize * ONE_MINUTE_RECORDS, "{title}: every phase of every record");
    }
    let column_sum = |title: &str, column: &str| -> f64 {
        series(answer(title))
            .iter()
            .map(|s| {
                let i = s.columns.iter().position(|c| c == column).unwrap_or_else(|| panic!("{title}: {column}"));
                s.rows.iter().filter_map(|r| r[i].as_f64()).sum::<f64>()
            })
            .sum()
    };
    assert_eq!(column_sum("Rejected, late and refused readings", "rejected messages"), 1.0);
    assert_eq!(column_sum("Rejected, late and refused readings", "late readings"), 1.0);
    let limits: Vec<f64> = series(answer("Spool depth"))
        .iter()
        .flat_map(|s| {
            let i = s.columns.iter().position(|c| c == "limit").unwrap();
            s.rows.iter().map(move |r| r[i].as_f64().unwrap())
        })
        .collect();
    assert!(!limits.is_empty() && limits.iter().all(|l| *l == spool_max_bytes as f64), "spool limit {limits:?}");
}

/// The prediction dashboard's values, each recomputed from the raw rows.
fn check_prediction_panels(rows: &[Prediction], answers: &BTreeMap<String, Value>) {
    let answer = |title: &str, ref_id: &str| {
        answers
            .get(&panel_what(title, ref_id))
            .unwrap_or_else(|| panic!("{PREDICTIONS_DASHBOARD} has no panel {title:?} with query {ref_id}"))
    };
    for r in rows {
        assert!(close(r.error, r.predicted - r.actual, 1e-9), "{r:?}: error");
        assert!(close(r.abs_error, r.error.abs(), 1e-12), "{r:?}: abs_error");
    }
    let n = rows.len() as f64;
    let flagged = rows.iter().filter(|r| r.mispredicted).count();
    assert!(flagged > 0 && flagged < rows.len(), "{flagged} of {} mispredicted: the shares would not be tested", n);
    let abs: Vec<f64> = rows.iter().map(|r| r.abs_error).collect();
    let mae = mean(&abs);

    // Mispredictions per hour add up to every flagged prediction.
    let per_hour: f64 = series(answer("Mispredictions per hour", "A"))
        .iter()
        .flat_map(|s| s.rows.iter().map(|r| r[1].as_f64().unwrap()))
        .sum();
    assert_eq!(per_hour as usize, flagged, "mispredictions per hour, summed");

    // The model annotation: each model at its first prediction.
    let first_of = |model: &str| rows.iter().filter(|r| r.model == model).map(|r| r.time).min().unwrap();
    let models: Vec<(i64, String)> = series(answers.get("annotation \"Model versions\"").expect("a model annotation"))
        .iter()
        .map(|s| (s.rows[0][0].as_i64().unwrap(), s.rows[0][2].as_str().unwrap().to_string()))
        .collect();
    assert!(!models.is_empty());
    for (time, model) in &models {
        assert_eq!(*time, first_of(model), "the annotation of model {model}");
    }
    let deploys = series(answers.get("annotation \"Deploys and rollbacks\"").expect("a deploy annotation"));
    assert_eq!(deploys[0].rows.len(), 1, "the one deploy event");
    assert_eq!(deploys[0].rows[0][3], "rollback", "{:?}", deploys[0].columns);

    // The stats.
    assert_close("MAE", single_value(answer("MAE", "A")), mae);
    let mean_actual = mean(&rows.iter().map(|r| r.actual).collect::<Vec<_>>());
    assert_close("MAE / mean load", single_value(answer("MAE / mean load", "A")), 100.0 * mae / mean_actual);
    let bias = mean(&rows.iter().map(|r| r.error).collect::<Vec<_>>());
    assert_close("bias", single_value(answer("Bias (mean error)", "A")), bias);
    let mut persistence = Vec::new();
    for sensor_rows in by_sensor(rows).values() {
        persistence.extend(sensor_rows.windows(2).map(|w| (w[1].actual - w[0].actual).abs()));
    }
    let skill = 1.0 - mae / mean(&persistence);
    eprintln!("{} predictions, {flagged} mispredicted, MAE {mae:.1} W, skill vs persistence {skill:.3}", rows.len());
    assert_close("skill vs persistence", single_value(answer("Skill vs persistence", "A")), skill);
    assert_close("mispredicted share", single_value(answer("Mispredicted", "A")), 100.0 * flagged as f64 / n);
    assert_close("judged", single_value(answer("Judged predictions", "A")), n);

    // Per sensor and interval: exactly the rows, one point each.
    let raw: BTreeMap<(String, i64), &Prediction> = rows.iter().map(|r| ((r.sensor.clone(), r.time), r)).collect();
    let mut points = 0;
    for s in series(answer("Predicted vs actual power", "A")) {
        assert_eq!(s.columns, ["time", "predicted", "actual"]);
        for row in s.rows.iter().filter(|row| !row[1].is_null()) {
            let r = raw[&(s.tag("sensor"), row[0].as_i64().unwrap())];
            assert_close("predicted", row[1].as_f64().unwrap(), r.predicted);
            assert_close("actual", row[2].as_f64().unwrap(), r.actual);
            points += 1;
        }
    }
    assert_eq!(points, rows.len(), "predicted vs actual: one point per prediction");
    let mut points = 0;
    for s in series(answer("Prediction error (predicted - actual)", "A")) {
        for row in s.rows.iter().filter(|row| !row[1].is_null()) {
            assert_close("error", row[1].as_f64().unwrap(), raw[&(s.tag("sensor"), row[0].as_i64().unwrap())].error);
            points += 1;
        }
    }
    assert_eq!(points, rows.len(), "error: one point per prediction");

    // Rolling MAE per sensor: the last point is the mean of its last 15;
    // running MAE: the last point is the range's MAE.
    let rolling = series(answer("Mean absolute error: rolling and running", "A"));
    assert_eq!(rolling.len(), SENSORS as usize);
    for s in &rolling {
        let own = &by_sensor(rows)[&s.tag("sensor")];
        assert_eq!(s.rows.len(), own.len() - 14, "rolling MAE of {}: one point per 15-point window", s.tag("sensor"));
        let last15: Vec<f64> = own[own.len() - 15..].iter().map(|r| r.abs_error).collect();
        assert_close("rolling MAE", s.rows.last().unwrap()[1].as_f64().unwrap(), mean(&last15));
    }
    let running = series(answer("Mean absolute error: rolling and running", "B"));
    assert_close("running MAE", running[0].rows.last().unwrap()[1].as_f64().unwrap(), mae);

    // Mispredictions per interval: 1 where flagged, 0 elsewhere.
    let mut total = 0.0;
    for s in series(answer("Mispredictions per interval", "A")) {
        for row in &s.rows {
            let count = row[1].as_f64().unwrap();
            let want =
                raw.get(&(s.tag("sensor"), row[0].as_i64().unwrap())).map_or(0.0, |r| r.mispredicted as u8 as f64);
            assert_eq!(count, want, "mispredictions of {} at {}", s.tag("sensor"), row[0]);
            total += count;
        }
    }
    assert_eq!(total, flagged as f64, "mispredictions per interval add up to the flagged rows");

    // One model, the shipped one: its bars and its table row.
    let tag = model_tag(&shipped_model());
    assert!(rows.iter().all(|r| r.model == tag), "every prediction tagged with the shipped model {tag}");
    let by_model = series(answer("Judged predictions per interval, by model", "A"));
    assert_eq!(by_model.len(), 1);
    assert_eq!(by_model[0].tag("model"), tag);
    let judged_bars: f64 = by_model[0].rows.iter().map(|row| row[1].as_f64().unwrap()).sum();
    assert_eq!(judged_bars, n);
    let table = series(answer("Model versions in the range", "A"));
    assert_eq!(table.len(), 1);
    assert_eq!(table[0].tag("model"), tag);
    assert_eq!(table[0].columns, ["time", "judged", "mispredicted", "MAE", "bias"]);
    let row = &table[0].rows[0];
    assert_eq!(row[1].as_f64(), Some(n));
    assert_eq!(row[2].as_f64(), Some(flagged as f64));
    assert_close("model MAE", row[3].as_f64().unwrap(), mae);
    assert_close("model bias", row[4].as_f64().unwrap(), bias);
}

fn by_sensor(rows: &[Prediction]) -> BTreeMap<String, Vec<Prediction>> {
    let mut out: BTreeMap<String, Vec<Prediction>> = BTreeMap::new();
    for r in rows {
        out.entry(r.sensor.clone()).or_default().push(r.clone());
    }
    for v in out.values_mut() {
        v.sort_by_key(|r| r.time);
    }
    out
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

fn assert_close(what: &str, got: f64, want: f64) {
    assert!(close(got, want, 1e-9), "{what}: the dashboard shows {got}, the rows give {want}");
}

/// One series of an InfluxQL answer.
struct Series {
    tags: BTreeMap<String, String>,
    columns: Vec<String>,
    rows: Vec<Vec<Value>>,
}

impl Series {
    fn tag(&self, name: &str) -> String {
        self.tags.get(name).cloned().unwrap_or_else(|| panic!("no tag {name} in {:?}", self.tags))
    }
}

fn series(answer: &Value) -> Vec<Series> {
    answer["results"][0]["series"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| Series {
            tags: s["tags"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect(),
            columns: s["columns"].as_array().into_iter().flatten().map(|c| c.as_str().unwrap().to_string()).collect(),
            rows: s["values"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| r.as_array().cloned().unwrap_or_default())
                .collect(),
        })
        .collect()
}

/// The value of a query that returns one series of one row of one value.
fn single_value(answer: &Value) -> f64 {
    let s = series(answer);
    assert!(s.len() == 1 && s[0].rows.len() == 1 && s[0].rows[0].len() == 2, "not a single value: {answer}");
    s[0].rows[0][1].as_f64().unwrap_or_else(|| panic!("not a number: {answer}"))
}

/// A panel's or variable's query, and how to name it in a failure.
struct Query {
    what: String,
    query: String,
}

fn panel_what(title: &str, ref_id: &str) -> String {
    format!("panel {title:?} query {ref_id}")
}

fn dashboards_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("grafana/dashboards")
}

fn read_dashboard(file: &str) -> Value {
    let path = dashboards_dir().join(file);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()))
}

/// The raw query of `title`'s target `ref_id` in dashboard `file`.
fn panel_query(file: &str, title: &str, ref_id: &str) -> String {
    let dashboard = read_dashboard(file);
    let panel = dashboard["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["title"] == title)
        .unwrap_or_else(|| panic!("{file} has no panel {title:?}"));
    let target = panel["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["refId"] == ref_id)
        .unwrap_or_else(|| panic!("{file}: panel {title:?} has no query {ref_id}"));
    target["query"].as_str().unwrap().to_string()
}

/// Every panel target's and template variable's query, by dashboard file.
fn dashboard_queries() -> Vec<(String, Vec<Query>)> {
    let dir = dashboards_dir();
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let dashboard = read_dashboard(&file);
        let mut queries = Vec::new();
        for panel in dashboard["panels"].as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or("");
            for target in panel["targets"].as_array().into_iter().flatten() {
                let query = target["query"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{}: panel {title:?} has a target without a raw query", path.display()));
                let what = panel_what(title, target["refId"].as_str().unwrap_or(""));
                assert!(!queries.iter().any(|q: &Query| q.what == what), "{file}: two queries named {what}");
                queries.push(Query { what, query: query.to_string() });
            }
        }
        for annotation in dashboard["annotations"]["list"].as_array().into_iter().flatten() {
            if let Some(query) = annotation["query"].as_str() {
                let what = format!("annotation {:?}", annotation["name"].as_str().unwrap_or(""));
                queries.push(Query { what, query: query.to_string() });
            }
        }
        for variable in dashboard["templating"]["list"].as_array().into_iter().flatten() {
            if let Some(query) = variable["query"].as_str() {
                let what = format!("variable ${}", variable["name"].as_str().unwrap_or(""));
                queries.push(Query { what, query: query.to_string() });
            }
        }
        assert!(!queries.is_empty(), "{file}: no queries");
        out.push((file, queries));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(
        out.iter().any(|(file, _)| file == PREDICTIONS_DASHBOARD),
        "no {PREDICTIONS_DASHBOARD} in {}",
        dir.display()
    );
    out
}

/// The meters' own one-minute records (feature 17).
async fn publish_one_minute_records(broker: SocketAddr, topic_prefix: &str, sensors: &[[u8; 12]], first_minute: f64) {
    let mut messages = Vec::new();
    for minute in 0..ONE_MINUTE_RECORDS {
        for sensor in sensors {
            // v i s p q pf phi per phase, in thousandths.
            let phase = [230_000, 2_000, 460_000, 420_000, 150_000, 913, 24_000];
            let payload = encode_one_minute(first_minute + 60.0 * minute as f64, sensor, 0, [phase; 3], [1_000; 3]);
            messages.push((format!("{topic_prefix}/one-minute/{}", sensor_hex(sensor)), payload.to_vec()));
        }
    }
    publish_all(broker, messages).await;
}

/// A message that is no meter payload, and a raw reading of `sensor` in the
/// first minute (closed and written long before), on the raw topic.
async fn publish_bad_and_late(broker: SocketAddr, topic_prefix: &str, sensor: &[u8; 12], first_minute: f64) {
    let topic = format!("{topic_prefix}/raw/{}", sensor_hex(sensor));
    let late = encode_raw(18, first_minute + 1.5, sensor, 0, [1_000_000; 3], [0; 3]);
    publish_all(broker, vec![(topic.clone(), vec![0xff, 0x00, 0x01]), (topic, late.to_vec())]).await;
}
