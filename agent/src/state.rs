//! The agent's state on disk: one JSON file, replaced atomically (temp file,
//! fsync, rename, fsync of the folder), so a kill at any moment leaves
//! either the old state or the new one, never half of one.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::machine::AgentState;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read the agent state {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error(
        "the agent state {path} is not valid ({source}); move it away to start afresh (the agent then adopts the running predictor)"
    )]
    Parse { path: PathBuf, source: serde_json::Error },
    #[error("cannot save the agent state to {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// The state file `state.json` in the agent's state folder.
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    pub fn in_dir(dir: &Path) -> StateFile {
        StateFile { path: dir.join("state.json") }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved state; the empty one when there is no file yet.
    pub fn load(&self) -> Result<AgentState, StateError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|source| StateError::Parse { path: self.path.clone(), source })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AgentState::default()),
            Err(source) => Err(StateError::Read { path: self.path.clone(), source }),
        }
    }

    pub fn save(&self, state: &AgentState) -> Result<(), StateError> {
        let error = |source| StateError::Write { path: self.path.clone(), source };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(error)?;
        let temp = self.path.with_extension("json.tmp");
        let mut file = std::fs::File::create(&temp).map_err(error)?;
        let json = serde_json::to_vec_pretty(state).expect("the state serializes");
        file.write_all(&json).and_then(|()| file.sync_all()).map_err(error)?;
        std::fs::rename(&temp, &self.path).map_err(error)?;
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::{Refusal, Trial};

    #[test]
    fn a_state_round_trips_and_a_missing_file_is_the_empty_state() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::in_dir(&dir.path().join("agent"));
        assert_eq!(file.load().unwrap(), AgentState::default());
        let state = AgentState {
            known_good: Some("sha256:a".into()),
            previous: None,
            trial: Some(Trial {
                digest: "sha256:b".into(),
                previous: Some("sha256:a".into()),
                baseline: None,
                started_ms: 5,
                healthy_since_ms: None,
                soak_start: None,
            }),
            refused: vec![("sha256:c".into(), Refusal { reason: "crashed".into(), at_ms: 1 })],
        };
        file.save(&state).unwrap();
        assert_eq!(file.load().unwrap(), state);
        assert!(!file.path().with_extension("json.tmp").exists());
    }

    #[test]
    fn a_corrupt_state_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::in_dir(dir.path());
        std::fs::write(file.path(), b"{not json").unwrap();
        let e = file.load().unwrap_err().to_string();
        assert!(e.contains("is not valid") && e.contains("move it away"), "{e}");
    }
}
