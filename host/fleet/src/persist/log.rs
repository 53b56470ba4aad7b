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
//! ```text
//! log    = MAGIC snapshot-sha256[32] record*
//! record = len:u32 (big-endian) sha256(payload)[32] payload[len]
//! payload = postcard(Entry { len, blocks })
//! ```

use std::io::Write;
use std::path::Path;

use edgehost_runtime::Digest;
use serde::{Deserialize, Serialize};

use crate::delta::{self, Block};
use crate::{Error, Result};

const MAGIC: &[u8; 8] = b"ehlog\x00\x00\x01";
const HEADER: usize = MAGIC.len() + 32;

/// One appended change: the new state's length and the blocks that differ
/// from the state before it.
#[derive(Serialize, Deserialize)]
struct Entry {
    len: u64,
    blocks: Vec<Block>,
}

/// Starts a fresh log extending the snapshot whose bytes hash to `snapshot`.
pub(crate) fn create(path: &Path, snapshot: &Digest) -> Result<()> {
    let mut header = MAGIC.to_vec();
    header.extend_from_slice(snapshot.as_bytes());
    super::write_atomically(path, &header)
}

/// Appends the change from `before` to `after` and syncs it. Returns the
/// log's length afterwards.
pub(crate) fn append(path: &Path, before: &[u8], after: &[u8]) -> Result<u64> {
    let entry = Entry {
        len: after.len() as u64,
        blocks: delta::diff(before, after),
    };
    let payload = postcard::to_stdvec(&entry).map_err(|e| Error::Internal(e.to_string()))?;
    let len = u32::try_from(payload.len())
        .map_err(|_| Error::Internal("a state change over 4 GiB".into()))?;
    let mut record = Vec::with_capacity(36 + payload.len());
    record.extend_from_slice(&len.to_be_bytes());
    record.extend_from_slice(Digest::of(&payload).as_bytes());
    record.extend_from_slice(&payload);
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
    if bytes.len() < HEADER
        || &bytes[..MAGIC.len()] != MAGIC
        || &bytes[MAGIC.len()..HEADER] != Digest::of(&snapshot).as_bytes()
    {
        // Made for an older snapshot (or never finished): everything in it
        // is in the snapshot already.
        return Ok(snapshot);
    }
    let mut state = snapshot;
    let mut rest = &bytes[HEADER..];
    while let Some((len, tail)) = rest.split_first_chunk::<4>() {
        let len = u32::from_be_bytes(*len) as usize;
        let Some((sum, tail)) = tail.split_first_chunk::<32>() else {
            break;
        };
        if tail.len() < len {
            break;
        }
        let (payload, tail) = tail.split_at(len);
        if Digest::of(payload).as_bytes() != sum {
            break;
        }
        let Ok(entry) = postcard::from_bytes::<Entry>(payload) else {
            break;
        };
        state = delta::apply(state, entry.len, &entry.blocks, max)?;
        rest = tail;
    }
    if !rest.is_empty() {
        tracing::info!(path = %path.display(), bytes = rest.len(), "ignoring a torn last append of a state log");
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
