//! Durable calls: a call that changed an agent's state is answered only
//! once that state is on disk, so a host killed at any instant comes back
//! with every write it acknowledged.
//!
//! After each call the host exports the agent's state while it still holds
//! the instance ([`Durability::stage`]): the call's effects and nothing
//! later. An export equal to the last one means the call changed nothing;
//! it still waits for the newest staged state, because it may have read an
//! earlier call's write that is not on disk yet. Writing happens outside the
//! instance lock ([`Durability::commit`]), as a group commit: whoever holds
//! the writer lock writes the newest staged state, which covers every call
//! staged before it, so concurrent calls share one write and one fsync.

use std::sync::Mutex;

use crate::sync::lock;
use crate::{Error, Result};

/// Configuration keys under this prefix are the host's, not the agent's:
/// they are checked on deploy, travel with the agent when it migrates, and
/// are never passed to its `init`.
pub const HOST_KEY_PREFIX: &str = "edgehost.";

/// The configuration key by which an agent chooses its [`Mode`].
pub const DURABILITY_KEY: &str = "edgehost.durability";

/// How an agent's calls are made durable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// A call that changed the state is answered once the change is on
    /// disk (the default).
    #[default]
    Durable,
    /// Calls are answered at once; the state is written once per heartbeat,
    /// at a handoff and when the host stops. A host killed between two
    /// snapshots loses the calls answered since the last one.
    Snapshot,
}

impl Mode {
    /// The mode an agent's configuration chooses, or a one-line error for a
    /// value or a host key this host does not know.
    pub fn of(config: &[(String, String)]) -> Result<Mode> {
        let mut mode = Mode::Durable;
        for (key, value) in config {
            if key == DURABILITY_KEY {
                mode = match value.as_str() {
                    "durable" => Mode::Durable,
                    "snapshot" => Mode::Snapshot,
                    other => {
                        return Err(Error::BadRequest(format!(
                            "{DURABILITY_KEY} is \"durable\" or \"snapshot\", not {other:?}"
                        )));
                    }
                };
            } else if key.starts_with(HOST_KEY_PREFIX) {
                return Err(Error::BadRequest(format!(
                    "unknown host setting {key:?} (the host knows {DURABILITY_KEY})"
                )));
            }
        }
        Ok(mode)
    }
}

/// The agent's own configuration entries: `config` without the host's.
pub fn agent_entries(config: &[(String, String)]) -> Vec<(String, String)> {
    config
        .iter()
        .filter(|(key, _)| !key.starts_with(HOST_KEY_PREFIX))
        .cloned()
        .collect()
}

/// One agent's staged and written states.
#[derive(Default)]
pub(crate) struct Durability {
    staged: Mutex<Staged>,
    /// The sequence number of the state on disk, and that state when known;
    /// held while writing.
    written: Mutex<(u64, Option<Vec<u8>>)>,
}

#[derive(Default)]
struct Staged {
    /// Raised by every export that differs from the one before.
    seq: u64,
    /// The newest export not yet taken by a writer.
    pending: Option<Vec<u8>>,
    /// The newest export, to tell a call that changed nothing.
    last: Vec<u8>,
}

impl Durability {
    /// A durability tracker whose agent's state on disk is `on_disk`
    /// (`None` when unknown: the first call that changes it then writes it
    /// whole).
    pub(crate) fn new(on_disk: Option<Vec<u8>>) -> Self {
        Durability {
            staged: Mutex::new(Staged {
                seq: 0,
                pending: None,
                last: on_disk.clone().unwrap_or_default(),
            }),
            written: Mutex::new((0, on_disk)),
        }
    }

    /// Forgets what was staged and not written: the agent was restarted
    /// from `on_disk`, its state as stored. Calls still waiting for a write
    /// of the lost state are answered with an error, never as written.
    pub(crate) fn reset(&self, on_disk: Option<Vec<u8>>) {
        let mut written = lock(&self.written);
        let mut staged = lock(&self.staged);
        staged.pending = None;
        staged.last = on_disk.clone().unwrap_or_default();
        written.1 = on_disk;
    }

    /// Records `state`, exported right after a call, and returns the
    /// sequence number the call must see written before it is answered.
    pub(crate) fn stage(&self, state: Vec<u8>) -> u64 {
        let mut staged = lock(&self.staged);
        if state != staged.last {
            staged.seq += 1;
            staged.last.clone_from(&state);
            staged.pending = Some(state);
        }
        staged.seq
    }

    /// Returns once the state numbered `seq` (or a later one) is on disk,
    /// writing the newest staged state with `write(before, after)` unless
    /// another call's write already covers it (`before` is the state on
    /// disk, when known). Returns the size of what was written, if this
    /// call wrote.
    pub(crate) fn commit(
        &self,
        seq: u64,
        write: impl FnOnce(Option<&[u8]>, &[u8]) -> Result<()>,
    ) -> Result<Option<usize>> {
        let mut written = lock(&self.written);
        if written.0 >= seq {
            return Ok(None);
        }
        let (newest, state) = {
            let mut staged = lock(&self.staged);
            (staged.seq, staged.pending.take())
        };
        let Some(state) = state else {
            // Nothing staged past what is written: cannot happen while the
            // writer lock is held, but never worth a wrong answer.
            return Err(Error::Internal(format!(
                "state {seq} was staged but is neither written nor pending"
            )));
        };
        match write(written.1.as_deref(), &state) {
            Ok(()) => {
                let size = state.len();
                *written = (newest, Some(state));
                Ok(Some(size))
            }
            Err(e) => {
                // What reached the disk is unknown now (a torn append, say):
                // the next write is a whole snapshot.
                written.1 = None;
                // Kept for the next writer, unless a newer state replaced it.
                let mut staged = lock(&self.staged);
                if staged.pending.is_none() {
                    staged.pending = Some(state);
                }
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mode_is_read_from_the_host_key_and_bad_keys_are_refused() {
        let entry = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        assert_eq!(Mode::of(&[entry("greeting", "hi")]).unwrap(), Mode::Durable);
        assert_eq!(
            Mode::of(&[entry(DURABILITY_KEY, "snapshot")]).unwrap(),
            Mode::Snapshot
        );
        let bad = Mode::of(&[entry(DURABILITY_KEY, "sometimes")]).unwrap_err();
        assert!(bad.to_string().contains("not \"sometimes\""), "{bad}");
        let unknown = Mode::of(&[entry("edgehost.colour", "red")]).unwrap_err();
        assert!(unknown.to_string().contains("edgehost.colour"), "{unknown}");
        assert_eq!(
            agent_entries(&[entry(DURABILITY_KEY, "snapshot"), entry("greeting", "hi")]),
            vec![entry("greeting", "hi")]
        );
    }

    #[test]
    fn a_write_covers_every_state_staged_before_it() {
        let d = Durability::new(Some(b"v0".to_vec()));
        // A call that changed nothing has nothing to wait for.
        assert_eq!(d.stage(b"v0".to_vec()), 0);
        assert_eq!(
            d.commit(0, |_, _| panic!("nothing to write")).unwrap(),
            None
        );
        let first = d.stage(b"v1".to_vec());
        let second = d.stage(b"v2".to_vec());
        let mut disk = Vec::new();
        assert_eq!(
            d.commit(first, |before, s| {
                assert_eq!(before, Some(&b"v0"[..]));
                disk = s.to_vec();
                Ok(())
            })
            .unwrap(),
            Some(2)
        );
        assert_eq!(disk, b"v2", "the newest state is what is written");
        // The second call is covered by the first call's write.
        assert_eq!(
            d.commit(second, |_, _| panic!("already written")).unwrap(),
            None
        );
        // A read after an unwritten write waits for that write.
        let third = d.stage(b"v3".to_vec());
        assert_eq!(d.stage(b"v3".to_vec()), third);
    }

    #[test]
    fn a_failed_write_is_retried_by_the_next_call() {
        let d = Durability::new(None);
        let seq = d.stage(b"v1".to_vec());
        assert!(
            d.commit(seq, |_, _| Err(Error::Internal("disk full".into())))
                .is_err()
        );
        let mut disk = Vec::new();
        d.commit(seq, |before, s| {
            assert_eq!(before, None);
            disk = s.to_vec();
            Ok(())
        })
        .unwrap();
        assert_eq!(disk, b"v1");
    }
}
