//! What a host keeps on disk about its agents, as bytes: the records, the
//! tombstones and the state log, encoded and decoded without touching a
//! file.
//!
//! These bytes come back after a crash, a disk error or an operator's
//! hand, so they are outside input like a frame: their decoding lives
//! beside the wire protocol's, pure, where the fuzz targets reach it. The
//! fleet's `persist` module does the file handling (atomic writes, fsyncs,
//! appends) around these functions. The layouts are those the fleet has
//! always written: postcard for records and tombstones, and for the log
//!
//! ```text
//! log     = MAGIC snapshot-sha256[32] record*
//! record  = len:u32 (big-endian) sha256(payload)[32] payload[len]
//! payload = postcard(LogEntry { len, blocks })
//! ```
//!
//! The log begins with the SHA-256 of the snapshot it extends, so a log left
//! over from before a newer snapshot is recognised and ignored. Replay stops
//! at the first record that is cut short or does not check, which can only
//! be the last append, torn by a crash before it was acknowledged.

use serde::{Deserialize, Serialize};

use crate::delta::{self, Block};
use crate::{AgentName, Digest, Error, HostName, Result};

/// Whether a recorded agent serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Standing {
    /// This host owns and serves it.
    Active,
    /// A migration from `source` prepared it here and sent its state; it
    /// serves only once the source commits.
    Prepared {
        /// The source host's address.
        source: String,
    },
    /// A migration from the host named `host`, at `addr`, prepared it here
    /// and sent its state; it serves only once that host commits. (Records
    /// written before the source's name was kept are [`Standing::Prepared`].)
    PreparedFrom {
        /// The source host's name, from its certificate.
        host: HostName,
        /// The source host's address.
        addr: String,
    },
}

/// One agent as recorded on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    /// Its name.
    pub name: AgentName,
    /// Its component.
    pub digest: Digest,
    /// Its configuration for `init`.
    pub config: Vec<(String, String)>,
    /// Its ownership epoch: raised by every migration; a host holding a
    /// lower one may not serve it.
    pub epoch: u64,
    /// Serving, or waiting for a commit.
    pub standing: Standing,
}

/// A record that an agent left this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    /// The agent.
    pub name: AgentName,
    /// The epoch it has at its new owner.
    pub epoch: u64,
    /// The new owner's name.
    pub host: HostName,
    /// The new owner's address.
    pub addr: String,
}

/// The bytes of a record or tombstone file.
pub fn encode_record<T: Serialize>(record: &T) -> Result<Vec<u8>> {
    postcard::to_stdvec(record).map_err(Error::Encode)
}

/// A record or tombstone file's value. Bytes after the value are ignored,
/// as they always were.
pub fn decode_record<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T> {
    postcard::from_bytes(bytes).map_err(Error::Malformed)
}

/// The tag in front of every state log.
pub const LOG_MAGIC: &[u8; 8] = b"ehlog\x00\x00\x01";
/// Bytes of a log's header: the tag and the snapshot's SHA-256.
pub const LOG_HEADER_BYTES: usize = LOG_MAGIC.len() + 32;
/// Bytes in front of each log record's payload: its length and SHA-256.
const RECORD_HEADER_BYTES: usize = 4 + 32;

/// One appended change: the new state's length and the blocks that differ
/// from the state before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// The new state's length.
    pub len: u64,
    /// Its blocks that differ from the state before.
    pub blocks: Vec<Block>,
}

/// The header of a fresh log extending the snapshot whose bytes hash to
/// `snapshot`.
pub fn log_header(snapshot: &Digest) -> Vec<u8> {
    let mut header = LOG_MAGIC.to_vec();
    header.extend_from_slice(snapshot.as_bytes());
    header
}

/// The record that appends the change from `before` to `after`.
pub fn log_record(before: &[u8], after: &[u8]) -> Result<Vec<u8>> {
    let entry = LogEntry {
        len: after.len() as u64,
        blocks: delta::diff(before, after),
    };
    let payload = postcard::to_stdvec(&entry).map_err(Error::Encode)?;
    let len = u32::try_from(payload.len()).map_err(|_| Error::FrameTooLarge {
        len: payload.len(),
        max: u32::MAX as usize,
    })?;
    let mut record = Vec::with_capacity(RECORD_HEADER_BYTES + payload.len());
    record.extend_from_slice(&len.to_be_bytes());
    record.extend_from_slice(Digest::of(&payload).as_bytes());
    record.extend_from_slice(&payload);
    Ok(record)
}

/// A log read back: the entries that check, in order, and how many bytes of
/// the log they and the header take (the rest is a torn last append).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedLog {
    /// The entries that check.
    pub entries: Vec<LogEntry>,
    /// The bytes of the header and those entries' records.
    pub valid: usize,
}

/// The entries of the log `bytes` that extends the snapshot hashing to
/// `snapshot`. A log with another header (made for an older snapshot, or
/// never finished) has none: everything in it is in the snapshot already.
pub fn parse_log(bytes: &[u8], snapshot: &Digest) -> ParsedLog {
    let mut parsed = ParsedLog {
        entries: Vec::new(),
        valid: 0,
    };
    let Some((header, mut rest)) = bytes.split_first_chunk::<LOG_HEADER_BYTES>() else {
        return parsed;
    };
    if header[..] != log_header(snapshot)[..] {
        return parsed;
    }
    parsed.valid = LOG_HEADER_BYTES;
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
        let Ok(entry) = postcard::from_bytes::<LogEntry>(payload) else {
            break;
        };
        parsed.entries.push(entry);
        parsed.valid += RECORD_HEADER_BYTES + len;
        rest = tail;
    }
    parsed
}

/// The state that `snapshot` and the log `bytes` describe together, and the
/// bytes of a torn last append that were ignored. `max` bounds the state's
/// size; an entry that does not fit the state before it is an error.
pub fn replay_log(bytes: &[u8], snapshot: Vec<u8>, max: usize) -> Result<(Vec<u8>, usize)> {
    let parsed = parse_log(bytes, &Digest::of(&snapshot));
    let torn = if parsed.valid == 0 {
        0
    } else {
        bytes.len() - parsed.valid
    };
    let mut state = snapshot;
    for entry in &parsed.entries {
        state = delta::apply(state, entry.len, &entry.blocks, max)?;
    }
    Ok((state, torn))
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

    fn log(states: &[Vec<u8>]) -> (Vec<u8>, Vec<usize>) {
        let mut log = log_header(&Digest::of(&states[0]));
        let mut ends = Vec::new();
        for pair in states.windows(2) {
            log.extend(log_record(&pair[0], &pair[1]).unwrap());
            ends.push(log.len());
        }
        (log, ends)
    }

    #[test]
    fn a_log_replays_every_append_onto_its_snapshot() {
        let states = states();
        let (log, _) = log(&states);
        let last = states.last().unwrap();
        assert_eq!(
            replay_log(&log, states[0].clone(), 1 << 20).unwrap(),
            (last.clone(), 0)
        );
        // A log of another snapshot is ignored.
        assert_eq!(
            replay_log(&log, b"other".to_vec(), 1 << 20).unwrap(),
            (b"other".to_vec(), 0)
        );
        assert_eq!(parse_log(&log, &Digest::of(&states[0])).valid, log.len());
    }

    #[test]
    fn a_torn_last_append_is_ignored_and_the_rest_kept() {
        let states = states();
        let (full, ends) = log(&states);
        let before_last = ends[ends.len() - 2];
        let expected = &states[states.len() - 2];
        for cut in [before_last + 1, before_last + 20, full.len() - 1] {
            let (state, torn) = replay_log(&full[..cut], states[0].clone(), 1 << 20).unwrap();
            assert_eq!((&state, torn), (expected, cut - before_last));
        }
        let mut flipped = full.clone();
        let at = full.len() - 3;
        flipped[at] ^= 0xff;
        let (state, _) = replay_log(&flipped, states[0].clone(), 1 << 20).unwrap();
        assert_eq!(&state, expected);
    }

    #[test]
    fn records_round_trip_in_the_layout_on_disk() {
        let tombstone = Tombstone {
            name: AgentName::new("a").unwrap(),
            epoch: 4,
            host: "b".parse().unwrap(),
            addr: "x:1".into(),
        };
        let bytes = encode_record(&tombstone).unwrap();
        // postcard: the name, the varint epoch, the host, the address.
        assert_eq!(bytes, b"\x01a\x04\x01b\x03x:1");
        assert_eq!(decode_record::<Tombstone>(&bytes).unwrap(), tombstone);
        assert!(decode_record::<AgentRecord>(b"\xff\xff").is_err());
    }
}
