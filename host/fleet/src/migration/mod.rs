//! Live migration: an agent moves by shipping its state blob, never its code.
//!
//! The source drives the handoff (see `docs/migration.md`):
//!
//! 1. **prepare** — the target gets the component if it lacks it, compiles it
//!    or loads its cached artifact, instantiates and `init`s a fresh instance.
//!    The agent still serves on the source meanwhile: compilation is never
//!    part of the downtime.
//! 2. **pre-copy** — `export-state` while the agent still serves; the whole
//!    blob travels (size-limited, hash-verified) and the target keeps it.
//! 3. **quiesce** — the source holds new calls; calls already running finish.
//! 4. **transfer** — `export-state` again; only the 4 KiB blocks that changed
//!    since the pre-copy travel ([`crate::delta`]); the target rebuilds the
//!    blob, checks its hash, `import-state`s it and writes it to disk as a
//!    prepared agent. An agent idle during the pre-copy moves with a delta of
//!    a few bytes: its memory no longer crosses the network while it is held.
//! 5. **commit** — the source writes a durable tombstone (the commit point),
//!    tells the target to serve, releases its instance; held calls are
//!    forwarded to the new owner.
//!
//! Any failure before the commit point aborts: the target forgets the
//! prepared agent, and the source, whose instance was never touched beyond
//! `export-state`, serves again with its state unchanged. The ownership epoch
//! rises by one with each migration; a host that sees a peer serve an agent at
//! a higher epoch than its own copy drops its copy, and a prepared agent only
//! serves once its source confirms the commit.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use edgehost_runtime::Digest;

use crate::calibration::{Move, Operation, Source, crossing_ms, predict_migration, stop_and_copy};
use crate::client::{call, call_encoded, unexpected, upload};
use crate::delta;
use crate::host::{Gate, Pending, Shared};
use crate::identity::Identity;
use crate::persist::{AgentRecord, Standing, Tombstone};
use crate::sync::lock;
use std::net::SocketAddr;

use crate::protocol::{
    AgentName, HostModel, HostName, MigrationReport, MigrationTimes, Request, Response, encode,
};
use crate::{Error, ErrorKind, Result};

mod source;
mod target;

/// How long each step of a handoff may take before the migration aborts.
/// Preparing may compile a large component; the other steps are small.
const QUICK_STEP: Duration = Duration::from_secs(5);
/// The pre-copy carries the whole state (up to 16 MiB) over what may be a
/// thin uplink.
const TRANSFER_STEP: Duration = Duration::from_secs(120);
const UPLOAD_STEP: Duration = Duration::from_secs(120);
const PREPARE_STEP: Duration = Duration::from_secs(120);

/// How long a target waits for a `Commit` after the state arrived before it
/// asks the source itself.
const SETTLE_AFTER: Duration = Duration::from_secs(2);

/// Prepared migrations a host keeps from one source at once.
pub const MAX_PREPARED_PER_SOURCE: usize = 16;
/// Prepared migrations a host keeps in all.
pub const MAX_PREPARED: usize = 64;

/// `call`, bounded by `limit`.
async fn step(
    connection: &quinn::Connection,
    request: &Request,
    limit: Duration,
) -> Result<Response> {
    step_encoded(connection, &encode(request)?, limit).await
}

/// `call_encoded`, bounded by `limit`.
async fn step_encoded(
    connection: &quinn::Connection,
    message: &[u8],
    limit: Duration,
) -> Result<Response> {
    tokio::time::timeout(limit, call_encoded(connection, message))
        .await
        .map_err(|_| Error::Connect(format!("no answer within {limit:?}")))?
}

/// An admitted `Prepare` still on its way to being prepared: counted by
/// [`Shared::admit_prepare`] until dropped.
struct Admitted<'a> {
    shared: &'a Shared,
    name: AgentName,
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        lock(&self.shared.preparing).remove(&self.name);
    }
}

/// Removes the pending migration of `name` only if `matches` holds: a
/// request for another epoch must not disturb it.
fn take_pending(
    pending: &std::sync::Mutex<std::collections::HashMap<AgentName, Pending>>,
    name: &str,
    matches: impl FnOnce(&Pending) -> bool,
) -> Option<Pending> {
    let mut pending = lock(pending);
    if pending.get(name).is_some_and(matches) {
        pending.remove(name)
    } else {
        None
    }
}

impl crate::host::AgentSlot {
    fn begin_migration(&self) -> bool {
        self.gate.send_if_modified(|g| {
            if matches!(g, Gate::Open) {
                *g = Gate::Migrating;
                true
            } else {
                false
            }
        })
    }

    fn hold(&self) {
        self.gate.send_replace(Gate::Held);
    }

    fn open(&self) {
        self.gate.send_replace(Gate::Open);
    }

    fn moved(&self, to: Tombstone) {
        self.gate.send_replace(Gate::Moved(to));
    }
}
