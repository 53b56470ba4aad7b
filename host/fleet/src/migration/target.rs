//! The target's side of a handoff: admit and prepare, keep the pre-copy,
//! import and write the final state, serve on the commit, and settle with
//! the source when the commit does not come (or after a restart).

use super::*;

impl Shared {
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
        let limit = self.config.limits.hosted_limit();
        if hosted >= limit as usize {
            return Err(Error::Conflict(format!(
                "this host holds its maximum of {limit} agents, prepared migrations included"
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
                    let started =
                        tokio::task::spawn_blocking(move || shared.recover(&r, true)).await;
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
