//! What a host keeps about its agents, so a restart after a crash brings
//! them back: one record per agent (component, configuration, ownership
//! epoch, whether it serves or is only prepared by a migration), its last
//! durable state, and a tombstone for each agent it handed off, so it never
//! resurrects one that moved.
//!
//! It all lives in one embedded database (redb, `agents.redb` in the agents
//! directory): every change is one ACID transaction, committed with an
//! fsync before the call returns, on checksummed pages. A state is a
//! snapshot and the deltas appended since (the 4 KiB blocks each durable
//! call changed), folded into a new snapshot once they outgrow the state.
//! A directory of the layout before the database (one file per record,
//! state, log and tombstone) is moved into it when the store opens.

use std::path::Path;

use edgehost_proto::disk::{self, encode_record};
pub use edgehost_proto::disk::{AgentRecord, Standing, Tombstone};
use edgehost_runtime::Digest;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use crate::{Error, Result};

mod legacy;

/// The new owner's address of a tombstone, parsed.
pub fn tombstone_socket(tombstone: &Tombstone) -> Result<std::net::SocketAddr> {
    tombstone.addr.parse().map_err(|_| {
        Error::Internal(format!(
            "the recorded address {:?} of {} is not a socket address",
            tombstone.addr, tombstone.host
        ))
    })
}

/// Agent name → its encoded [`AgentRecord`].
const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("records");
/// Agent name → its encoded [`Tombstone`].
const TOMBSTONES: TableDefinition<&str, &[u8]> = TableDefinition::new("tombstones");
/// Agent name → its state snapshot.
const SNAPSHOTS: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshots");
/// (agent name, sequence) → one delta on the snapshot, a record of
/// [`disk::log_record`] (its length and SHA-256, then the changed blocks).
const DELTAS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("deltas");
/// Agent name → (bytes of its deltas, next sequence number).
const LOGS: TableDefinition<&str, (u64, u64)> = TableDefinition::new("logs");

/// The file of the database in the agents directory.
pub const DATABASE: &str = "agents.redb";

/// The largest state a snapshot and its deltas rebuild (the runtime's own
/// bound on a state blob).
const MAX_STATE_BYTES: usize = 256 << 20;

/// Deltas are folded into a new snapshot once they are longer than the
/// state itself, and at least this long.
const MIN_LOG_BEFORE_COMPACTION: u64 = 256 << 10;

/// A host's agent database.
#[derive(Debug, Clone)]
pub struct AgentStore {
    db: std::sync::Arc<Database>,
}

fn db(e: impl Into<redb::Error>) -> Error {
    Error::Internal(format!("agent database: {}", e.into()))
}

impl AgentStore {
    /// Opens (creating) the store in `dir`, moving a directory of the old
    /// layout into the database first.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = dir.join(DATABASE);
        let database = Database::create(&path).map_err(|e| {
            Error::Internal(format!(
                "cannot open the agent database {}: {}",
                path.display(),
                redb::Error::from(e)
            ))
        })?;
        let store = AgentStore {
            db: std::sync::Arc::new(database),
        };
        store.transaction(|_| Ok(()))?;
        store.import_old_layout(dir)?;
        Ok(store)
    }

    /// Runs `change` in one write transaction, with every table open, and
    /// commits it durably.
    fn transaction(&self, change: impl FnOnce(&mut Tables<'_>) -> Result<()>) -> Result<()> {
        let txn = self.db.begin_write().map_err(db)?;
        {
            let mut tables = Tables::open(&txn)?;
            change(&mut tables)?;
        }
        txn.commit().map_err(db)
    }

    /// Moves the files of the layout before the database into it, in one
    /// transaction, then removes them.
    fn import_old_layout(&self, dir: &Path) -> Result<()> {
        let old = legacy::read(dir, MAX_STATE_BYTES)?;
        if old.files.is_empty() {
            return Ok(());
        }
        self.transaction(|t| {
            for record in &old.records {
                t.records
                    .insert(record.name.as_str(), encode_record(record)?.as_slice())
                    .map_err(db)?;
            }
            for tombstone in &old.tombstones {
                t.tombstones
                    .insert(
                        tombstone.name.as_str(),
                        encode_record(tombstone)?.as_slice(),
                    )
                    .map_err(db)?;
            }
            for (name, state) in &old.states {
                checked(name)?;
                t.snapshots
                    .insert(name.as_str(), state.as_slice())
                    .map_err(db)?;
            }
            Ok(())
        })?;
        tracing::info!(
            records = old.records.len(),
            tombstones = old.tombstones.len(),
            states = old.states.len(),
            "moved the agents directory of the old layout into {DATABASE}"
        );
        for file in &old.files {
            if let Err(e) = std::fs::remove_file(file) {
                tracing::warn!(path = %file.display(), "could not remove a moved file: {e}");
            }
        }
        Ok(())
    }

    /// Writes an agent's record, and clears any tombstone of the same name
    /// in the same transaction.
    pub fn put_record(&self, record: &AgentRecord) -> Result<()> {
        let bytes = encode_record(record)?;
        let name = checked(&record.name)?;
        self.transaction(|t| {
            t.records.insert(name, bytes.as_slice()).map_err(db)?;
            t.tombstones.remove(name).map_err(db)?;
            Ok(())
        })
    }

    /// Writes an agent's whole state as its snapshot, dropping the deltas
    /// that extended the snapshot before.
    pub fn put_state(&self, name: &str, state: &[u8]) -> Result<()> {
        let name = checked(name)?;
        self.transaction(|t| t.set_snapshot(name, state))
    }

    /// Makes `after` the agent's durable state, where `before` is the state
    /// durable until now (`None` when not known). Appends only the changed
    /// blocks, in one transaction; writes a new snapshot instead when
    /// `before` is unknown, or the deltas have grown longer than the state.
    pub fn append_state(&self, name: &str, before: Option<&[u8]>, after: &[u8]) -> Result<()> {
        let name = checked(name)?;
        self.transaction(|t| {
            let log = t.logs.get(name).map_err(db)?.map(|v| v.value());
            let has_snapshot = t.snapshots.get(name).map_err(db)?.is_some();
            let (bytes, next) = log.unwrap_or((0, 0));
            let compact =
                !has_snapshot || bytes > MIN_LOG_BEFORE_COMPACTION.max(after.len() as u64);
            match before {
                Some(before) if !compact => {
                    let record = disk::log_record(before, after)?;
                    t.deltas
                        .insert((name, next), record.as_slice())
                        .map_err(db)?;
                    t.logs
                        .insert(name, (bytes + record.len() as u64, next + 1))
                        .map_err(db)?;
                    Ok(())
                }
                _ => t.set_snapshot(name, after),
            }
        })
    }

    /// The agent's last durable state, if one was written: its snapshot
    /// with its deltas applied.
    pub fn state(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let name = checked(name)?;
        let txn = self.db.begin_read().map_err(db)?;
        let snapshots = txn.open_table(SNAPSHOTS).map_err(db)?;
        let Some(snapshot) = snapshots.get(name).map_err(db)? else {
            return Ok(None);
        };
        let snapshot = snapshot.value().to_vec();
        let deltas = txn.open_table(DELTAS).map_err(db)?;
        let mut log = disk::log_header(&Digest::of(&snapshot));
        for row in deltas.range((name, 0)..=(name, u64::MAX)).map_err(db)? {
            let (_, record) = row.map_err(db)?;
            log.extend_from_slice(record.value());
        }
        let (state, torn) = disk::replay_log(&log, snapshot, MAX_STATE_BYTES)?;
        if torn > 0 {
            // Pages are checksummed and transactions atomic: a delta that
            // does not check is damage, not a torn write. Refuse it.
            return Err(Error::Internal(format!(
                "the stored state of {name:?} does not check ({torn} bytes of its deltas)"
            )));
        }
        Ok(Some(state))
    }

    /// Records that the agent moved away and forgets its record and state,
    /// in one transaction.
    pub fn hand_off(&self, tombstone: &Tombstone) -> Result<()> {
        let bytes = encode_record(tombstone)?;
        let name = checked(&tombstone.name)?;
        self.transaction(|t| {
            t.tombstones.insert(name, bytes.as_slice()).map_err(db)?;
            t.forget(name)
        })
    }

    /// Durably records that the agent moved away, leaving its record and
    /// state for a later [`forget`](Self::forget). From this write on,
    /// [`load`](Self::load) reports the agent as moved whatever else is
    /// stored: this is a migration's commit point.
    pub fn put_tombstone(&self, tombstone: &Tombstone) -> Result<()> {
        let bytes = encode_record(tombstone)?;
        let name = checked(&tombstone.name)?;
        self.transaction(|t| {
            t.tombstones.insert(name, bytes.as_slice()).map_err(db)?;
            Ok(())
        })
    }

    /// Forgets an agent's record and state (release, or an aborted prepare).
    pub fn forget(&self, name: &str) -> Result<()> {
        let name = checked(name)?;
        self.transaction(|t| t.forget(name))
    }

    /// Every record and tombstone stored. A record that does not decode is
    /// skipped with a warning: one bad record must not keep the others
    /// down. A record older than its agent's tombstone (a crash between a
    /// handoff's commit and its cleanup) is left out and forgotten.
    pub fn load(&self) -> Result<(Vec<AgentRecord>, Vec<Tombstone>)> {
        let txn = self.db.begin_read().map_err(db)?;
        let mut records = Vec::new();
        for row in txn.open_table(RECORDS).map_err(db)?.iter().map_err(db)? {
            let (name, bytes) = row.map_err(db)?;
            match disk::decode_record::<AgentRecord>(bytes.value()) {
                Ok(r) => records.push(r),
                Err(e) => {
                    tracing::warn!(
                        agent = name.value(),
                        "skipping an unreadable agent record: {e}"
                    )
                }
            }
        }
        let mut tombstones = Vec::new();
        for row in txn.open_table(TOMBSTONES).map_err(db)?.iter().map_err(db)? {
            let (name, bytes) = row.map_err(db)?;
            match disk::decode_record::<Tombstone>(bytes.value()) {
                Ok(t) => tombstones.push(t),
                Err(e) => {
                    tracing::warn!(
                        agent = name.value(),
                        "skipping an unreadable tombstone: {e}"
                    )
                }
            }
        }
        drop(txn);
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

/// Names are checked again here, whatever checked them before: the store
/// holds only what a valid agent name can be.
fn checked(name: &str) -> Result<&str> {
    crate::identity::check_name(name)
        .map_err(|_| Error::BadRequest(format!("{name:?} is not a valid agent name")))?;
    Ok(name)
}

/// Every table, open in one write transaction.
struct Tables<'txn> {
    records: redb::Table<'txn, &'static str, &'static [u8]>,
    tombstones: redb::Table<'txn, &'static str, &'static [u8]>,
    snapshots: redb::Table<'txn, &'static str, &'static [u8]>,
    deltas: redb::Table<'txn, (&'static str, u64), &'static [u8]>,
    logs: redb::Table<'txn, &'static str, (u64, u64)>,
}

impl<'txn> Tables<'txn> {
    fn open(txn: &'txn WriteTransaction) -> Result<Self> {
        Ok(Tables {
            records: txn.open_table(RECORDS).map_err(db)?,
            tombstones: txn.open_table(TOMBSTONES).map_err(db)?,
            snapshots: txn.open_table(SNAPSHOTS).map_err(db)?,
            deltas: txn.open_table(DELTAS).map_err(db)?,
            logs: txn.open_table(LOGS).map_err(db)?,
        })
    }

    fn drop_deltas(&mut self, name: &str) -> Result<()> {
        self.deltas
            .retain_in((name, 0)..=(name, u64::MAX), |_, _| false)
            .map_err(db)?;
        self.logs.remove(name).map_err(db)?;
        Ok(())
    }

    fn set_snapshot(&mut self, name: &str, state: &[u8]) -> Result<()> {
        self.snapshots.insert(name, state).map_err(db)?;
        self.drop_deltas(name)
    }

    fn forget(&mut self, name: &str) -> Result<()> {
        self.records.remove(name).map_err(db)?;
        self.snapshots.remove(name).map_err(db)?;
        self.drop_deltas(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(epoch: u64) -> AgentRecord {
        AgentRecord {
            name: "a".parse().unwrap(),
            digest: Digest::of(b"c"),
            config: vec![("k".into(), "v".into())],
            epoch,
            standing: Standing::Active,
        }
    }

    fn tombstone(epoch: u64) -> Tombstone {
        Tombstone {
            name: "a".parse().unwrap(),
            epoch,
            host: "b".parse().unwrap(),
            addr: "x:1".into(),
        }
    }

    #[test]
    fn records_state_and_tombstones_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = AgentStore::open(dir.path()).unwrap();
        store.put_record(&record(3)).unwrap();
        store.put_state("a", b"memory").unwrap();
        drop(store);
        let store = AgentStore::open(dir.path()).unwrap();
        let (records, tombstones) = store.load().unwrap();
        assert_eq!(records, vec![record(3)]);
        assert!(tombstones.is_empty());
        assert_eq!(store.state("a").unwrap().as_deref(), Some(&b"memory"[..]));

        store.hand_off(&tombstone(4)).unwrap();
        let (records, tombstones) = store.load().unwrap();
        assert!(records.is_empty());
        assert_eq!(tombstones, vec![tombstone(4)]);
        assert_eq!(store.state("a").unwrap(), None);
        // Coming back (a later migration) clears the tombstone.
        store.put_record(&record(5)).unwrap();
        let (records, tombstones) = store.load().unwrap();
        assert_eq!((records.len(), tombstones.len()), (1, 0));
        // A handoff committed (tombstone) but not cleaned up before a crash:
        // the record is dropped, the tombstone wins.
        store.put_state("a", b"memory").unwrap();
        store.put_tombstone(&tombstone(6)).unwrap();
        let (records, tombstones) = store.load().unwrap();
        assert_eq!((records.len(), tombstones.len()), (0, 1));
        assert_eq!(store.state("a").unwrap(), None);
    }

    #[test]
    fn appended_states_survive_a_reopen_and_compact_into_a_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let store = AgentStore::open(dir.path()).unwrap();
        let mut state = vec![1u8; 100_000];
        // Unknown before: a snapshot.
        store.append_state("a", None, &state).unwrap();
        let mut longest = 0;
        for i in 0..200usize {
            let before = state.clone();
            let at = (i * 4096) % state.len();
            state[at] = i as u8;
            state.push(i as u8);
            store.append_state("a", Some(&before), &state).unwrap();
            let txn = store.db.begin_read().unwrap();
            let logs = txn.open_table(LOGS).unwrap();
            let bytes = logs.get("a").unwrap().map_or(0, |v| v.value().0);
            longest = longest.max(bytes);
            if i % 50 == 0 {
                drop((logs, txn));
                let reopened = store.clone();
                assert_eq!(reopened.state("a").unwrap().as_deref(), Some(&state[..]));
            }
        }
        // The deltas were folded into a snapshot: they stay short.
        assert!(longest > 0, "no delta was ever appended");
        assert!(
            longest <= MIN_LOG_BEFORE_COMPACTION + (64 << 10),
            "{longest}"
        );
        drop(store);
        let store = AgentStore::open(dir.path()).unwrap();
        assert_eq!(store.state("a").unwrap().as_deref(), Some(&state[..]));
        store.forget("a").unwrap();
        assert_eq!(store.state("a").unwrap(), None);
        let txn = store.db.begin_read().unwrap();
        let deltas = txn.open_table(DELTAS).unwrap();
        assert_eq!(deltas.range(("a", 0)..=("a", u64::MAX)).unwrap().count(), 0);
    }

    #[test]
    fn names_that_are_not_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = AgentStore::open(&dir.path().join("agents")).unwrap();
        for bad in ["../x", "/tmp/x", "", "a/b", ".."] {
            assert!(store.put_state(bad, b"x").is_err(), "{bad:?}");
            assert!(store.state(bad).is_err(), "{bad:?}");
            assert!(store.forget(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_directory_of_the_old_layout_moves_into_the_database() {
        let dir = tempfile::tempdir().unwrap();
        // The old layout: a record, a snapshot with a log, a tombstone.
        std::fs::write(
            dir.path().join("a.record"),
            encode_record(&record(2)).unwrap(),
        )
        .unwrap();
        let s0 = vec![3u8; 10_000];
        let mut s1 = s0.clone();
        s1[9000] = 9;
        std::fs::write(dir.path().join("a.state"), &s0).unwrap();
        let mut log = disk::log_header(&Digest::of(&s0));
        log.extend(disk::log_record(&s0, &s1).unwrap());
        std::fs::write(dir.path().join("a.log"), &log).unwrap();
        let mut gone = tombstone(7);
        gone.name = "gone".parse().unwrap();
        std::fs::write(dir.path().join("gone.moved"), encode_record(&gone).unwrap()).unwrap();

        let store = AgentStore::open(dir.path()).unwrap();
        let (records, tombstones) = store.load().unwrap();
        assert_eq!(records, vec![record(2)]);
        assert_eq!(tombstones, vec![gone]);
        assert_eq!(store.state("a").unwrap(), Some(s1));
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, vec![DATABASE.to_string()], "old files left behind");
    }

    #[test]
    fn a_damaged_database_is_refused_on_one_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(DATABASE), b"not a database at all").unwrap();
        let err = AgentStore::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("cannot open the agent database"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }
}
