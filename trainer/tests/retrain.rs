//! `gridcast retrain` on the shipped sample: a challenger that wins by the
//! margin is published (version first, then `current.gcm`), one that cannot
//! beat the champion ships nothing and says why, and ingest's line files
//! give the same history as the CSV.

use std::path::{Path, PathBuf};

use gridcast_core::features::{FeatureSpec, FeatureTable};
use gridcast_core::model::Model;
use gridcast_trainer::gbdt::TrainParams;
use gridcast_trainer::retrain::config::{HistoryConfig, RetrainConfig};
use gridcast_trainer::retrain::{history, retrain};
use gridcast_trainer::{data, pipeline};

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(p)
}

const SAMPLE: &str = "samples/uci_household_2007-01_14d.csv";

/// A retrain of the sample against `champion`, publishing under `out`.
fn config(champion: &Path, out: &Path) -> RetrainConfig {
    let mut c = RetrainConfig::default();
    c.history.csv = Some(repo(SAMPLE));
    c.champion.model = champion.display().to_string();
    c.train.trees = 60;
    c.train.learning_rate = 0.1;
    c.train.threads = 2;
    c.gate.margin = 0.01;
    c.publish.store = format!("file://{}", out.display());
    c.publish.site = "home".into();
    c
}

/// A champion barely better than persistence: one small tree.
fn weak_champion(dir: &Path) -> PathBuf {
    let series = data::load_intervals(&repo(SAMPLE), 60).unwrap();
    let spec = FeatureSpec::default();
    let table = FeatureTable::build(&spec, &series[..5000]).unwrap();
    let params =
        TrainParams { n_trees: 1, learning_rate: 0.01, early_stopping_rounds: 0, threads: 1, ..Default::default() };
    let (model, _) = pipeline::fit(&spec, &table, &table.labelled_rows(), &params, &mut |_, _| {}).unwrap();
    let path = dir.join("weak.gcm");
    std::fs::write(&path, model.to_bytes()).unwrap();
    path
}

#[tokio::test]
async fn a_challenger_that_wins_by_the_margin_is_published_version_first_then_current() {
    let dir = tempfile::tempdir().unwrap();
    let champion = weak_champion(dir.path());
    let champion_version = Model::from_bytes(&std::fs::read(&champion).unwrap()).unwrap().payload_sha256();
    let out = dir.path().join("store");
    let outcome = retrain(&config(&champion, &out), "cli").await.unwrap();
    assert!(outcome.verdict.ship, "{}", outcome.verdict);
    assert!(outcome.challenger.mae < outcome.champion.mae * 0.99);
    let published = outcome.published.expect("published");
    let models = out.join("home/models");
    assert_eq!(published.versioned, models.join(format!("{}.gcm", published.version)));
    assert_eq!(published.current, models.join("current.gcm"));
    let current = std::fs::read(&published.current).unwrap();
    assert_eq!(current, std::fs::read(&published.versioned).unwrap());
    let model = Model::from_bytes(&current).unwrap();
    let lineage = model.meta.lineage.expect("a retrained model says where it comes from");
    assert_eq!(lineage.parent_version, champion_version);
    assert_eq!(lineage.trigger, "cli");
    assert_eq!(lineage.data_range.0, "2007-01-01T00:00:00Z");
    assert_eq!(lineage.holdout_from, "2007-01-11T23:59:00Z", "the last 3 days held out");
    assert_eq!(lineage.champion_holdout["mae"], outcome.champion.mae);
    assert_eq!(lineage.challenger_holdout["mae"], outcome.challenger.mae);
    assert!(model.meta.training_range.unwrap().1 < lineage.holdout_from, "the challenger never saw the holdout");
    let names: Vec<_> = std::fs::read_dir(&models).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 2, "the version and current.gcm, no temp file left: {names:?}");

    // The same retrain again makes the same model: its version file is kept, not rewritten.
    let again = retrain(&config(&champion, &out), "cli").await.unwrap().published.unwrap();
    assert_eq!(again.version, published.version);
}

#[tokio::test]
async fn with_a_signing_key_the_published_model_is_signed_by_it_and_keeps_its_version() {
    use gridcast_core::model::signature;
    let dir = tempfile::tempdir().unwrap();
    let champion = weak_champion(dir.path());
    let (private, _, public) = gridcast_ship::signing::keygen(&dir.path().join("keys")).unwrap();
    let mut config = config(&champion, &dir.path().join("store"));
    config.publish.signing_key_file = Some(private);
    let published = retrain(&config, "cli").await.unwrap().published.expect("published");
    let current = std::fs::read(&published.current).unwrap();
    assert_eq!(current, std::fs::read(&published.versioned).unwrap());
    assert_eq!(signature::verify(&current, &[public]).unwrap(), public);
    assert_eq!(Model::from_bytes(&current).unwrap().payload_sha256(), published.version);

    // A key file that is not a key fails the retrain before it trains, naming the file.
    let bad = dir.path().join("bad.key");
    std::fs::write(&bad, "0123").unwrap();
    config.publish.signing_key_file = Some(bad.clone());
    let e = format!("{:#}", retrain(&config, "cli").await.unwrap_err());
    assert!(e.contains(&bad.display().to_string()) && e.contains("64 hex digits"), "{e}");
}

#[tokio::test]
async fn a_challenger_that_cannot_beat_the_champion_ships_nothing_and_says_why() {
    // The shipped model was trained on the whole sample, holdout included.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("store");
    let outcome = retrain(&config(&repo("models/default.gcm"), &out), "cli").await.unwrap();
    assert!(!outcome.verdict.ship);
    assert!(outcome.published.is_none());
    assert!(outcome.verdict.reason.contains("shipping needs 1.0 % below"), "{}", outcome.verdict);
    assert!(!out.exists(), "nothing written");
}

#[tokio::test]
async fn ingest_line_files_give_the_history_the_csv_gives() {
    let series = data::load_intervals(&repo(SAMPLE), 60).unwrap();
    let two_days = &series[..2880];
    let dir = tempfile::tempdir().unwrap();
    let mut day1 = String::new();
    let mut day2 = String::new();
    for (i, iv) in two_days.iter().enumerate() {
        let out = if i < 1440 { &mut day1 } else { &mut day2 };
        let ms = iv.ts * 1000;
        // As ingest writes them (fields abridged), with another sensor and source beside.
        out.push_str(&format!(
            "meter_window,sensor=a,source=raw readings=720i,p_l1_mean={},p_l2_mean={},p_l3_mean={},p_sum_mean=1 {ms}\n",
            iv.p[0], iv.p[1], iv.p[2]
        ));
        out.push_str(&format!("meter_window,sensor=b,source=raw readings=720i,p_l1_mean=1 {ms}\n"));
        out.push_str(&format!("meter_window,sensor=a,source=one_minute readings=1i,p_l1_mean=2 {ms}\n"));
    }
    // A window written twice (a sink retried after a crash), and a broken line.
    let last = day2.lines().rev().nth(2).unwrap().to_string();
    day2.push_str(&format!("{last}\nnot line protocol at all\n"));
    std::fs::write(dir.path().join("gridcast-2007-01-01.lp"), day1).unwrap();
    std::fs::write(dir.path().join("gridcast-2007-01-02.lp"), day2).unwrap();

    let config = HistoryConfig {
        lines_dir: Some(dir.path().to_path_buf()),
        sensor: Some("a".into()),
        ..HistoryConfig::default()
    };
    let from_lines = history::load(&config, 60).await.unwrap();
    assert_eq!(from_lines.len(), two_days.len());
    for (got, want) in from_lines.iter().zip(two_days) {
        assert_eq!(got.ts, want.ts);
        for phase in 0..3 {
            let (g, w) = (got.p[phase], want.p[phase]);
            assert!((g.is_nan() && w.is_nan()) || g == w, "{} phase {phase}: {g} vs {w}", got.ts);
        }
    }
    let wrong = HistoryConfig { sensor: Some("nobody".into()), ..config };
    let e = format!("{:#}", history::load(&wrong, 60).await.unwrap_err());
    assert!(e.contains("nobody"), "{e}");
}

/// A site that switched from the prototype serves an imported XGBoost model
/// (a declared feature map, no spec of ours): retrain scores it through its
/// map and replaces it with a native challenger at its interval.
#[tokio::test]
async fn an_imported_xgboost_champion_is_scored_through_its_map_and_replaced() {
    use gridcast_core::features::TargetKind;
    use gridcast_core::model::xgboost::{Serving, import_json_mapped};
    let dir = tempfile::tempdir().unwrap();
    let json = std::fs::read(repo("core/tests/data/xgb_prototype_10s.json")).unwrap();
    let serving = Serving { target: TargetKind::Level, interval_secs: 60, horizon: 1, features: None };
    let imported = import_json_mapped(&json, &serving).unwrap();
    assert!(imported.meta.feature_spec.is_none());
    let champion = dir.path().join("imported.gcm");
    std::fs::write(&champion, imported.to_bytes()).unwrap();
    let out = dir.path().join("store");
    let outcome = retrain(&config(&champion, &out), "cli").await.unwrap();
    assert!(outcome.champion.rows > 0 && outcome.champion.mae.is_finite());
    assert!(outcome.verdict.ship, "{}", outcome.verdict);
    let shipped = Model::from_bytes(&std::fs::read(outcome.published.unwrap().current).unwrap()).unwrap();
    assert_eq!(shipped.meta.feature_spec.expect("a native challenger").interval_secs, 60);
}

/// One gzip NDJSON object of the predictor's layout under `store`.
fn put_object(store: &Path, day: &str, name: &str, bytes: &[u8]) {
    let dir = store.join(format!("triplets/device=pi/date={day}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn gzip(text: &str) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut enc, text.as_bytes()).unwrap();
    enc.finish().unwrap()
}

/// Mispredictions weigh their rows; a corrupt object, a line that is not a
/// triplet and a triplet of another feature spec are counted and skipped,
/// and the retrain goes on.
#[tokio::test]
async fn triplets_weigh_their_rows_and_bad_ones_are_counted_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let champion = weak_champion(dir.path());
    let names = serde_json::to_string(&FeatureSpec::default().names()).unwrap();
    let triplet = |minute: i64, names: &str| {
        format!(
            r#"{{"seq":{minute},"sensor":"m1","model_version":"v","feature_names":{names},"features":[],"predicted":1.0,"actual":2.0,"error":-1.0,"features_start_ms":{},"interval_start_ms":0,"interval_end_ms":0,"horizon":1,"rule":"absolute"}}"#,
            (1_167_609_600 + 60 * minute) * 1000
        )
    };
    let store = dir.path().join("triplets-store");
    let good: Vec<String> = (100..110).map(|m| triplet(m, &names)).collect();
    put_object(&store, "2007-01-01", "1-100-109.ndjson.gz", &gzip(&good.join("\n")));
    put_object(&store, "2007-01-01", "1-110-111.ndjson.gz", b"not gzip at all");
    let other = format!("{}\nnot a triplet\n", triplet(120, r#"["p_l1","p_l1-1"]"#));
    put_object(&store, "2007-01-02", "1-120-121.ndjson.gz", &gzip(&other));
    put_object(&store, "2008-06-01", "1-900-900.ndjson.gz", b"outside the history: never read");

    let mut c = config(&champion, &dir.path().join("out"));
    c.triplets.store = Some(format!("file://{}", store.display()));
    let outcome = retrain(&c, "cli").await.unwrap();
    let t = &outcome.triplets;
    assert_eq!((t.objects, t.corrupt_objects, t.bad_lines), (3, 1, 1), "{t}");
    assert_eq!((t.triplets, t.other_spec, t.used), (11, 1, 10), "{t}");
    assert!(outcome.verdict.ship, "{}", outcome.verdict);
    let model = Model::from_bytes(&std::fs::read(outcome.published.unwrap().current).unwrap()).unwrap();
    assert_eq!(model.meta.lineage.unwrap().triplets_used, 10);
    assert_eq!(model.meta.metrics["weighted_rows"], 10.0);
}
