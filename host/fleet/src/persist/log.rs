//! An agent's state log: the changes since its last snapshot, appended and
//! fsynced one call (or one group of calls) at a time.
//!
//! A durable call writes only the 4 KiB blocks its state changed
//! ([`crate::delta`]), with one append and one `fdatasync`, instead of the
//! whole state with a rename and two fsyncs. The log begins with the
//! SHA-256 of the snapshot it extends, so a log left over from before a
//! newer snapshot is recognised and ignored. Each record carries its length
//! and the SHA-256 of its bytes: replay stops at the first record that is
//! cut short or does not check, which can only be the last append, torn by
//! a crash before it was acknowledged.
//!
//! The layout and its decoding are [`edgehost_proto::disk`]'s; this module
//! reads and writes the files.

use std::io::Write;
use std::path::Path;

use edgehost_proto::disk;
use edgehost_runtime::Digest;

use crate::{Error, Result};

/// Starts a fresh log extending the snapshot whose bytes hash to `snapshot`.
pub(crate) fn create(path: &Path, snapshot: &Digest) -> Result<()> {
    super::write_atomically(path, &disk::log_header(snapshot))
}

/// Appends the change from `before` to `after` and syncs it. Returns the
/// log's length afterwards.
pub(crate) fn append(path: &Path, before: &[u8], after: &[u8]) -> Result<u64> {
    let record = disk::log_record(before, after)?;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    file.write_all(&record).map_err(|e| Error::io(path, e))?;
    file.sync_data().map_err(|e| Error::io(path, e))?;
    file.metadata()
        .map(|m| m.len())
        .map_err(|e| Error::io(path, e))
}

/// The state that `snapshot` and the log at `path` describe together: the
/// snapshot itself when there is no log, or one that extends another
/// snapshot. `max` bounds the state's size.
pub(crate) fn replay(path: &Path, snapshot: Vec<u8>, max: usize) -> Result<Vec<u8>> {
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

    fn states() -> Vec<Vec<u8>> {
        let mut s = vec![7u8; 20_000];
        let mut out = vec![s.clone()];
        for i in 0..5u8 {
            s[i as usize * 4096] = i;
            s.extend_from_slice(&[i; 100]);
            out.push(s.clone());
        }
        out
    }

    #[test]
    fn a_log_replays_every_append_onto_its_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let states = states();
        create(&path, &Digest::of(&states[0])).unwrap();
        for pair in states.windows(2) {
            append(&path, &pair[0], &pair[1]).unwrap();
        }
        let last = states.last().unwrap();
        assert_eq!(&replay(&path, states[0].clone(), 1 << 20).unwrap(), last);
        // A log of another snapshot is ignored.
        assert_eq!(replay(&path, b"other".to_vec(), 1 << 20).unwrap(), b"other");
        // No log: the snapshot.
        assert_eq!(
            replay(&dir.path().join("none.log"), b"s".to_vec(), 1 << 20).unwrap(),
            b"s"
        );
    }

    #[test]
    fn a_torn_last_append_is_ignored_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let states = states();
        create(&path, &Digest::of(&states[0])).unwrap();
        let mut lengths = Vec::new();
        for pair in states.windows(2) {
            lengths.push(append(&path, &pair[0], &pair[1]).unwrap());
        }
        let full = std::fs::read(&path).unwrap();
        // Cut anywhere inside the last record: the state before it.
        let before_last = lengths[lengths.len() - 2] as usize;
        for cut in [before_last + 1, before_last + 20, full.len() - 1] {
            std::fs::write(&path, &full[..cut]).unwrap();
            assert_eq!(
                replay(&path, states[0].clone(), 1 << 20).unwrap(),
                states[states.len() - 2]
            );
        }
        // A flipped byte in the last record: the same.
        let mut flipped = full.clone();
        let at = full.len() - 3;
        flipped[at] ^= 0xff;
        std::fs::write(&path, &flipped).unwrap();
        assert_eq!(
            replay(&path, states[0].clone(), 1 << 20).unwrap(),
            states[states.len() - 2]
        );
    }
}
