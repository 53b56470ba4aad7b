//! The layout before the database: one file per record, state snapshot,
//! state log and tombstone in the agents directory. Read once, when a host
//! opens a data directory of that layout, to move it into the database.
//!
//! A state log began with the SHA-256 of the snapshot it extended, then
//! held appended records of changed blocks, each with its length and
//! SHA-256; replay stops at the first record cut short or not checking.

use std::path::Path;

use edgehost_proto::disk::{self, AgentRecord, Tombstone, decode_record};

use crate::{Error, Result};

/// What the old layout held.
#[derive(Default)]
pub(super) struct Old {
    pub records: Vec<AgentRecord>,
    pub tombstones: Vec<Tombstone>,
    /// Each agent's state: its snapshot with its log replayed onto it.
    pub states: Vec<(String, Vec<u8>)>,
    /// The files to remove once the database holds them.
    pub files: Vec<std::path::PathBuf>,
}

/// Reads the old layout in `dir`: nothing if it has none of its files.
/// Unreadable records and tombstones are skipped with a warning, as the old
/// layout's own loading did.
pub(super) fn read(dir: &Path, max_state: usize) -> Result<Old> {
    let mut old = Old::default();
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some((stem, kind)) = name.rsplit_once('.') else {
            continue;
        };
        if !matches!(kind, "record" | "moved" | "state" | "log") || stem.starts_with('.') {
            continue;
        }
        old.files.push(path.clone());
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        match kind {
            "record" => match decode_record::<AgentRecord>(&bytes) {
                Ok(r) => old.records.push(r),
                Err(e) => {
                    tracing::warn!(path = %path.display(), "skipping unreadable agent record: {e}")
                }
            },
            "moved" => match decode_record::<Tombstone>(&bytes) {
                Ok(t) => old.tombstones.push(t),
                Err(e) => {
                    tracing::warn!(path = %path.display(), "skipping unreadable tombstone: {e}")
                }
            },
            "state" => {
                let state = replay(&dir.join(format!("{stem}.log")), bytes, max_state)?;
                old.states.push((stem.to_owned(), state));
            }
            _ => {}
        }
    }
    Ok(old)
}

/// The state that `snapshot` and the log at `path` describe together: the
/// snapshot itself when there is no log, or one that extends another
/// snapshot. `max` bounds the state's size.
fn replay(path: &Path, snapshot: Vec<u8>, max: usize) -> Result<Vec<u8>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(snapshot),
        Err(e) => return Err(Error::io(path, e)),
    };
    let (state, torn) = disk::replay_log(&bytes, snapshot, max)?;
    if torn > 0 {
        tracing::info!(path = %path.display(), bytes = torn, "ignoring a torn last append of a state log");
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgehost_runtime::Digest;

    #[test]
    fn a_log_replays_onto_its_snapshot_and_a_torn_last_append_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let s0 = vec![7u8; 20_000];
        let mut s1 = s0.clone();
        s1[5000] = 1;
        let mut s2 = s1.clone();
        s2.extend_from_slice(&[2; 100]);
        let mut log = disk::log_header(&Digest::of(&s0));
        log.extend(disk::log_record(&s0, &s1).unwrap());
        let whole_first = log.len();
        log.extend(disk::log_record(&s1, &s2).unwrap());
        std::fs::write(&path, &log).unwrap();
        assert_eq!(replay(&path, s0.clone(), 1 << 20).unwrap(), s2);
        std::fs::write(&path, &log[..whole_first + 3]).unwrap();
        assert_eq!(replay(&path, s0.clone(), 1 << 20).unwrap(), s1);
        // A log of another snapshot is ignored; no log is the snapshot.
        assert_eq!(replay(&path, b"other".to_vec(), 1 << 20).unwrap(), b"other");
        let none = dir.path().join("none.log");
        assert_eq!(replay(&none, b"s".to_vec(), 1 << 20).unwrap(), b"s");
    }
}
