//! One agent on a host: its instance, the gate that holds its calls during
//! a handoff, its durability, and the agent a migration is bringing here.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use std::net::SocketAddr;

use edgehost_proto::{AgentName, HostName};
use edgehost_runtime::{AgentInstance, Descriptor, Digest};
use tokio::sync::watch;

use crate::calibration::{Calibration, Operation};
use crate::durable::{Durability, Mode};
use crate::metrics::Metrics;
use crate::persist::{AgentStore, Tombstone};
use crate::sync::lock;
use crate::{Error, Result};

/// Counts one waiting call for as long as it lives.
pub(crate) struct Waiting<'a>(&'a AtomicU64);

impl<'a> Waiting<'a> {
    /// Counts one more waiting call, unless `limit` already wait.
    pub(crate) fn within(counter: &'a AtomicU64, limit: u64) -> Option<Self> {
        let before = counter.fetch_add(1, Ordering::Relaxed);
        if before >= limit {
            counter.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(Waiting(counter))
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Whether an agent takes calls.
#[derive(Debug, Clone)]
pub(crate) enum Gate {
    /// Serving.
    Open,
    /// Serving while a migration prepares the target.
    Migrating,
    /// Quiesced for a handoff: new calls wait.
    Held,
    /// Handed off: calls go to the new owner.
    Moved(Tombstone),
}

/// One agent on this host.
pub(crate) struct AgentSlot {
    pub(crate) name: String,
    /// Its instance; `None` while it hibernates (its state is on disk and
    /// the next call wakes it).
    pub(crate) instance: Mutex<Option<AgentInstance>>,
    /// When a call last reached it, or it started here.
    pub(crate) last_call: Mutex<Instant>,
    /// How long its last wake from hibernation took, microseconds; 0 if
    /// it has not hibernated here.
    pub(crate) last_wake_us: AtomicU64,
    pub(crate) digest: Digest,
    pub(crate) descriptor: Descriptor,
    /// The architecture its component declares it needs, if any.
    pub(crate) requires_arch: Option<String>,
    pub(crate) config: Vec<(String, String)>,
    pub(crate) epoch: u64,
    pub(crate) started: Instant,
    pub(crate) calls: AtomicU64,
    /// Calls answered when the state was last written to disk.
    pub(crate) snapshot_calls: AtomicU64,
    pub(crate) state_bytes: AtomicU64,
    pub(crate) held_calls: AtomicU64,
    /// Calls waiting right now for a handoff to finish.
    pub(crate) holding: AtomicU64,
    pub(crate) gate: watch::Sender<Gate>,
    /// What of its state is on disk; calls are answered once theirs is.
    pub(crate) durability: Durability,
    /// Whether calls wait for their state to be on disk, or only the
    /// heartbeat's snapshots write it.
    pub(crate) mode: Mode,
    /// Restarts after the instance was poisoned: how many, and when the
    /// next one may happen (H6).
    pub(crate) restarts: Mutex<(u32, Instant)>,
    /// Where its exports and calls are timed.
    pub(crate) calibration: std::sync::Arc<Calibration>,
}

/// How long after a restart the next one may happen; it doubles with each
/// restart, up to [`MAX_RESTART_BACKOFF`]. The first restart is immediate,
/// and an agent that stays healthy twice the longest backoff starts over.
pub(crate) const RESTART_BACKOFF: Duration = Duration::from_secs(1);
pub(crate) const MAX_RESTART_BACKOFF: Duration = Duration::from_secs(30);

impl AgentSlot {
    /// Right after a call, with the instance still held: exports the state
    /// and returns what [`AgentSlot::make_durable`] must wait for.
    pub(crate) fn stage(&self, instance: &mut AgentInstance) -> Result<u64> {
        let started = Instant::now();
        let state = instance.export_state()?;
        self.calibration.record(
            Operation::Export,
            Some(&self.digest),
            state.len() as f64,
            started.elapsed().as_secs_f64() * 1e3,
        );
        self.state_bytes
            .store(state.len() as u64, Ordering::Relaxed);
        Ok(self.durability.stage(state))
    }

    /// Hibernates the agent if it has had no call for `idle` and nothing
    /// holds its instance: makes its state durable, then drops the
    /// instance (blocking). Whether it now hibernates.
    pub(crate) fn hibernate_if_idle(
        &self,
        idle: Duration,
        store: &AgentStore,
        metrics: &Metrics,
    ) -> Result<bool> {
        if !matches!(*self.gate.borrow(), Gate::Open) || lock(&self.last_call).elapsed() < idle {
            return Ok(false);
        }
        let Ok(mut guard) = self.instance.try_lock() else {
            return Ok(false);
        };
        // A poisoned instance is revived by its next call, not put to sleep.
        let Some(instance) = guard.as_mut().filter(|i| i.poisoned().is_none()) else {
            return Ok(false);
        };
        // The instance stays held until it is dropped: no call can change
        // the state between the write and the drop.
        let seq = self.stage(instance)?;
        self.make_durable(seq, store, metrics)?;
        *guard = None;
        self.snapshot_calls
            .store(self.calls.load(Ordering::Relaxed), Ordering::Relaxed);
        Ok(true)
    }

    /// Whether it hibernates now (a busy instance is awake).
    pub(crate) fn hibernating(&self) -> bool {
        self.instance.try_lock().is_ok_and(|i| i.is_none())
    }

    /// Returns once the state staged as `seq` is on disk (blocking).
    pub(crate) fn make_durable(
        &self,
        seq: u64,
        store: &AgentStore,
        metrics: &Metrics,
    ) -> Result<()> {
        let mut wrote = false;
        let written = self.durability.commit(seq, |before, state| {
            // Handed off: the new owner wrote this state before it
            // acknowledged the transfer; a copy here would be stale.
            if matches!(*self.gate.borrow(), Gate::Moved(_)) {
                return Ok(());
            }
            store.append_state(&self.name, before, state)?;
            wrote = true;
            Ok(())
        })?;
        if let Some(bytes) = written.filter(|_| wrote) {
            metrics.state_writes.fetch_add(1, Ordering::Relaxed);
            metrics
                .state_write_bytes
                .fetch_add(bytes as u64, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Runs one call and answers it only once its effect on the state is
    /// durable (blocking; the caller holds `instance`, and this releases it
    /// before the write so other calls run meanwhile). An agent in
    /// [`Mode::Snapshot`] is answered at once; the heartbeat writes it.
    pub(crate) fn call_durably(
        &self,
        mut guard: std::sync::MutexGuard<'_, Option<AgentInstance>>,
        (store, metrics): (&AgentStore, &Metrics),
        body: Vec<u8>,
        caller: Option<AgentName>,
    ) -> Result<Vec<u8>> {
        let Some(instance) = guard.as_mut() else {
            return Err(Error::Internal(format!(
                "{} hibernates and was not woken for this call",
                self.name
            )));
        };
        self.calls.fetch_add(1, Ordering::Relaxed);
        *lock(&self.last_call) = Instant::now();
        let (bytes, started) = (body.len() as f64, Instant::now());
        let out = instance
            .handle_from(body, caller.map(AgentName::into_string))
            .map_err(|e| Error::Agent(e.to_string()))?;
        // The processing time is what the caller waits for here: the call
        // and, for a durable agent, making its effect durable.
        let record = |started: Instant| {
            self.calibration
                .record_call(&self.name, bytes, started.elapsed().as_secs_f64() * 1e3);
        };
        if self.mode == Mode::Snapshot {
            record(started);
            return Ok(out);
        }
        let seq = self.stage(instance).map_err(|e| {
            Error::Agent(format!(
                "the call ran, but its state could not be exported to be made durable: {e}"
            ))
        })?;
        drop(guard);
        self.make_durable(seq, store, metrics).map_err(|e| {
            Error::Internal(format!("the call ran, but its state is not durable: {e}"))
        })?;
        record(started);
        Ok(out)
    }
}

/// An agent a migration is bringing to this host, not serving yet.
pub(crate) struct Pending {
    pub(crate) instance: AgentInstance,
    pub(crate) digest: Digest,
    pub(crate) config: Vec<(String, String)>,
    pub(crate) epoch: u64,
    pub(crate) source: SocketAddr,
    /// The source host's name, from the certificate that sent `Prepare`:
    /// only that host may send the migration's later steps.
    pub(crate) source_host: HostName,
    /// When `Prepare` arrived: a prepared agent whose state never came
    /// expires.
    pub(crate) prepared_at: Instant,
    pub(crate) imported: bool,
    /// The size of the state imported, for reports once it serves.
    pub(crate) imported_bytes: u64,
    /// The state sent by `Precopy`, the base of the final delta, and its
    /// verified digest.
    pub(crate) base: Vec<u8>,
    pub(crate) base_digest: Option<Digest>,
}
