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

use crate::calibration::{Move, Operation, Source, predict_migration};
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
use crate::{Error, Result};

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

impl Shared {
    /// Source side: moves `name` to the host named `to`.
    pub(crate) async fn migrate(
        self: &Arc<Self>,
        name: AgentName,
        to: HostName,
    ) -> Result<Response> {
        let local = lock(&self.agents).get(&name).cloned();
        let Some(slot) = local else {
            // Not here: hand the request to the agent's owner.
            return self.migrate_elsewhere(name, to).await;
        };
        if to == self.name {
            return Err(Error::BadRequest(format!("{name:?} already runs on {to}")));
        }
        let target = lock(&self.membership)
            .views(Instant::now())
            .into_iter()
            .find(|v| v.report.name == *to)
            .ok_or_else(|| Error::NotFound(format!("no host named {to:?} in the fleet")))?;
        if !target.reachable {
            return Err(Error::Connect(format!("host {to:?} is unreachable")));
        }
        // Refused here, before anything is sent: the target would refuse
        // it anyway (an unknown architecture is left for the target to judge).
        let target_arch = &target.report.status.arch;
        if let Some(arch) = &slot.requires_arch
            && !target_arch.is_empty()
            && target_arch != arch
        {
            return Err(Error::BadRequest(format!(
                "the agent requires {arch}; host {to} is {target_arch}"
            )));
        }
        if !slot.begin_migration() {
            return Err(Error::Conflict(format!("{name:?} is already moving")));
        }
        let result = self
            .handoff(
                &name,
                &slot,
                &to,
                target.report.addr,
                target.report.agents.len(),
            )
            .await;
        match &result {
            Ok(report) => {
                let m = &self.metrics;
                m.migrations.fetch_add(1, Ordering::Relaxed);
                m.migration_downtime_micros
                    .fetch_add((report.downtime_ms * 1e3) as u64, Ordering::Relaxed);
                m.migration_state_bytes
                    .fetch_add(report.state_bytes, Ordering::Relaxed);
                let mut recent = lock(&self.migrations);
                if recent.len() >= crate::protocol::MAX_RECENT_MIGRATIONS {
                    recent.pop_front();
                }
                recent.push_back(crate::protocol::RecentMigration {
                    at_ms: std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as u64),
                    report: report.clone(),
                });
            }
            Err(_) => {
                self.metrics
                    .migration_failures
                    .fetch_add(1, Ordering::Relaxed);
                // Before the commit point nothing changed: serve again.
                slot.open();
            }
        }
        result.map(Response::Migrated)
    }

    /// Forwards a `Migrate` for an agent this host does not run to the host
    /// that does.
    async fn migrate_elsewhere(
        self: &Arc<Self>,
        name: AgentName,
        to: HostName,
    ) -> Result<Response> {
        let moved = lock(&self.moved).get(&name).cloned();
        let mut owner = match moved {
            Some(t) => Some((t.host.clone(), crate::persist::tombstone_socket(&t)?)),
            None => None,
        };
        if owner.is_none() {
            owner = lock(&self.membership)
                .owner_of(&name, Instant::now())
                .map(|r| (r.name, r.addr));
        }
        if owner.is_none() {
            self.refresh_peers().await;
            owner = lock(&self.membership)
                .owner_of(&name, Instant::now())
                .map(|r| (r.name, r.addr));
        }
        let (owner, addr) = owner.ok_or_else(|| {
            Error::NotFound(format!("no reachable host runs an agent named {name:?}"))
        })?;
        let request = Request::Migrate { name, to };
        let answer = tokio::time::timeout(
            PREPARE_STEP + UPLOAD_STEP + TRANSFER_STEP,
            self.call_peer(addr, Some(&owner), &request),
        )
        .await
        .map_err(|_| Error::Connect("the owner did not finish the migration in time".into()))??;
        Ok(answer.0)
    }

    async fn handoff(
        self: &Arc<Self>,
        name: &AgentName,
        slot: &Arc<crate::host::AgentSlot>,
        to: &HostName,
        addr: SocketAddr,
        agents_on_target: usize,
    ) -> Result<MigrationReport> {
        let epoch = slot
            .epoch
            .checked_add(1)
            .ok_or_else(|| Error::Conflict(format!("{name:?} has run out of epochs")))?;
        let socket = addr;
        // What the model predicts is priced with the figures known before
        // the move: this host's own, and the target's as its prepare
        // answer gives them.
        let source_model = self.calibration.model(&[]);
        // The state goes only to a peer whose certificate names the target.
        let (connection, _) = self.connection(socket, Some(to)).await?;

        // Prepare: the component (only if missing), then a fresh instance.
        let mut component_bytes_sent = 0;
        let component_size = std::fs::metadata(self.store.path(&slot.digest))
            .map(|m| m.len())
            .unwrap_or(0);
        let has = Request::Has {
            digest: slot.digest,
        };
        if let Response::Has(false) = step(&connection, &has, QUICK_STEP).await? {
            let bytes = self.store.read(&slot.digest)?;
            let sending = upload(&connection, slot.digest, &bytes, |_| {});
            component_bytes_sent = tokio::time::timeout(UPLOAD_STEP, sending)
                .await
                .map_err(|_| Error::Connect(format!("the upload took over {UPLOAD_STEP:?}")))??;
        }
        let prepare = Request::Prepare {
            name: name.clone(),
            digest: slot.digest,
            config: slot.config.clone(),
            epoch,
            source: self.addr,
        };
        let (initiation_ms, compile_ms, cache_hit, target_model) =
            match step(&connection, &prepare, PREPARE_STEP).await {
                Ok(Response::Prepared {
                    initiation_ms,
                    compile_ms,
                    cache_hit,
                    model,
                }) => (initiation_ms, compile_ms, cache_hit, *model),
                Ok(other) => {
                    self.abort(&connection, name, epoch).await;
                    return Err(unexpected(&other));
                }
                Err(e) => {
                    self.abort(&connection, name, epoch).await;
                    return Err(e);
                }
            };

        // Pre-copy: the whole state, while the agent still serves.
        let base = match self.export(slot, Operation::Export).await {
            Ok((state, _)) => state,
            Err(e) => {
                self.abort(&connection, name, epoch).await;
                return Err(e);
            }
        };
        // Encoded once: what is sent is what is counted.
        let precopy = encode(&Request::Precopy {
            name: name.clone(),
            epoch,
            state_digest: Digest::of(&base),
            state: base.clone(),
        })?;
        let sent = Instant::now();
        match step_encoded(&connection, &precopy, TRANSFER_STEP).await {
            Ok(Response::Precopied) => {}
            Ok(other) => {
                self.abort(&connection, name, epoch).await;
                return Err(unexpected(&other));
            }
            Err(e) => {
                self.abort(&connection, name, epoch).await;
                return Err(Error::Connect(format!(
                    "pre-copy of the state failed, migration aborted, {name:?} still serves here: {e}"
                )));
            }
        }
        let precopy_ms = sent.elapsed().as_secs_f64() * 1e3;
        self.calibration
            .record_send(to, precopy.len() as f64, precopy_ms);

        // Quiesce: hold new calls, let running ones finish, export again.
        let quiesced = Instant::now();
        slot.hold();
        let (state, export) = match self.export(slot, Operation::HoldExport).await {
            Ok(v) => v,
            Err(e) => {
                self.abort(&connection, name, epoch).await;
                return Err(e);
            }
        };

        // Transfer: only the blocks that changed since the pre-copy.
        let transfer = encode(&Request::Transfer {
            name: name.clone(),
            epoch,
            state_digest: Digest::of(&state),
            len: state.len() as u64,
            blocks: delta::diff(&base, &state),
        })?;
        // The delta's deadline follows the pace the pre-copy measured on
        // this very link: four times the expected time for its size, and
        // never under the quick step's.
        let expected = Duration::from_secs_f64(
            precopy_ms / 1e3 * transfer.len() as f64 / precopy.len().max(1) as f64,
        );
        let transfer_step = QUICK_STEP.max(expected.saturating_mul(4) + Duration::from_secs(2));
        let sent = Instant::now();
        let load_ms = match step_encoded(&connection, &transfer, transfer_step).await {
            Ok(Response::Transferred { load_ms }) => load_ms,
            Ok(other) => {
                self.abort(&connection, name, epoch).await;
                return Err(Error::Protocol(format!(
                    "migration aborted: {:?}",
                    unexpected(&other)
                )));
            }
            Err(e) => {
                self.abort(&connection, name, epoch).await;
                return Err(Error::Connect(format!(
                    "migration aborted, {name:?} still serves here: {e}"
                )));
            }
        };
        let delta_ms = (sent.elapsed().as_secs_f64() * 1e3 - load_ms).max(0.0);
        self.calibration
            .record_send(to, transfer.len() as f64, delta_ms);
        let transfer_ms = precopy_ms + delta_ms;

        // Commit point: the tombstone. From here on this host never serves
        // the agent again, whatever happens to the target.
        let tombstone = Tombstone {
            name: name.clone(),
            epoch,
            host: to.clone(),
            addr: addr.to_string(),
        };
        if let Err(e) = self.agent_store.put_tombstone(&tombstone) {
            self.abort(&connection, name, epoch).await;
            return Err(Error::Internal(format!(
                "migration aborted, could not record the handoff: {e}"
            )));
        }
        lock(&self.moved).insert(name.clone(), tombstone.clone());
        let commit = Request::Commit {
            name: name.clone(),
            epoch,
        };
        // The slot stays listed until the target has the commit: a call
        // arriving meanwhile waits behind the held gate with the others,
        // instead of reaching a target that does not serve the agent yet
        // and bouncing back.
        let committed = step(&connection, &commit, QUICK_STEP).await;
        lock(&self.agents).remove(name);
        self.calibration.forget_agent(name);
        // Held calls now go to the new owner.
        slot.moved(tombstone);
        let downtime = quiesced.elapsed();
        // After the handoff, so neither is downtime: the old record and
        // state go (the tombstone already outranks them), and the accounting.
        if let Err(e) = self.agent_store.forget(name) {
            tracing::warn!(agent = %name, "could not remove the moved agent's files: {e}");
        }
        // Each message travels in a frame with a 4-byte length.
        let delta_bytes = transfer.len() as u64 + 4;
        let wire_bytes = precopy.len() as u64 + 4 + delta_bytes;
        let state_bytes = state.len() as u64;
        if let Err(e) = committed {
            // The target holds the state durably and will ask us after it
            // restarts; the agent is not lost, only unavailable meanwhile.
            tracing::warn!(agent = %name, target = %to, "commit not acknowledged: {e}");
        }
        tracing::info!(agent = %name, target = %to, epoch, downtime_ms = downtime.as_secs_f64() * 1e3, "migrated");

        let declared_mbps = lock(&self.membership)
            .views(Instant::now())
            .iter()
            .find(|v| v.report.name == *to)
            .map(|v| {
                v.report
                    .bandwidth_mbps
                    .min(self.config.labels.bandwidth_mbps)
            })
            .unwrap_or(self.config.labels.bandwidth_mbps);
        let (predicted_ms, sources) = predict_migration(
            &source_model,
            &target_model,
            &Move {
                to,
                digest: &slot.digest,
                component_bytes: component_size as f64,
                state_bytes: state_bytes as f64,
                agents_on_target,
                declared_mbps,
            },
        );
        let defaults = predicted_ms
            .parts()
            .into_iter()
            .map(|(part, _)| part)
            .zip(sources)
            .filter(|(_, s)| *s == Source::Default)
            .map(|(part, _)| part.to_owned())
            .collect();
        Ok(MigrationReport {
            agent: name.clone(),
            from: self.name.clone(),
            to: to.clone(),
            epoch,
            measured_ms: MigrationTimes {
                export_ms: export.as_secs_f64() * 1e3,
                transfer_ms,
                initiation_ms,
                load_ms,
            },
            predicted_ms,
            predicted_defaults: defaults,
            downtime_ms: downtime.as_secs_f64() * 1e3,
            state_bytes,
            wire_bytes,
            delta_bytes,
            component_bytes_sent,
            held_calls: slot.held_calls.load(Ordering::Relaxed),
            precopy_ms,
            target_compile_ms: compile_ms,
            target_cache_hit: cache_hit,
        })
    }

    /// `export-state` of the agent in `slot`, with the time it took,
    /// recorded as `operation`.
    async fn export(
        &self,
        slot: &Arc<crate::host::AgentSlot>,
        operation: Operation,
    ) -> Result<(Vec<u8>, Duration)> {
        let slot = slot.clone();
        tokio::task::spawn_blocking(move || {
            let start = Instant::now();
            let mut instance = lock(&slot.instance);
            let exported = instance.export_state().map(|s| (s, start.elapsed()));
            if let Ok((state, took)) = &exported {
                slot.calibration.record(
                    operation,
                    Some(&slot.digest),
                    state.len() as f64,
                    took.as_secs_f64() * 1e3,
                );
            }
            exported
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
        .map_err(|e| Error::Agent(format!("export-state failed, migration aborted: {e}")))
    }

    async fn abort(&self, connection: &quinn::Connection, name: &AgentName, epoch: u64) {
        let abort = Request::Abort {
            name: name.clone(),
            epoch,
        };
        if let Err(e) = step(connection, &abort, QUICK_STEP).await {
            // An unreachable target drops the prepared agent on its own: it
            // asks us after a restart, and we answer "not committed".
            tracing::debug!(agent = %name, "abort not delivered: {e}");
        }
    }

    /// Target side of `Prepare`.
    pub(crate) async fn prepare(
        self: &Arc<Self>,
        identity: &Identity,
        name: AgentName,
        digest: Digest,
        config: Vec<(String, String)>,
        epoch: u64,
        source: SocketAddr,
    ) -> Result<Response> {
        if lock(&self.agents).contains_key(&name) {
            return Err(Error::Conflict(format!("{name:?} already runs here")));
        }
        if let Some(t) = lock(&self.moved).get(&name)
            && t.epoch >= epoch
        {
            return Err(Error::Conflict(format!(
                "{name:?} already moved on at epoch {}; epoch {epoch} is stale",
                t.epoch
            )));
        }
        let _admitted = self.admit_prepare(identity, &name)?;
        if !self.store.has(&digest) {
            return Err(Error::NotFound(format!(
                "component {digest} is not stored here"
            )));
        }
        // Our figures before this prepare adds its own samples to them.
        let model = HostModel {
            links: Vec::new(),
            ..self.calibration.model(&[])
        };
        let shared = self.clone();
        let agent = name.clone();
        let config_for_init = config.clone();
        let (component, instance, initiation) = tokio::task::spawn_blocking(move || {
            let component = shared.load_component(&digest)?;
            let start = Instant::now();
            let instance = shared.start_instance(&component, &agent, &config_for_init, None)?;
            Ok::<_, Error>((component, instance, start.elapsed()))
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
        let pending = Pending {
            instance,
            digest,
            config,
            epoch,
            source,
            source_host: identity.name.clone(),
            prepared_at: Instant::now(),
            imported: false,
            imported_bytes: 0,
            base: Vec::new(),
            base_digest: None,
        };
        {
            let mut all = lock(&self.pending);
            // Checked again: another source may have prepared it meanwhile.
            if all
                .get(&name)
                .is_some_and(|p| p.source_host != identity.name)
            {
                return Err(Error::Conflict(format!(
                    "another host is already migrating {name:?} here"
                )));
            }
            all.insert(name, pending);
        }
        Ok(Response::Prepared {
            initiation_ms: initiation.as_secs_f64() * 1e3,
            compile_ms: component.load_time().as_secs_f64() * 1e3,
            cache_hit: component.cache_outcome() == edgehost_runtime::CacheOutcome::Hit,
            model: Box::new(model),
        })
    }

    /// Target side of `Precopy`.
    pub(crate) async fn receive_precopy(
        &self,
        identity: &Identity,
        name: &str,
        epoch: u64,
        state_digest: Digest,
        state: Vec<u8>,
    ) -> Result<Response> {
        let state = tokio::task::spawn_blocking(move || {
            (Digest::of(&state) == state_digest).then_some(state)
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
        .ok_or_else(|| Error::Protocol("the state blob does not hash to its digest".into()))?;
        let mut pending = lock(&self.pending);
        let prepared = pending
            .get_mut(name)
            .filter(|p| p.epoch == epoch && !p.imported && p.source_host == identity.name)
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "no prepared migration of {name:?} at epoch {epoch}"
                ))
            })?;
        prepared.base = state;
        prepared.base_digest = Some(state_digest);
        Ok(Response::Precopied)
    }

    /// Target side of `Transfer`.
    pub(crate) async fn receive_state(
        self: &Arc<Self>,
        identity: &Identity,
        name: AgentName,
        epoch: u64,
        state_digest: Digest,
        len: u64,
        blocks: Vec<delta::Block>,
    ) -> Result<Response> {
        let mut pending = take_pending(&self.pending, &name, |p| {
            p.epoch == epoch && !p.imported && p.source_host == identity.name
        })
        .ok_or_else(|| {
            Error::NotFound(format!(
                "no prepared migration of {name:?} at epoch {epoch}"
            ))
        })?;
        let shared = self.clone();
        let max = crate::protocol::MAX_MESSAGE_BYTES;
        let (pending, load) = tokio::task::spawn_blocking(move || {
            // A bad delta fails the transfer; the source aborts, which
            // drops this prepared agent.
            let base = std::mem::take(&mut pending.base);
            // Nothing changed since a pre-copy whose hash was checked: the
            // blob needs no second hashing while calls are held.
            let unchanged = blocks.is_empty()
                && len == base.len() as u64
                && pending.base_digest == Some(state_digest);
            let state = delta::apply(base, len, &blocks, max)?;
            if !unchanged && Digest::of(&state) != state_digest {
                return Err(Error::Protocol(
                    "the state blob does not hash to its digest".into(),
                ));
            }
            let start = Instant::now();
            pending.instance.import_state(&state)?;
            let load = start.elapsed();
            shared.calibration.record(
                Operation::Import,
                Some(&pending.digest),
                state.len() as f64,
                load.as_secs_f64() * 1e3,
            );
            pending.imported = true;
            pending.imported_bytes = state.len() as u64;
            shared.agent_store.put_state(&name, &state)?;
            shared.agent_store.put_record(&AgentRecord {
                name: name.clone(),
                digest: pending.digest,
                config: pending.config.clone(),
                epoch: pending.epoch,
                standing: Standing::PreparedFrom {
                    host: pending.source_host.clone(),
                    addr: pending.source.to_string(),
                },
            })?;
            Ok::<_, Error>(((name, pending), load))
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
        lock(&self.pending).insert(pending.0, pending.1);
        Ok(Response::Transferred {
            load_ms: load.as_secs_f64() * 1e3,
        })
    }

    /// Target side of `Commit`: the prepared agent starts serving.
    pub(crate) fn commit(
        self: &Arc<Self>,
        identity: &Identity,
        name: &AgentName,
        epoch: u64,
    ) -> Result<Response> {
        let pending = take_pending(&self.pending, name, |p| {
            p.epoch == epoch && p.imported && p.source_host == identity.name
        })
        .ok_or_else(|| {
            Error::NotFound(format!(
                "no transferred migration of {name:?} at epoch {epoch}"
            ))
        })?;
        self.agent_store.put_record(&AgentRecord {
            name: name.clone(),
            digest: pending.digest,
            config: pending.config.clone(),
            epoch,
            standing: Standing::Active,
        })?;
        let state_bytes = pending.imported_bytes;
        self.install(
            name,
            pending.instance,
            pending.digest,
            pending.config,
            epoch,
            None,
        );
        if let Some(slot) = lock(&self.agents).get(name) {
            slot.state_bytes.store(state_bytes, Ordering::Relaxed);
        }
        lock(&self.moved).remove(name);
        tracing::info!(agent = %name, epoch, "took over");
        Ok(Response::Committed)
    }

    /// Target side of `Abort`.
    pub(crate) fn abort_prepared(
        &self,
        identity: &Identity,
        name: &str,
        epoch: u64,
    ) -> Result<Response> {
        let mut pending = lock(&self.pending);
        if let Some(p) = pending.get(name)
            && p.source_host != identity.name
        {
            return Err(Error::Forbidden(format!(
                "{identity} may not abort a migration from {:?}",
                p.source_host
            )));
        }
        if pending.get(name).is_some_and(|p| p.epoch == epoch) {
            pending.remove(name);
            drop(pending);
            self.agent_store.forget(name)?;
        }
        Ok(Response::Aborted)
    }

    /// Source side of `Outcome`: committed only to the host the agent was
    /// handed to (H1: the epoch alone would tell any host "yes").
    ///
    /// While a handoff of the agent is still under way here the answer is
    /// not known yet, and the target is told to ask again: a "no" must be
    /// final, since the target drops its copy on it.
    pub(crate) fn outcome(&self, identity: &Identity, name: &str, epoch: u64) -> Result<Response> {
        let committed = lock(&self.moved)
            .get(name)
            .is_some_and(|t| t.epoch >= epoch && t.host == identity.name);
        if !committed {
            let moving = lock(&self.agents)
                .get(name)
                .is_some_and(|slot| matches!(*slot.gate.borrow(), Gate::Migrating | Gate::Held));
            if moving {
                return Err(Error::Conflict(format!(
                    "{name:?} is still being handed off; ask again"
                )));
            }
        }
        Ok(Response::Outcome { committed })
    }

    /// H3: a target whose `Commit` never came asks the source, until it
    /// learns the outcome. Run with every heartbeat for each migration
    /// whose state arrived more than [`SETTLE_AFTER`] ago.
    pub(crate) async fn settle_pending(self: &Arc<Self>) {
        let waiting: Vec<(AgentName, u64, HostName, SocketAddr)> = lock(&self.pending)
            .iter()
            .filter(|(_, p)| p.imported && p.prepared_at.elapsed() > SETTLE_AFTER)
            .map(|(name, p)| (name.clone(), p.epoch, p.source_host.clone(), p.source))
            .collect();
        for (name, epoch, host, socket) in waiting {
            let ask = Request::Outcome {
                name: name.clone(),
                epoch,
            };
            let source = Identity {
                role: crate::identity::Role::Host,
                name: host.clone(),
            };
            match tokio::time::timeout(QUICK_STEP, self.call_peer(socket, Some(&host), &ask)).await
            {
                Ok(Ok((Response::Outcome { committed: true }, _))) => {
                    match self.commit(&source, &name, epoch) {
                        Ok(_) => {
                            tracing::info!(agent = %name, "commit learned from the source; serving")
                        }
                        Err(e) => tracing::debug!(agent = %name, "settling: {e}"),
                    }
                }
                Ok(Ok((Response::Outcome { committed: false }, _))) => {
                    tracing::info!(agent = %name, "the source did not commit; dropping the prepared copy");
                    if let Err(e) = self.abort_prepared(&source, &name, epoch) {
                        tracing::warn!(agent = %name, "dropping a prepared copy: {e}");
                    }
                }
                other => tracing::debug!(agent = %name, "outcome not known yet: {other:?}"),
            }
        }
    }

    /// Bounds on prepared migrations: at most [`MAX_PREPARED_PER_SOURCE`]
    /// from one source and [`MAX_PREPARED`] in all, and each one that has
    /// not received its state within `[limits] prepare_expiry_ms` (by
    /// default 180 s, longer than a pre-copy may take, [`TRANSFER_STEP`])
    /// is dropped. A second `Prepare` of an agent another host is migrating
    /// here is refused; the same source may start over (its earlier attempt
    /// failed).
    ///
    /// Prepares still instantiating count too: an admitted `Prepare` holds
    /// its place (the returned guard) until it is prepared or fails, so
    /// many at once cannot all pass the check before any is counted.
    fn admit_prepare(&self, identity: &Identity, name: &AgentName) -> Result<Admitted<'_>> {
        self.expire_prepared();
        let mut pending = lock(&self.pending);
        let mut preparing = lock(&self.preparing);
        if preparing.contains_key(name) {
            return Err(Error::Conflict(format!(
                "a migration of {name:?} is being prepared here already"
            )));
        }
        if let Some(p) = pending.get(name) {
            if p.source_host != identity.name {
                return Err(Error::Conflict(format!(
                    "another host is already migrating {name:?} here"
                )));
            }
            // The source runs one handoff of an agent at a time: a new
            // Prepare from it means the earlier attempt ended uncommitted.
            pending.remove(name);
        }
        let from_source = pending
            .values()
            .map(|p| &p.source_host)
            .chain(preparing.values())
            .filter(|source| **source == identity.name)
            .count();
        let prepared = pending.len() + preparing.len();
        if from_source >= MAX_PREPARED_PER_SOURCE {
            return Err(Error::Conflict(format!(
                "{identity} has {from_source} migrations prepared here, the most one source may"
            )));
        }
        if prepared >= MAX_PREPARED {
            return Err(Error::Conflict(format!(
                "{prepared} migrations are prepared here, the most this host takes"
            )));
        }
        let hosted = lock(&self.agents).len() + prepared;
        if hosted >= self.config.limits.max_agents as usize {
            return Err(Error::Conflict(format!(
                "this host runs its maximum of {} agents, prepared migrations included",
                self.config.limits.max_agents
            )));
        }
        preparing.insert(name.clone(), identity.name.clone());
        Ok(Admitted {
            shared: self,
            name: name.clone(),
        })
    }

    /// Drops the prepared migrations whose state did not arrive within
    /// `[limits] prepare_expiry_ms`; run with each heartbeat and before a
    /// `Prepare` is admitted.
    pub(crate) fn expire_prepared(&self) {
        let expiry = Duration::from_millis(self.config.limits.prepare_expiry_ms);
        let now = Instant::now();
        lock(&self.pending).retain(|agent, p| {
            let expired = !p.imported && now.duration_since(p.prepared_at) > expiry;
            if expired {
                tracing::info!(agent = %agent, source = %p.source_host, "prepared migration expired");
            }
            !expired
        });
    }

    /// After a restart: settle migrations this host had prepared but not
    /// seen committed, by asking their sources.
    pub(crate) async fn settle_prepared(self: &Arc<Self>, prepared: Vec<AgentRecord>) {
        for record in prepared {
            let (source, host) = match &record.standing {
                Standing::PreparedFrom { host, addr } => (addr, Some(host.as_str())),
                // Written before records named the source host.
                Standing::Prepared { source } => (source, None),
                Standing::Active => continue,
            };
            let answer = async {
                let addr = source
                    .parse()
                    .map_err(|_| Error::Internal(format!("bad source address {source:?}")))?;
                let (connection, _) = self.connection(addr, host).await?;
                call(
                    &connection,
                    &Request::Outcome {
                        name: record.name.clone(),
                        epoch: record.epoch,
                    },
                )
                .await
            }
            .await;
            match answer {
                Ok(Response::Outcome { committed: true }) => {
                    let shared = self.clone();
                    let r = record.clone();
                    let started = tokio::task::spawn_blocking(move || shared.recover(&r)).await;
                    match started {
                        Ok(Ok(())) => {
                            tracing::info!(agent = %record.name, "migration confirmed after restart; serving")
                        }
                        Ok(Err(e)) => {
                            tracing::error!(agent = %record.name, "could not start a confirmed agent: {e}")
                        }
                        Err(e) => tracing::error!(agent = %record.name, "{e}"),
                    }
                }
                Ok(_) => {
                    tracing::info!(agent = %record.name, "migration was not committed; dropping the prepared copy");
                    let _ = self.agent_store.forget(&record.name);
                }
                Err(e) => tracing::warn!(
                    agent = %record.name,
                    "cannot ask the source about a prepared migration ({e}); keeping it on disk, not serving"
                ),
            }
        }
    }
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
