//! Agents on this host: uploads, deployment, fencing, instances made and
//! revived, recovery after a restart, snapshots and release.

use super::*;

impl Shared {
    pub(crate) async fn receive_upload(
        &self,
        digest: Digest,
        size: u64,
        recv: &mut RecvStream,
    ) -> Result<Response> {
        if size > MAX_COMPONENT_BYTES {
            return Err(Error::Protocol(format!(
                "component of {size} bytes is over the {MAX_COMPONENT_BYTES}-byte limit"
            )));
        }
        if self.store.has(&digest) {
            return Ok(Response::Uploaded { received: 0 });
        }
        let _slot = self.uploads.clone().try_acquire_owned().map_err(|_| {
            Error::Conflict(format!(
                "{MAX_CONCURRENT_UPLOADS} uploads are in progress here; try again shortly"
            ))
        })?;
        if !self.store.fits(size) {
            self.collect_components().await;
        }
        let mut incoming = self.store.begin(digest, size).await?;
        let deadline = self.frame_deadline();
        while incoming.remaining() > 0 {
            let chunk = read_frame_within(recv, CHUNK_BYTES, deadline)
                .await?
                .ok_or_else(|| Error::Protocol("upload ended early".into()))?;
            if chunk.is_empty() {
                return Err(Error::Protocol("empty upload chunk".into()));
            }
            incoming.write(&chunk).await?;
        }
        if read_frame_within(recv, CHUNK_BYTES, deadline)
            .await?
            .is_some()
        {
            return Err(Error::Protocol("upload sent more than it announced".into()));
        }
        let received = incoming.finish().await?;
        self.metrics
            .upload_bytes
            .fetch_add(received, Ordering::Relaxed);
        tracing::info!(%digest, bytes = received, "component stored");
        Ok(Response::Uploaded { received })
    }

    pub(crate) async fn deploy(
        self: &Arc<Self>,
        name: AgentName,
        digest: Digest,
        config: Vec<(String, String)>,
    ) -> Result<Response> {
        Mode::of(&config)?;
        {
            let agents = lock(&self.agents);
            if agents.contains_key(&name) {
                return Err(Error::Conflict(format!(
                    "an agent named {name:?} already runs here"
                )));
            }
            let limit = self.config.limits.hosted_limit();
            if agents.len() >= limit as usize {
                return Err(Error::Conflict(format!(
                    "this host holds its maximum of {limit} agents"
                )));
            }
        }
        let shared = self.clone();
        tokio::task::spawn_blocking(move || shared.make_room(None))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
        if let Some(owner) = lock(&self.membership).owner_of(&name, Instant::now()) {
            return Err(Error::Conflict(format!(
                "an agent named {name:?} already runs on {}",
                owner.name
            )));
        }
        if !self.store.has(&digest) {
            return Err(Error::NotFound(format!(
                "component {digest} is not stored here; upload it first"
            )));
        }
        let shared = self.clone();
        let agent_name = name.clone();
        let init_config = config.clone();
        let (component, instance) = tokio::task::spawn_blocking(move || -> Result<_> {
            let component = shared.load_component(&digest)?;
            let instance = shared.start_instance(&component, &agent_name, &init_config, None)?;
            Ok((component, instance))
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
        let descriptor = instance.descriptor().clone();
        if lock(&self.agents).contains_key(&name) {
            return Err(Error::Conflict(format!(
                "an agent named {name:?} already runs here"
            )));
        }
        self.agent_store.put_record(&AgentRecord {
            name: name.clone(),
            digest,
            config: config.clone(),
            epoch: 1,
            standing: Standing::Active,
        })?;
        // A new agent of a name used before (released, or moved away and
        // back) starts with no user: an old attachment would have ALM move
        // it after a user it never had.
        lock(&self.attachments).remove(&name);
        self.install(&name, instance, digest, config, 1, None);
        tracing::info!(agent = %name, %digest, "deployed");
        Ok(Response::Deployed {
            descriptor,
            load_ms: component.load_time().as_secs_f64() * 1e3,
            cache_hit: component.cache_outcome() == edgehost_runtime::CacheOutcome::Hit,
        })
    }

    /// Fencing: an agent a peer serves at a higher epoch than the copy here
    /// moved on; the copy here must never serve again.
    pub(crate) fn fence(&self, report: &HostReport) {
        for agent in &report.agents {
            let stale = lock(&self.agents)
                .get(&agent.name)
                .is_some_and(|slot| slot.epoch < agent.epoch);
            if !stale {
                continue;
            }
            let tombstone = Tombstone {
                name: agent.name.clone(),
                epoch: agent.epoch,
                host: report.name.clone(),
                addr: report.addr.to_string(),
            };
            if let Err(e) = self.agent_store.hand_off(&tombstone) {
                tracing::error!(agent = %agent.name, "could not record a fenced agent: {e}");
            }
            if let Some(slot) = lock(&self.agents).remove(&agent.name) {
                slot.gate.send_replace(Gate::Moved(tombstone.clone()));
            }
            lock(&self.moved).insert(agent.name.clone(), tombstone);
            tracing::warn!(agent = %agent.name, owner = %report.name, epoch = agent.epoch, "stale copy fenced off");
        }
    }

    /// Compiles a stored component or loads its cached artifact (blocking).
    pub(crate) fn load_component(&self, digest: &Digest) -> Result<AgentComponent> {
        lock(&self.compiling).insert(*digest);
        // An agent that declares another architecture is refused before
        // anything runs: on deploy, on a migration's prepare, on restart.
        let result = self
            .store
            .read(digest)
            .and_then(|bytes| Ok(self.runtime.load_native(&bytes)?));
        lock(&self.compiling).remove(digest);
        let component = result?;
        let size = component.info().size as f64;
        let ms = component.load_time().as_secs_f64() * 1e3;
        if component.cache_outcome() == edgehost_runtime::CacheOutcome::Miss {
            self.metrics.compiles.fetch_add(1, Ordering::Relaxed);
            self.calibration.record(Operation::Compile, None, size, ms);
        } else {
            self.calibration
                .record(Operation::CacheLoad, None, size, ms);
        }
        Ok(component)
    }

    /// A fresh, initialised instance, with `state` imported when given
    /// (blocking).
    pub(crate) fn start_instance(
        self: &Arc<Self>,
        component: &AgentComponent,
        name: &str,
        config: &[(String, String)],
        state: Option<&[u8]>,
    ) -> Result<AgentInstance> {
        let mut services = Services {
            router: Arc::new(FleetRouter {
                shared: Arc::downgrade(self),
            }),
            ..Services::default()
        };
        if let Some(llm) = &self.llm {
            services.llm = llm.clone();
        }
        let started = Instant::now();
        let mut instance = self.runtime.instantiate(component, name, services)?;
        instance.init(&crate::durable::agent_entries(config))?;
        let digest = component.digest();
        self.calibration.record(
            Operation::Start,
            Some(&digest),
            component.info().size as f64,
            started.elapsed().as_secs_f64() * 1e3,
        );
        if let Some(state) = state {
            let started = Instant::now();
            instance.import_state(state)?;
            self.calibration.record(
                Operation::Import,
                Some(&digest),
                state.len() as f64,
                started.elapsed().as_secs_f64() * 1e3,
            );
        }
        Ok(instance)
    }

    /// H6: replaces the poisoned instance of `slot` with a fresh one that
    /// holds its last durable state, once the backoff since the last
    /// restart has passed (blocking; the caller holds the instance).
    pub(crate) fn revive(
        self: &Arc<Self>,
        slot: &AgentSlot,
        instance: &mut AgentInstance,
    ) -> Result<()> {
        let reason = instance.poisoned().unwrap_or("failed").to_owned();
        let mut restarts = lock(&slot.restarts);
        let now = Instant::now();
        if now > restarts.1 + 2 * MAX_RESTART_BACKOFF {
            restarts.0 = 0;
        }
        if now < restarts.1 {
            return Err(Error::Agent(format!(
                "{} stopped ({reason}); restarting it from its last durable state in {} ms",
                slot.name,
                (restarts.1 - now).as_millis().max(1)
            )));
        }
        let state = self.agent_store.state(&slot.name)?;
        let component = self.load_component(&slot.digest)?;
        let fresh = self.start_instance(&component, &slot.name, &slot.config, state.as_deref())?;
        *instance = fresh;
        slot.durability.reset(state);
        let backoff = RESTART_BACKOFF
            .saturating_mul(1u32 << restarts.0.min(16))
            .min(MAX_RESTART_BACKOFF);
        *restarts = (restarts.0.saturating_add(1), now + backoff);
        tracing::warn!(agent = %slot.name, restarts = restarts.0, "restarted after: {reason}");
        Ok(())
    }

    /// Wakes the agent of `slot` if it hibernates: a fresh instance from
    /// its compiled component, with its durable state imported (blocking;
    /// the caller holds the instance). The time it took is the slot's
    /// last wake and counts in the metrics.
    pub(crate) fn awaken(
        self: &Arc<Self>,
        slot: &AgentSlot,
        instance: &mut Option<AgentInstance>,
    ) -> Result<()> {
        if instance.is_some() {
            return Ok(());
        }
        let started = Instant::now();
        // A call is never refused for want of room: past `max_agents`, it
        // wakes its agent anyway, and the next deploy or wake makes room.
        if let Err(e) = self.make_room(Some(slot)) {
            tracing::debug!(agent = %slot.name, "waking beyond max_agents: {e}");
        }
        let state = self.agent_store.state(&slot.name)?;
        let component = self.load_component(&slot.digest)?;
        let fresh = self.start_instance(&component, &slot.name, &slot.config, state.as_deref())?;
        *instance = Some(fresh);
        slot.durability.reset(state);
        let micros = u64::try_from(started.elapsed().as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        slot.last_wake_us.store(micros, Ordering::Relaxed);
        self.metrics.wakes.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .wake_micros
            .fetch_add(micros, Ordering::Relaxed);
        tracing::debug!(agent = %slot.name, micros, "woke from hibernation");
        Ok(())
    }

    /// Makes room for one more awake agent besides `waking` (whose
    /// instance its caller holds): when `[limits] max_agents` are awake,
    /// the ones called least recently that nothing holds hibernate now
    /// (blocking). Refused when hibernation is off or every awake agent is
    /// busy.
    pub(crate) fn make_room(&self, waking: Option<&AgentSlot>) -> Result<()> {
        let limit = self.config.limits.max_agents as usize;
        let mut awake: Vec<(Instant, Arc<AgentSlot>)> = lock(&self.agents)
            .values()
            .filter(|s| waking.is_none_or(|w| !std::ptr::eq(s.as_ref(), w)))
            .filter(|s| !s.hibernating())
            .map(|s| (*lock(&s.last_call), s.clone()))
            .collect();
        if awake.len() < limit {
            return Ok(());
        }
        if self.config.limits.hibernate_after_ms == 0 {
            return Err(Error::Conflict(format!(
                "this host runs its maximum of {limit} agents"
            )));
        }
        awake.sort_by_key(|(at, _)| *at);
        let mut needed = awake.len() + 1 - limit;
        for (_, slot) in awake {
            if needed == 0 {
                break;
            }
            if slot.hibernate_if_idle(Duration::ZERO, &self.agent_store, &self.metrics)? {
                tracing::debug!(agent = %slot.name, "hibernating to make room");
                needed -= 1;
            }
        }
        if needed == 0 {
            Ok(())
        } else {
            Err(Error::Conflict(format!(
                "{limit} agents are awake here and busy: none could hibernate to make room"
            )))
        }
    }

    /// Hibernates every agent that has had no call for
    /// `[limits] hibernate_after_ms` (blocking).
    pub(crate) fn hibernate_idle(&self) {
        let idle = Duration::from_millis(self.config.limits.hibernate_after_ms);
        if idle.is_zero() {
            return;
        }
        let slots: Vec<Arc<AgentSlot>> = lock(&self.agents).values().cloned().collect();
        for slot in slots {
            match slot.hibernate_if_idle(idle, &self.agent_store, &self.metrics) {
                Ok(true) => tracing::debug!(agent = %slot.name, "hibernating"),
                Ok(false) => {}
                Err(e) => tracing::warn!(agent = %slot.name, "could not hibernate: {e}"),
            }
        }
    }

    /// Makes `instance` the serving agent `name` at `epoch`; `on_disk` is
    /// its state as stored, when known.
    pub(crate) fn install(
        &self,
        name: &AgentName,
        instance: AgentInstance,
        digest: Digest,
        config: Vec<(String, String)>,
        epoch: u64,
        on_disk: Option<Vec<u8>>,
    ) {
        let declared = (
            instance.descriptor().clone(),
            instance.requires_arch().map(str::to_owned),
        );
        self.install_slot(
            name,
            (Some(instance), declared),
            digest,
            config,
            epoch,
            on_disk,
        );
    }

    /// [`Shared::install`] of an agent awake (with its instance) or
    /// hibernating (with what its component declares).
    fn install_slot(
        &self,
        name: &AgentName,
        (instance, (descriptor, requires_arch)): (
            Option<AgentInstance>,
            (Descriptor, Option<String>),
        ),
        digest: Digest,
        config: Vec<(String, String)>,
        epoch: u64,
        on_disk: Option<Vec<u8>>,
    ) {
        let state_bytes = on_disk.as_ref().map_or(0, |s| s.len() as u64);
        let slot = Arc::new(AgentSlot {
            name: name.to_string(),
            durability: Durability::new(on_disk),
            // Checked on deploy; a copy from a peer that names a mode this
            // host does not know is made durable, the safe side.
            mode: Mode::of(&config).unwrap_or_default(),
            restarts: Mutex::new((0, Instant::now())),
            descriptor,
            requires_arch,
            instance: Mutex::new(instance),
            last_call: Mutex::new(Instant::now()),
            last_wake_us: AtomicU64::new(0),
            digest,
            config,
            epoch,
            started: Instant::now(),
            calls: AtomicU64::new(0),
            snapshot_calls: AtomicU64::new(0),
            state_bytes: AtomicU64::new(state_bytes),
            held_calls: AtomicU64::new(0),
            holding: AtomicU64::new(0),
            gate: watch::Sender::new(Gate::Open),
            calibration: self.calibration.clone(),
        });
        lock(&self.agents).insert(name.clone(), slot);
    }

    /// Starts a recorded agent with its last committed state (blocking):
    /// awake, or, when `awake` is false, hibernating, its component only
    /// loaded and asked what it declares; its first call wakes it.
    pub(crate) fn recover(self: &Arc<Self>, record: &AgentRecord, awake: bool) -> Result<()> {
        let component = self.load_component(&record.digest)?;
        let state = self.agent_store.state(&record.name)?;
        let (instance, declared) = if awake {
            let instance =
                self.start_instance(&component, &record.name, &record.config, state.as_deref())?;
            let declared = (
                instance.descriptor().clone(),
                instance.requires_arch().map(str::to_owned),
            );
            (Some(instance), declared)
        } else {
            // Instantiated, not initialised, and dropped: what the
            // component declares is all a hibernating slot needs.
            let described =
                self.runtime
                    .instantiate(&component, &record.name, Services::default())?;
            let declared = (
                described.descriptor().clone(),
                described.requires_arch().map(str::to_owned),
            );
            (None, declared)
        };
        if record.standing != Standing::Active {
            self.agent_store.put_record(&AgentRecord {
                standing: Standing::Active,
                ..record.clone()
            })?;
        }
        self.install_slot(
            &record.name,
            (instance, declared),
            record.digest,
            record.config.clone(),
            record.epoch,
            state,
        );
        Ok(())
    }

    /// Writes the state of every agent that answered calls since its last
    /// snapshot (all of them when `all`) to disk (blocking).
    pub(crate) fn snapshot_all(&self, all: bool) {
        let slots: Vec<(AgentName, Arc<AgentSlot>)> = lock(&self.agents)
            .iter()
            .map(|(n, s)| (n.clone(), s.clone()))
            .collect();
        for (name, slot) in slots {
            if !matches!(*slot.gate.borrow(), Gate::Open) {
                continue;
            }
            let calls = slot.calls.load(Ordering::Relaxed);
            if !all && calls == slot.snapshot_calls.load(Ordering::Relaxed) {
                continue;
            }
            // Through the same group commit as the calls, so a snapshot
            // never writes a state older than one a call wrote. A
            // hibernating agent's state is on disk already.
            let mut instance = lock(&slot.instance);
            let Some(awake) = instance.as_mut() else {
                continue;
            };
            let staged = slot.stage(awake);
            drop(instance);
            match staged.and_then(|seq| slot.make_durable(seq, &self.agent_store, &self.metrics)) {
                Ok(()) => slot.snapshot_calls.store(calls, Ordering::Relaxed),
                Err(e) => tracing::warn!(agent = %name, "could not write a snapshot: {e}"),
            }
        }
    }

    pub(crate) fn release(&self, name: &str) -> Result<Response> {
        match lock(&self.agents).remove(name) {
            Some(_) => {
                self.agent_store.forget(name)?;
                self.calibration.forget_agent(name);
                lock(&self.attachments).remove(name);
                tracing::info!(agent = %name, "released");
                Ok(Response::Released)
            }
            None => Err(Error::NotFound(format!(
                "no agent named {name:?} runs here"
            ))),
        }
    }
}
