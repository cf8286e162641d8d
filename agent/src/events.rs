//! Deploy events as line protocol, for Grafana annotations:
//!
//! `gridcast_deploy,device=pi-1,event=rollback digest="sha256:…",model_version="…",reason="…" <ms>`
//!
//! Events are appended to `events.lp` in the state folder first, and that
//! file is emptied only once every configured sink stored it: an InfluxDB
//! that is down (or an agent restart) delays events, never loses them.

use std::io::Write;
use std::path::{Path, PathBuf};

use gridcast_edge::sinks::SinkConfig;
use gridcast_edge::sinks::file::FileWriter;
use gridcast_edge::sinks::influx::InfluxWriter;
use influxdb_line_protocol::LineProtocolBuilder;

use crate::machine::Event;

pub const MEASUREMENT: &str = "gridcast_deploy";

/// One event as a line.
pub fn line(device: &str, event: &Event, model_version: &str, at_ms: i64) -> Vec<u8> {
    LineProtocolBuilder::new_with(Vec::new())
        .measurement(MEASUREMENT)
        .tag("device", device)
        .tag("event", event.kind.name())
        .field("digest", event.digest.as_str())
        .field("model_version", model_version)
        .field("reason", event.reason.as_str())
        .timestamp(at_ms)
        .close_line()
        .build()
}

enum Writer {
    Influx(InfluxWriter, String),
    File(FileWriter),
}

/// The pending events and where they go.
pub struct EventLog {
    pending: PathBuf,
    writers: Vec<Writer>,
}

impl EventLog {
    pub fn new(state_dir: &Path, sinks: &[SinkConfig]) -> anyhow::Result<EventLog> {
        let mut writers = Vec::new();
        for sink in sinks {
            match sink {
                SinkConfig::File { dir } => writers.push(Writer::File(FileWriter::new(dir.clone()))),
                other => {
                    let writer = InfluxWriter::from_config(other)?.expect("an InfluxDB sink");
                    let name = writer.redacted_url();
                    writers.push(Writer::Influx(writer, name));
                }
            }
        }
        Ok(EventLog { pending: state_dir.join("events.lp"), writers })
    }

    /// Queues one event line on disk.
    pub fn push(&self, line: &[u8]) -> std::io::Result<()> {
        if self.writers.is_empty() {
            return Ok(());
        }
        if let Some(dir) = self.pending.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&self.pending)?;
        file.write_all(line)?;
        file.sync_data()
    }

    /// Sends what is pending to every sink; `Ok(n)` events delivered (the
    /// queue is then empty), or why not (kept for the next try). A sink that
    /// stored the batch before another failed gets it again: a duplicate
    /// point in InfluxDB (same series and time) overwrites itself.
    pub async fn flush(&self) -> Result<usize, String> {
        let lines = match std::fs::read(&self.pending) {
            Ok(lines) if !lines.is_empty() => lines,
            Ok(_) => return Ok(0),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(format!("reading {}: {e}", self.pending.display())),
        };
        for writer in &self.writers {
            match writer {
                Writer::Influx(w, name) => w.write(&lines).await.map_err(|e| format!("{name}: {e}"))?,
                Writer::File(w) => w.write(&lines).map_err(|e| format!("event file: {e}"))?,
            }
        }
        std::fs::remove_file(&self.pending).map_err(|e| format!("removing {}: {e}", self.pending.display()))?;
        Ok(lines.iter().filter(|b| **b == b'\n').count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::EventKind;

    #[test]
    fn an_event_is_one_line_with_its_reason_quoted() {
        let event =
            Event { kind: EventKind::Rollback, digest: "sha256:ab".into(), reason: "predicts \"worse\"".into() };
        let line = String::from_utf8(line("pi 1", &event, "0123", 1_700_000_000_000)).unwrap();
        assert_eq!(
            line,
            "gridcast_deploy,device=pi\\ 1,event=rollback digest=\"sha256:ab\",model_version=\"0123\",reason=\"predicts \\\"worse\\\"\" 1700000000000\n"
        );
    }

    #[tokio::test]
    async fn pending_events_survive_until_a_sink_takes_them() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let log = EventLog::new(dir.path(), &[SinkConfig::File { dir: out.clone() }]).unwrap();
        let event = Event { kind: EventKind::Commit, digest: "sha256:cd".into(), reason: "ok".into() };
        log.push(&line("pi", &event, "v", 1)).unwrap();
        log.push(&line("pi", &event, "v", 2)).unwrap();
        assert_eq!(log.flush().await.unwrap(), 2);
        assert_eq!(log.flush().await.unwrap(), 0, "sent once");
        let written: String =
            std::fs::read_dir(&out).unwrap().map(|f| std::fs::read_to_string(f.unwrap().path()).unwrap()).collect();
        assert_eq!(written.lines().count(), 2);
    }
}
