//! The source's side of a handoff: prepare the target, pre-copy, hold,
//! transfer the delta, write the commit point, or abort; and its answer to
//! a target that asks how a handoff ended.

use super::*;

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
    pub(crate) async fn migrate_elsewhere(
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

    pub(crate) async fn handoff(
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
        let started = Instant::now();
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
        let prepare = Request::Prepare {
            name: name.clone(),
            digest: slot.digest,
            config: slot.config.clone(),
            epoch,
            source: self.addr,
        };
        // Prepare first: a target that lacks the component says so, and
        // only then does it travel. The usual case, a target that has it,
        // costs one round trip instead of two.
        let mut prepared = step(&connection, &prepare, PREPARE_STEP).await;
        if let Err(Error::Remote {
            kind: ErrorKind::NotFound,
            ..
        }) = prepared
        {
            let bytes = self.store.read(&slot.digest)?;
            let sending = upload(&connection, slot.digest, &bytes, |_| {});
            component_bytes_sent = tokio::time::timeout(UPLOAD_STEP, sending)
                .await
                .map_err(|_| Error::Connect(format!("the upload took over {UPLOAD_STEP:?}")))??;
            prepared = step(&connection, &prepare, PREPARE_STEP).await;
        }
        let (initiation_ms, compile_ms, cache_hit, target_model) = match prepared {
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
            Err(refusal @ Error::Remote { .. }) => {
                self.abort(&connection, name, epoch).await;
                return Err(refusal);
            }
            Err(e) => {
                // A target that stopped answering: its connection times
                // out, or the prepare's deadline passes.
                self.abort(&connection, name, epoch).await;
                return Err(Error::Connect(format!(
                    "{to}: unreachable while preparing, migration aborted, {name:?} still serves here ({e})"
                )));
            }
        };

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

        // The state, exported while the agent still serves.
        let moving = Instant::now();
        let base = match self.export(slot, Operation::Export).await {
            Ok((state, _)) => state,
            Err(e) => {
                self.abort(&connection, name, epoch).await;
                return Err(e);
            }
        };
        // A state the link carries within a round trip crosses once, with
        // the agent held ([`stop_and_copy`]). A larger one crosses while the
        // agent serves, and only what changed meanwhile crosses while it is
        // held.
        let crossing_ms = crossing_ms(
            self.calibration.send(to).as_ref(),
            base.len() as f64,
            declared_mbps,
        );
        let stop_and_copy = stop_and_copy(crossing_ms, connection.rtt().as_secs_f64() * 1e3);
        let (base, precopy_len, precopy_ms) = if stop_and_copy {
            (Vec::new(), 0, 0.0)
        } else {
            self.precopy(&connection, name, epoch, to, base).await?
        };

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

        // Transfer: only the blocks that changed since the pre-copy, or the
        // whole state when there was none.
        let transfer = encode(&Request::Transfer {
            name: name.clone(),
            epoch,
            state_digest: Digest::of(&state),
            len: state.len() as u64,
            blocks: delta::diff(&base, &state),
        })?;
        // The transfer's deadline follows the pace the pre-copy measured on
        // this very link, or the link's estimate: four times the expected
        // time for its size, and never under the quick step's.
        let expected = if stop_and_copy {
            Duration::from_secs_f64((crossing_ms / 1e3).max(0.0)) + connection.rtt()
        } else {
            Duration::from_secs_f64(
                precopy_ms / 1e3 * transfer.len() as f64 / precopy_len.max(1) as f64,
            )
        };
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
        self.calibration.record_send(
            to,
            transfer.len() as f64,
            delta_ms,
            connection.rtt().as_secs_f64() * 1e3,
        );
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
        let move_ms = moving.elapsed().as_secs_f64() * 1e3;
        lock(&self.moved).insert(name.clone(), tombstone.clone());
        // Where its user is travels with the decisions of its new host.
        lock(&self.attachments).remove(name);
        let commit = Request::Commit {
            name: name.clone(),
            epoch,
        };
        // The slot stays listed until the target has the commit: a call
        // arriving meanwhile waits behind the held gate with the others,
        // instead of reaching a target that does not serve the agent yet
        // and bouncing back.
        let committed = step(&connection, &commit, QUICK_STEP).await;
        let handoff_ms = started.elapsed().as_secs_f64() * 1e3;
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
        let precopy_bytes = if stop_and_copy {
            0
        } else {
            precopy_len as u64 + 4
        };
        let wire_bytes = precopy_bytes + delta_bytes;
        let state_bytes = state.len() as u64;
        if let Err(e) = committed {
            // The target holds the state durably and will ask us after it
            // restarts; the agent is not lost, only unavailable meanwhile.
            tracing::warn!(agent = %name, target = %to, "commit not acknowledged: {e}");
        }
        tracing::info!(agent = %name, target = %to, epoch, downtime_ms = downtime.as_secs_f64() * 1e3, "migrated");

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
            stop_and_copy,
            move_ms,
            handoff_ms,
            precopy_ms,
            target_compile_ms: compile_ms,
            target_cache_hit: cache_hit,
        })
    }

    /// Pre-copy: the whole `base` crosses while the agent still serves.
    /// Returns the base, the encoded message's length and how long it
    /// took to cross and be acknowledged; aborts the handoff on failure.
    async fn precopy(
        &self,
        connection: &quinn::Connection,
        name: &AgentName,
        epoch: u64,
        to: &HostName,
        base: Vec<u8>,
    ) -> Result<(Vec<u8>, usize, f64)> {
        // Encoded once: what is sent is what is counted.
        let precopy = encode(&Request::Precopy {
            name: name.clone(),
            epoch,
            state_digest: Digest::of(&base),
            state: base.clone(),
        })?;
        let sent = Instant::now();
        match step_encoded(connection, &precopy, TRANSFER_STEP).await {
            Ok(Response::Precopied) => {}
            Ok(other) => {
                self.abort(connection, name, epoch).await;
                return Err(unexpected(&other));
            }
            Err(e) => {
                self.abort(connection, name, epoch).await;
                return Err(Error::Connect(format!(
                    "pre-copy of the state failed, migration aborted, {name:?} still serves here: {e}"
                )));
            }
        }
        let precopy_ms = sent.elapsed().as_secs_f64() * 1e3;
        self.calibration.record_send(
            to,
            precopy.len() as f64,
            precopy_ms,
            connection.rtt().as_secs_f64() * 1e3,
        );
        Ok((base, precopy.len(), precopy_ms))
    }

    /// `export-state` of the agent in `slot`, with the time it took,
    /// recorded as `operation`.
    pub(crate) async fn export(
        &self,
        slot: &Arc<crate::host::AgentSlot>,
        operation: Operation,
    ) -> Result<(Vec<u8>, Duration)> {
        let slot = slot.clone();
        let store = self.agent_store.clone();
        tokio::task::spawn_blocking(move || {
            let start = Instant::now();
            let mut instance = lock(&slot.instance);
            // A hibernating agent moves as it is: its state is the one on
            // disk, and it is not woken to be exported.
            let Some(instance) = instance.as_mut() else {
                return store
                    .state(&slot.name)
                    .map(|state| (state.unwrap_or_default(), start.elapsed()))
                    .map_err(|e| {
                        Error::Internal(format!(
                            "reading the hibernating agent's state failed, migration aborted: {e}"
                        ))
                    });
            };
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
                .map_err(|e| Error::Agent(format!("export-state failed, migration aborted: {e}")))
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
    }

    pub(crate) async fn abort(&self, connection: &quinn::Connection, name: &AgentName, epoch: u64) {
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
}
