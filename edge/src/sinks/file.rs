//! The file sink: line protocol appended to one file per UTC day (by write
//! time), `gridcast-YYYY-MM-DD.lp`. The demo's store when no database is
//! configured; also handy for `influx -import` later.

use std::io::Write;
use std::path::PathBuf;

/// Appends line protocol to dated files under a folder.
#[derive(Debug, Clone)]
pub struct FileWriter {
    dir: PathBuf,
}

impl FileWriter {
    pub fn new(dir: PathBuf) -> FileWriter {
        FileWriter { dir }
    }

    /// Append `lines` and sync: when this returns, they are on disk.
    pub fn write(&self, lines: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let day = chrono::Utc::now().format("%Y-%m-%d");
        let path = self.dir.join(format!("gridcast-{day}.lp"));
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
        file.write_all(lines)?;
        file.sync_data()
    }
}
