//! The fleet as this host sees it: its own report, its peers' reports and
//! connections, the heartbeat, the probes of quiet links, the component
//! sweep, and the periodic ALM check.

use super::*;
use crate::calibration::PROBE_BYTES;

impl Shared {
    pub(crate) fn report(&self) -> HostReport {
        let agents = lock(&self.agents)
            .iter()
            .map(|(name, slot)| AgentReport {
                name: name.clone(),
                digest: slot.digest,
                descriptor: slot.descriptor.clone(),
                state_bytes: slot.state_bytes.load(Ordering::Relaxed),
                uptime_s: slot.started.elapsed().as_secs_f64(),
                calls: slot.calls.load(Ordering::Relaxed),
                epoch: slot.epoch,
                status: match &*slot.gate.borrow() {
                    Gate::Open if slot.hibernating() => "hibernating",
                    Gate::Open => "serving",
                    Gate::Migrating => "migrating",
                    Gate::Held | Gate::Moved(_) => "held",
                }
                .to_owned(),
                processing: self.calibration.processing(name),
                wake_ms: match slot.last_wake_us.load(Ordering::Relaxed) {
                    0 => None,
                    us => Some(us as f64 / 1e3),
                },
            })
            .collect();
        let rtts: Vec<(HostName, f64)> = lock(&self.connections)
            .values()
            .map(|(connection, identity)| {
                (identity.name.clone(), connection.rtt().as_secs_f64() * 1e3)
            })
            .collect();
        let active = lock(&self.active_policy).clone();
        HostReport {
            name: self.name.clone(),
            addr: self.addr,
            site: self.config.labels.site.clone(),
            location: Location {
                lat: self.config.labels.lat,
                lon: self.config.labels.lon,
            },
            bandwidth_mbps: self.config.labels.bandwidth_mbps,
            max_agents: self.config.limits.hosted_limit(),
            status: lock(&self.status).clone(),
            agents,
            compiling: lock(&self.compiling).iter().copied().collect(),
            uptime_s: self.started.elapsed().as_secs_f64(),
            policy: active.name,
            policy_generation: self.policy.generation(),
            policy_plugins: active.plugins,
            model: Box::new(self.calibration.model(&rtts)),
        }
    }

    /// This host's own view first, then its peers.
    /// This host's report and those of the peers it can reach: the fleet
    /// as placement sees it.
    pub(crate) fn reachable_reports(&self) -> Vec<HostReport> {
        let mut hosts = vec![self.report()];
        hosts.extend(
            lock(&self.membership)
                .views(Instant::now())
                .into_iter()
                .filter(|v| v.reachable)
                .map(|v| v.report),
        );
        hosts
    }

    pub(crate) fn fleet_views(&self) -> Vec<crate::protocol::PeerView> {
        let mut views = vec![crate::protocol::PeerView {
            report: self.report(),
            reachable: true,
            last_seen_s: 0.0,
        }];
        views.extend(lock(&self.membership).views(Instant::now()));
        views
    }

    pub(crate) fn render_metrics(&self) -> String {
        let views = lock(&self.membership).views(Instant::now());
        let reachable = views.iter().filter(|v| v.reachable).count();
        let (agents, hibernating) = {
            let slots = lock(&self.agents);
            let asleep = slots.values().filter(|s| s.hibernating()).count();
            (slots.len(), asleep)
        };
        self.metrics.render(&crate::metrics::Gauges {
            agents,
            hibernating,
            peers_reachable: reachable,
            peers_known: views.len(),
            policy_generation: self.policy.generation(),
        })
    }

    /// Asks every reachable peer for its report now, instead of waiting for
    /// the next heartbeat (bounded: one second).
    pub(crate) async fn refresh_peers(self: &Arc<Self>) {
        let peers: Vec<(HostName, SocketAddr)> = lock(&self.membership)
            .views(Instant::now())
            .into_iter()
            .filter(|v| v.reachable)
            .map(|v| (v.report.name, v.report.addr))
            .collect();
        let mut asks = tokio::task::JoinSet::new();
        for (name, addr) in peers {
            let shared = self.clone();
            asks.spawn(async move {
                let asked = tokio::time::timeout(
                    Duration::from_secs(1),
                    shared.call_peer(addr, Some(&name), &Request::Status),
                )
                .await;
                if let Ok(Ok((Response::Status(report), identity))) = asked {
                    shared.heard_directly(&identity, report).await;
                }
            });
        }
        while asks.join_next().await.is_some() {}
    }

    /// Takes in a report a peer sent about itself, if it is about itself:
    /// a report counts only for the host its sender's certificate names.
    pub(crate) async fn heard_directly(&self, identity: &Identity, report: HostReport) {
        if identity.role != Role::Host || identity.name != report.name {
            tracing::warn!(%identity, claimed = %report.name, "ignoring a report for another host");
            return;
        }
        self.heard_from(report).await;
    }

    /// Takes in a report received directly from its host: a restarted host
    /// loses its cached connection (the old one is dead), stale copies of
    /// its agents are fenced off, and the membership view is refreshed.
    /// Callers have checked that the report's sender is the host it names.
    pub(crate) async fn heard_from(&self, report: HostReport) {
        let restarted = lock(&self.membership).restarted(&report);
        if restarted {
            lock(&self.peer_revocations).remove(&report.name);
            lock(&self.connections).remove(&report.addr);
        }
        self.fence(&report);
        lock(&self.membership).heard_from(report, Instant::now());
    }

    /// Sends `request` to the peer at `addr` on the cached connection; if
    /// the peer restarted since (a stateless reset: it never saw the
    /// request), once more on a fresh connection. With `expect`, the
    /// certificate at `addr` must name that host. Returns the answer and
    /// the identity that gave it.
    pub(crate) async fn call_peer(
        &self,
        addr: SocketAddr,
        expect: Option<&str>,
        request: &Request,
    ) -> Result<(Response, Identity)> {
        let (connection, identity) = self.connection(addr, expect).await?;
        match call(&connection, request).await {
            Err(Error::Reset) => {
                lock(&self.connections).remove(&addr);
                let (connection, identity) = self.connection(addr, expect).await?;
                Ok((call(&connection, request).await?, identity))
            }
            Err(e) => {
                // Whatever broke, the next request gets a fresh connection.
                if connection.close_reason().is_some() {
                    lock(&self.connections).remove(&addr);
                }
                Err(e)
            }
            Ok(answer) => Ok((answer, identity)),
        }
    }

    /// A cached connection to the peer at `addr`, dialling when needed.
    /// The dial happens outside every lock, so a dead peer stalls only the
    /// requests meant for it. With `expect`, the host certificate at `addr`
    /// must name that host: an address taken from a report is only a hint.
    pub(crate) async fn connection(
        &self,
        addr: SocketAddr,
        expect: Option<&str>,
    ) -> Result<(Connection, Identity)> {
        let cached = lock(&self.connections)
            .get(&addr)
            .filter(|(c, _)| c.close_reason().is_none())
            .cloned();
        let (connection, identity) = match cached {
            Some(found) => found,
            None => {
                let config = lock(&self.dial).clone();
                let dialled = connect_with(&self.endpoint, config, addr).await?;
                lock(&self.connections).insert(addr, dialled.clone());
                // A list that arrived while this handshake was finishing
                // found nothing to close; it is checked again once cached.
                if self.revokes_peer(&dialled.0) {
                    let mut connections = lock(&self.connections);
                    if connections
                        .get(&addr)
                        .is_some_and(|(c, _)| c.stable_id() == dialled.0.stable_id())
                    {
                        connections.remove(&addr);
                    }
                    drop(connections);
                    dialled.0.close(4u32.into(), b"certificate revoked");
                    return Err(Error::Identity(format!(
                        "{addr} presented a revoked certificate ({})",
                        dialled.1
                    )));
                }
                dialled
            }
        };
        if let Some(expected) = expect
            && identity.name != expected
        {
            return Err(Error::Forbidden(format!(
                "{addr} presented the certificate of {identity}, not of host {expected:?}"
            )));
        }
        Ok((connection, identity))
    }

    /// How long one frame from a peer may take (`[limits] frame_deadline_ms`).
    pub(crate) fn frame_deadline(&self) -> Duration {
        Duration::from_millis(self.config.limits.frame_deadline_ms)
    }

    /// The components garbage collection must keep: those of agents that
    /// run here, of migrations prepared here, of the active policy, of
    /// agents recorded on disk at start-up, and any being compiled.
    pub(crate) fn components_in_use(&self) -> HashSet<Digest> {
        let mut keep: HashSet<Digest> = lock(&self.agents).values().map(|s| s.digest).collect();
        keep.extend(lock(&self.pending).values().map(|p| p.digest));
        keep.extend(lock(&self.active_policy).digests());
        keep.extend(lock(&self.recorded).iter().copied());
        keep.extend(lock(&self.compiling).iter().copied());
        keep
    }

    /// Removes stored components no agent uses that arrived longer ago than
    /// `[limits] component_grace_ms`. Failures are logged: a sweep that
    /// could not run leaves the store as it was.
    pub(crate) async fn collect_components(&self) {
        *lock(&self.collected_at) = Instant::now();
        let keep = self.components_in_use();
        let grace = Duration::from_millis(self.config.limits.component_grace_ms);
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || store.collect(&keep, grace)).await {
            Ok(Ok(collected)) if !collected.removed.is_empty() => {
                tracing::info!(
                    removed = collected.removed.len(),
                    freed = collected.freed,
                    "collected components no agent uses"
                )
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!("collecting unused components: {e}"),
            Err(e) => tracing::warn!("collecting unused components: {e}"),
        }
    }

    pub(crate) async fn heartbeat(self: &Arc<Self>) {
        self.reload_credentials();
        // Refresh our own telemetry first.
        let shared = self.clone();
        if let Ok(Ok(status)) =
            tokio::task::spawn_blocking(move || lock(&shared.sampler).read()).await
        {
            *lock(&self.status) = status;
        }
        let shared = self.clone();
        let _ = tokio::task::spawn_blocking(move || {
            shared.snapshot_all(false);
            shared.hibernate_idle();
        })
        .await;
        self.expire_prepared();
        let due = lock(&self.collected_at).elapsed() >= COLLECT_EVERY;
        if due {
            self.collect_components().await;
        }
        // Off the heartbeat's path: a dead source must not delay it.
        let shared = self.clone();
        tokio::spawn(async move { shared.settle_pending().await });
        let report = self.report();
        // Configured seeds are dialled as whoever answers there; a peer we
        // learned of must answer with the certificate of the name it has.
        let mut targets: HashMap<String, Option<HostName>> = self
            .config
            .peers
            .iter()
            .map(|p| (p.clone(), None))
            .collect();
        for (addr, name) in lock(&self.membership).addresses() {
            targets.insert(addr.to_string(), Some(name));
        }
        targets.remove(&self.addr.to_string());
        let mut sends = tokio::task::JoinSet::new();
        for (target, expect) in targets {
            let shared = self.clone();
            let report = report.clone();
            sends.spawn(async move {
                let result = async {
                    let addr = tokio::net::lookup_host(&target)
                        .await
                        .map_err(|e| Error::Connect(format!("{target}: {e}")))?
                        .next()
                        .ok_or_else(|| Error::Connect(format!("{target}: no address")))?;
                    shared
                        .call_peer(
                            addr,
                            expect.as_deref(),
                            &Request::Heartbeat(Box::new(report)),
                        )
                        .await
                        .map(|(answer, identity)| (answer, identity, addr))
                };
                let timeout = Duration::from_millis(shared.config.heartbeat_ms.max(500));
                match tokio::time::timeout(timeout, result).await {
                    Ok(Ok((Response::Fleet(views), identity, addr))) => {
                        let _ = tokio::time::timeout(
                            timeout,
                            shared.gossip_revocations(addr, &identity),
                        )
                        .await;
                        let mut views = views.into_iter();
                        // The first view is the answering host's own report.
                        if let Some(own) = views.next() {
                            shared.heard_directly(&identity, own.report).await;
                        }
                        let now = Instant::now();
                        let mut membership = lock(&shared.membership);
                        for view in views {
                            membership.learned(view, now);
                        }
                    }
                    Ok(Ok(_)) => tracing::debug!(%target, "odd answer to a heartbeat"),
                    Ok(Err(e)) => tracing::debug!(%target, "heartbeat failed: {e}"),
                    Err(_) => tracing::debug!(%target, "heartbeat timed out"),
                }
            });
        }
        while sends.join_next().await.is_some() {}
        self.probe_quiet_links();
    }

    /// Probes, off the heartbeat's path, each reachable peer whose link
    /// nothing has measured for `probe_ms`: [`PROBE_BYTES`] of padding on
    /// the connection there, timed to the answer, count as a send.
    fn probe_quiet_links(self: &Arc<Self>) {
        let every = Duration::from_millis(self.config.probe_ms);
        let now = Instant::now();
        let due: Vec<(HostName, SocketAddr)> = lock(&self.membership)
            .views(now)
            .into_iter()
            .filter(|v| v.reachable)
            .map(|v| (v.report.name, v.report.addr))
            .filter(|(name, _)| self.calibration.probe_due(name, now, every))
            .collect();
        for (name, addr) in due {
            let shared = self.clone();
            tokio::spawn(async move {
                if let Err(e) = shared.probe(&name, addr).await {
                    tracing::debug!(peer = %name, "link probe failed: {e}");
                }
            });
        }
    }

    async fn probe(&self, peer: &HostName, addr: SocketAddr) -> Result<()> {
        let (connection, _) = self.connection(addr, Some(peer.as_str())).await?;
        let request = Request::Probe {
            padding: vec![0; PROBE_BYTES],
        };
        let rtt_ms = connection.rtt().as_secs_f64() * 1e3;
        let started = Instant::now();
        let answer = tokio::time::timeout(PROBE_DEADLINE, call(&connection, &request))
            .await
            .map_err(|_| Error::Connect(format!("no answer within {PROBE_DEADLINE:?}")))??;
        match answer {
            Response::Probed { bytes } if bytes == PROBE_BYTES as u64 => {
                self.calibration.record_send(
                    peer,
                    PROBE_BYTES as f64,
                    started.elapsed().as_secs_f64() * 1e3,
                    rtt_ms,
                );
                Ok(())
            }
            other => Err(Error::Protocol(format!(
                "odd answer to a probe: {:?}",
                crate::client::unexpected(&other)
            ))),
        }
    }
}

/// How long a link probe may take before it is given up (and not counted).
const PROBE_DEADLINE: Duration = Duration::from_secs(10);

/// ALM's periodic check: agents whose users moved or whose host runs short
/// are reconsidered even when nobody reports anything.
pub(crate) async fn alm_loop(shared: Weak<Shared>) {
    loop {
        let Some(s) = shared.upgrade() else { return };
        let period = Duration::from_millis(s.config.alm.check_ms);
        drop(s);
        tokio::time::sleep(period).await;
        let Some(s) = shared.upgrade() else { return };
        if let Err(e) = s.follow("periodic", None).await {
            tracing::warn!("periodic ALM check failed: {e}");
        }
    }
}

pub(crate) async fn heartbeat_loop(shared: Weak<Shared>) {
    loop {
        let Some(s) = shared.upgrade() else { return };
        let period = Duration::from_millis(s.config.heartbeat_ms);
        s.heartbeat().await;
        drop(s);
        tokio::time::sleep(period).await;
    }
}
