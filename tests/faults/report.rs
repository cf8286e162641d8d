//! The fault report: one JSON record per fault, with numbers a reader can
//! check (sent, stored, kept aside, lost, doubled, recovery time), written
//! to `target/fault-report/<fault>.json` and merged into
//! `target/fault-report.json` (sorted by fault) after every fault, so the
//! file always holds the latest run of each. The README quotes it.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::PathBuf;

/// What one fault did to the data.
#[derive(Debug, Clone, Default)]
pub struct FaultRecord {
    /// Short name, e.g. `influxdb_down`.
    pub fault: String,
    /// What was done, in a sentence.
    pub what: String,
    /// How long the fault lasted (from breaking to restoring), measured.
    pub outage_secs: f64,
    /// Meters, minutes of readings and the speed they were published at.
    pub sensors: u32,
    pub minutes: usize,
    pub speedup: f64,
    /// Readings the meters published (acknowledged by the broker).
    pub readings_sent: u64,
    /// Readings in the windows stored in InfluxDB (sum of their counts).
    pub readings_in_windows: u64,
    /// Readings ingest kept aside in its rejected log (late or from a
    /// jumped clock; after a crash this includes redelivered ones that are
    /// in windows as well).
    pub readings_kept_aside: u64,
    /// Readings neither in a window nor kept aside.
    pub readings_lost: u64,
    /// Windows the published readings make, and how many InfluxDB holds
    /// exactly (every reading, the exact mean), wrong, or not at all.
    pub windows_expected: usize,
    pub windows_exact: usize,
    pub windows_wrong: usize,
    pub windows_missing: usize,
    /// Windows written twice with different contents (a second, partial
    /// point for the same minute), from the file sink beside InfluxDB.
    pub windows_doubled: usize,
    /// Window lines the file sink got again, identical (harmless: the same
    /// point; after a crash the spool re-sends what it had not confirmed).
    pub lines_redelivered: usize,
    /// From restoring until InfluxDB held every window of the readings
    /// published before the restore.
    pub recovery_secs: f64,
}

impl FaultRecord {
    /// As JSON, fields in the order above.
    fn to_json(&self) -> serde_json::Value {
        let mut fields = serde_json::Map::new();
        let mut put = |name: &str, value: serde_json::Value| {
            fields.insert(name.to_owned(), value);
        };
        put("fault", self.fault.clone().into());
        put("what", self.what.clone().into());
        put("outage_secs", round(self.outage_secs).into());
        put("sensors", self.sensors.into());
        put("minutes", self.minutes.into());
        put("speedup", self.speedup.into());
        put("readings_sent", self.readings_sent.into());
        put("readings_in_windows", self.readings_in_windows.into());
        put("readings_kept_aside", self.readings_kept_aside.into());
        put("readings_lost", self.readings_lost.into());
        put("windows_expected", self.windows_expected.into());
        put("windows_exact", self.windows_exact.into());
        put("windows_wrong", self.windows_wrong.into());
        put("windows_missing", self.windows_missing.into());
        put("windows_doubled", self.windows_doubled.into());
        put("lines_redelivered", self.lines_redelivered.into());
        put("recovery_secs", round(self.recovery_secs).into());
        serde_json::Value::Object(fields)
    }
}

/// To milliseconds.
fn round(secs: f64) -> f64 {
    (secs * 1000.0).round() / 1000.0
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// Writes `record`, then merges every fault's record into one file, under a
/// lock (the faults run in parallel threads).
pub fn write(record: &FaultRecord) {
    let dir = target_dir().join("fault-report");
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    let json = serde_json::to_string_pretty(&record.to_json()).expect("a record serializes");
    fs::write(dir.join(format!("{}.json", record.fault)), json + "\n").expect("write the fault's record");

    let lock = File::create(dir.join(".lock")).expect("create the report lock");
    lock.lock().expect("lock the report");
    let mut all: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for entry in fs::read_dir(&dir).expect("read the report folder").flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "json")
            && let Ok(value) = serde_json::from_slice::<serde_json::Value>(&fs::read(&path).unwrap_or_default())
        {
            all.insert(value["fault"].as_str().unwrap_or_default().to_owned(), value);
        }
    }
    let merged = serde_json::json!({
        "outage_secs_asked": super::outage().as_secs_f64(),
        "faults": all.into_values().collect::<Vec<_>>(),
    });
    let text = serde_json::to_string_pretty(&merged).expect("the report serializes") + "\n";
    fs::write(target_dir().join("fault-report.json"), text).expect("write target/fault-report.json");
    eprintln!("fault report: {}", record.to_json());
}
