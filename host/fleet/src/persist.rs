//! What a host keeps on disk about its agents, so a restart after a crash
//! brings them back: one record per agent (component, configuration,
//! ownership epoch, whether it is serving or only prepared by a migration),
//! its last committed state snapshot, and a tombstone for each agent it
//! handed off, so it never resurrects one that moved.
//!
//! Every file is written to a temporary name, fsynced, renamed into place
//! and the directory fsynced: after a crash a file is either the old version
//! or the new one.

use std::path::{Path, PathBuf};

pub use edgehost_proto::disk::{AgentRecord, Standing, Tombstone};
use edgehost_proto::disk::{decode_record, encode_record};
use edgehost_runtime::Digest;

use crate::{Error, Result};

/// The new owner's address of a tombstone, parsed.
pub fn tombstone_socket(tombstone: &Tombstone) -> Result<std::net::SocketAddr> {
    tombstone.addr.parse().map_err(|_| {
        Error::Internal(format!(
            "the recorded address {:?} of {} is not a socket address",
            tombstone.addr, tombstone.host
        ))
    })
}

/// The agents directory of a host.
#[derive(Debug, Clone)]
pub struct AgentStore {
    dir: PathBuf,
}

const RECORD: &str = "record";
const STATE: &str = "state";
const LOG: &str = "log";
const TOMBSTONE: &str = "moved";

mod log;

/// The largest state a log replays to (the runtime's own bound on a state
/// blob).
const MAX_STATE_BYTES: usize = 256 << 20;

/// A state log is folded into a new snapshot once it is longer than the
/// state itself, and at least this long.
const MIN_LOG_BEFORE_COMPACTION: u64 = 256 << 10;

impl AgentStore {
    /// Opens (creating) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        // Temporary files a crash left behind: never renamed, so never
        // part of what the store holds.
        let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.ends_with(".tmp") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(AgentStore {
            dir: dir.to_owned(),
        })
    }

    /// The file of `kind` for the agent `name`. Names are checked again
    /// here, whatever checked them before: a name is joined into a path,
    /// and `../x` or `/x` must never reach the file system.
    fn path(&self, name: &str, kind: &str) -> Result<PathBuf> {
        crate::identity::check_name(name)
            .map_err(|_| Error::BadRequest(format!("{name:?} is not a valid agent name")))?;
        Ok(self.dir.join(format!("{name}.{kind}")))
    }

    /// Writes an agent's record (and clears any tombstone of the same name).
    pub fn put_record(&self, record: &AgentRecord) -> Result<()> {
        let bytes = encode_record(record)?;
        write_atomically(&self.path(&record.name, RECORD)?, &bytes)?;
        remove(&self.path(&record.name, TOMBSTONE)?)
    }

    /// Writes an agent's whole state as its snapshot (and drops its log,
    /// which extended the snapshot before).
    pub fn put_state(&self, name: &str, state: &[u8]) -> Result<()> {
        write_atomically(&self.path(name, STATE)?, state)?;
        remove(&self.path(name, LOG)?)
    }

    /// Makes `after` the agent's durable state, where `before` is the state
    /// durable until now (`None` when not known). Appends only the changed
    /// blocks to the agent's log, with one sync; writes a new snapshot and
    /// starts a new log when there is none, `before` is unknown, or the log
    /// has grown longer than the state.
    pub fn append_state(&self, name: &str, before: Option<&[u8]>, after: &[u8]) -> Result<()> {
        let log_path = self.path(name, LOG)?;
        let log_len = std::fs::metadata(&log_path).map(|m| m.len()).ok();
        let compact = match (before, log_len) {
            (Some(_), Some(len)) => len > MIN_LOG_BEFORE_COMPACTION.max(after.len() as u64),
            _ => true,
        };
        match before {
            Some(before) if !compact => log::append(&log_path, before, after).map(|_| ()),
            _ => {
                self.put_state(name, after)?;
                log::create(&log_path, &Digest::of(after))
            }
        }
    }

    /// The agent's last durable state, if one was written: its snapshot
    /// with its log replayed onto it.
    pub fn state(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let path = self.path(name, STATE)?;
        let snapshot = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path, e)),
        };
        log::replay(&self.path(name, LOG)?, snapshot, MAX_STATE_BYTES).map(Some)
    }

    /// Records that the agent moved away, then forgets its record and
    /// state. The tombstone is written first: a crash in between leaves a
    /// tombstone, never an agent that could be served twice.
    pub fn hand_off(&self, tombstone: &Tombstone) -> Result<()> {
        self.put_tombstone(tombstone)?;
        self.forget(&tombstone.name)
    }

    /// Durably records that the agent moved away, leaving its record and
    /// state for a later [`forget`](Self::forget). From this write on,
    /// [`load`](Self::load) reports the agent as moved whatever else is on
    /// disk: this is a migration's commit point, kept as short as one small
    /// fsynced file.
    pub fn put_tombstone(&self, tombstone: &Tombstone) -> Result<()> {
        let bytes = encode_record(tombstone)?;
        write_atomically(&self.path(&tombstone.name, TOMBSTONE)?, &bytes)
    }

    /// Forgets an agent's record and state (release, or an aborted prepare).
    pub fn forget(&self, name: &str) -> Result<()> {
        remove(&self.path(name, RECORD)?)?;
        remove(&self.path(name, STATE)?)?;
        remove(&self.path(name, LOG)?)?;
        sync_dir(&self.dir)
    }

    /// Every record and tombstone on disk. Unreadable files are skipped
    /// with a warning: one corrupt record must not keep the others down. A
    /// record older than its agent's tombstone (a crash between a handoff's
    /// commit and its cleanup) is left out and its files removed.
    pub fn load(&self) -> Result<(Vec<AgentRecord>, Vec<Tombstone>)> {
        let mut records = Vec::new();
        let mut tombstones = Vec::new();
        let entries = std::fs::read_dir(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        for entry in entries.flatten() {
            let path = entry.path();
            let kind = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            if kind != RECORD && kind != TOMBSTONE {
                continue;
            }
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            match kind {
                RECORD => match decode_record::<AgentRecord>(&bytes) {
                    Ok(r) => records.push(r),
                    Err(e) => {
                        tracing::warn!(path = %path.display(), "skipping unreadable agent record: {e}")
                    }
                },
                _ => match decode_record::<Tombstone>(&bytes) {
                    Ok(t) => tombstones.push(t),
                    Err(e) => {
                        tracing::warn!(path = %path.display(), "skipping unreadable tombstone: {e}")
                    }
                },
            }
        }
        let superseded = |r: &AgentRecord| {
            tombstones
                .iter()
                .any(|t: &Tombstone| t.name == r.name && t.epoch > r.epoch)
        };
        let (stale, mut records): (Vec<_>, Vec<_>) = records.into_iter().partition(superseded);
        for record in stale {
            tracing::info!(agent = %record.name, epoch = record.epoch, "dropping the record of an agent that moved away");
            self.forget(&record.name)?;
        }
        records.sort_by(|a, b| a.name.cmp(&b.name));
        Ok((records, tombstones))
    }
}

fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(path, e)),
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// Temporary file, fsync, rename, fsync of the directory.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    // Unique per write: two writers of one file never share a temporary.
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(
        ".{}.{}-{n}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_state_and_tombstones_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = AgentStore::open(dir.path()).unwrap();
        let record = AgentRecord {
            name: "a".parse().unwrap(),
            digest: Digest::of(b"c"),
            config: vec![("k".into(), "v".into())],
            epoch: 3,
            standing: Standing::Active,
        };
        store.put_record(&record).unwrap();
        store.put_state("a", b"memory").unwrap();
        let store = AgentStore::open(dir.path()).unwrap();
        let (records, tombstones) = store.load().unwrap();
        assert_eq!(records, vec![record.clone()]);
        assert!(tombstones.is_empty());
        assert_eq!(store.state("a").unwrap().as_deref(), Some(&b"memory"[..]));

        store
            .hand_off(&Tombstone {
                name: "a".parse().unwrap(),
                epoch: 4,
                host: "b".parse().unwrap(),
                addr: "x:1".into(),
            })
            .unwrap();
        let (records, tombstones) = store.load().unwrap();
        assert!(records.is_empty());
        assert_eq!(tombstones.len(), 1);
        assert_eq!(store.state("a").unwrap(), None);
        // Coming back (a later migration) clears the tombstone.
        store
            .put_record(&AgentRecord {
                epoch: 5,
                ..record.clone()
            })
            .unwrap();
        let (records, tombstones) = store.load().unwrap();
        assert_eq!((records.len(), tombstones.len()), (1, 0));
        // A handoff committed (tombstone) but not cleaned up before a crash:
        // the record is dropped, the tombstone wins.
        store.put_state("a", b"memory").unwrap();
        store
            .put_tombstone(&Tombstone {
                name: "a".parse().unwrap(),
                epoch: 6,
                host: "b".parse().unwrap(),
                addr: "x:1".into(),
            })
            .unwrap();
        let (records, tombstones) = store.load().unwrap();
        assert_eq!((records.len(), tombstones.len()), (0, 1));
        assert_eq!(store.state("a").unwrap(), None);
        // A corrupt record is skipped, not fatal.
        store
            .put_record(&AgentRecord { epoch: 7, ..record })
            .unwrap();
        std::fs::write(dir.path().join("junk.record"), b"\xff\xff").unwrap();
        assert_eq!(store.load().unwrap().0.len(), 1);
    }

    #[test]
    fn appended_states_survive_a_reopen_and_compact_into_a_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let store = AgentStore::open(dir.path()).unwrap();
        let mut state = vec![1u8; 100_000];
        // Unknown before: a snapshot and a fresh log.
        store.append_state("a", None, &state).unwrap();
        for i in 0..200usize {
            let before = state.clone();
            let at = (i * 4096) % state.len();
            state[at] = i as u8;
            state.push(i as u8);
            store.append_state("a", Some(&before), &state).unwrap();
            if i % 50 == 0 {
                let reopened = AgentStore::open(dir.path()).unwrap();
                assert_eq!(reopened.state("a").unwrap().as_deref(), Some(&state[..]));
            }
        }
        // The log was folded into a snapshot at least once: it stays short.
        let log = std::fs::metadata(dir.path().join("a.log")).unwrap().len();
        assert!(log <= MIN_LOG_BEFORE_COMPACTION + (64 << 10), "{log}");
        assert_eq!(store.state("a").unwrap().as_deref(), Some(&state[..]));
        store.forget("a").unwrap();
        assert_eq!(store.state("a").unwrap(), None);
        assert!(!dir.path().join("a.log").exists());
    }

    #[test]
    fn names_that_are_not_names_never_become_paths() {
        let dir = tempfile::tempdir().unwrap();
        let store = AgentStore::open(&dir.path().join("agents")).unwrap();
        for bad in ["../x", "/tmp/x", "", "a/b", ".."] {
            assert!(store.put_state(bad, b"x").is_err(), "{bad:?}");
            assert!(store.state(bad).is_err(), "{bad:?}");
            assert!(store.forget(bad).is_err(), "{bad:?}");
        }
        assert!(!dir.path().join("x.state").exists());
    }
}
