//! The daemon behind `edgehost serve`: accepts QUIC connections from clients
//! and peers, runs agents, exchanges reports, routes calls.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use edgehost_advisor::{AdvisorConfig, ChatClient, ChatMessage, LlmRefiner};
use edgehost_runtime::{
    AgentComponent, AgentInstance, Completion, Descriptor, Digest, HostError, Limits, Llm,
    PolicyLimits, PolicyRuntime, PolicyRuntimeBuilder, PolicySlot, Router, Runtime, RuntimeBuilder,
    Services,
};
use edgehost_telemetry::{Sampler, ServerStatus};
use quinn::{Connection, Endpoint, RecvStream, SendStream};
use tokio::sync::watch;

use crate::calibration::{Calibration, Operation};
use crate::client::{call, connect_with};
use crate::config::HostConfig;
use crate::durable::Durability;
use crate::identity::{Credentials, Identity, Role};
use crate::membership::Membership;
use crate::metrics::Metrics;
use crate::persist::{AgentRecord, AgentStore, Standing, Tombstone};
use crate::protocol::{
    AgentName, AgentReport, CHUNK_BYTES, ErrorKind, HostName, HostReport, Location, MAX_BODY_BYTES,
    MAX_COMPONENT_BYTES, MAX_MESSAGE_BYTES, PolicyPlugins, Request, Response, authorize, decode,
    encode, read_frame_within, write_frame,
};
use crate::revocation::{HOST_LIST_FILE, Offered, Revocations};
pub(crate) use crate::slot::{AgentSlot, Gate, Pending};
use crate::slot::{MAX_RESTART_BACKOFF, RESTART_BACKOFF, Waiting};
use crate::store::ComponentStore;
use crate::sync::lock;
use crate::tls::{bind, host_client_config, host_server_config, peer_certificate, peer_identity};
use crate::{Error, Result};

/// Forwarding an invocation more often than this means a routing loop.
const MAX_HOPS: u8 = 2;

/// Connections one identity may hold open to a host at once. A tool opens
/// one per command and a peer host one; the rest is a peer hoarding them.
pub const MAX_CONNECTIONS_PER_PEER: usize = 32;
/// Uploads a host receives at once: each holds a temporary file and a
/// stream until its last chunk arrives.
pub const MAX_CONCURRENT_UPLOADS: usize = 8;
/// How often the component store is swept for components no agent uses,
/// besides at start-up and when an upload does not fit: a directory
/// listing, cheap next to the heartbeat it rides on.
const COLLECT_EVERY: Duration = Duration::from_secs(60);

pub(crate) struct Shared {
    pub(crate) name: HostName,
    pub(crate) addr: SocketAddr,
    pub(crate) config: HostConfig,
    pub(crate) endpoint: Endpoint,
    pub(crate) runtime: Runtime,
    pub(crate) store: ComponentStore,
    pub(crate) agents: Mutex<HashMap<AgentName, Arc<AgentSlot>>>,
    pub(crate) pending: Mutex<HashMap<AgentName, Pending>>,
    /// Migrations admitted but still instantiating, and their sources:
    /// counted with `pending` against the bounds on prepared migrations.
    /// Locked after `pending` when both are.
    pub(crate) preparing: Mutex<HashMap<AgentName, HostName>>,
    /// Agents handed off to other hosts: where calls for them go now.
    pub(crate) moved: Mutex<HashMap<AgentName, Tombstone>>,
    pub(crate) agent_store: AgentStore,
    /// Where each agent's user is attached, as clients last reported.
    pub(crate) attachments: Mutex<HashMap<AgentName, HostName>>,
    /// ALM decisions, newest last.
    pub(crate) events: Mutex<std::collections::VecDeque<crate::protocol::Event>>,
    /// Committed migrations away from this host, newest last.
    pub(crate) migrations: Mutex<std::collections::VecDeque<crate::protocol::RecentMigration>>,
    pub(crate) membership: Mutex<Membership>,
    /// Open connections to peers, with the identity each one's
    /// certificate proved. Never held across a dial (H8).
    pub(crate) connections: Mutex<HashMap<SocketAddr, (Connection, Identity)>>,
    pub(crate) status: Mutex<ServerStatus>,
    pub(crate) sampler: Mutex<Sampler>,
    pub(crate) compiling: Mutex<HashSet<Digest>>,
    pub(crate) metrics: Metrics,
    /// The policy placement decisions use; swapped whole, read once per decision.
    pub(crate) policy: PolicySlot,
    /// What the active policy is made of; locked across a swap, so swaps
    /// are one at a time.
    pub(crate) active_policy: Mutex<crate::policy_swap::ActivePolicy>,
    pub(crate) policy_runtime: PolicyRuntime,
    pub(crate) llm: Option<Arc<HostLlm>>,
    pub(crate) refiner: Option<Arc<LlmRefiner>>,
    pub(crate) started: Instant,
    pub(crate) handle: tokio::runtime::Handle,
    /// Open incoming connections per identity ([`MAX_CONNECTIONS_PER_PEER`]).
    pub(crate) incoming: Mutex<HashMap<Identity, usize>>,
    /// Uploads in progress ([`MAX_CONCURRENT_UPLOADS`]).
    pub(crate) uploads: Arc<tokio::sync::Semaphore>,
    /// The revocation list this host holds; its TLS verifiers read it.
    pub(crate) revocations: Arc<Revocations>,
    /// What this host dials peers with: rebuilt when its certificate is
    /// rotated, so it is taken for each dial rather than fixed at bind.
    pub(crate) dial: Mutex<quinn::ClientConfig>,
    /// Modification times of the certificate and key in use.
    pub(crate) credential_stamp: Mutex<Option<CredentialStamp>>,
    /// The revocation list number each peer (by name) last said it holds.
    pub(crate) peer_revocations: Mutex<HashMap<HostName, u64>>,
    /// The components of the agents recorded on disk when the host
    /// started, kept by garbage collection until the next start: a prepared
    /// migration still to settle, or an agent that could not be recovered,
    /// needs its component when it comes back.
    pub(crate) recorded: Mutex<HashSet<Digest>>,
    /// When the component store was last swept.
    pub(crate) collected_at: Mutex<Instant>,
    /// What this host measured about its own operations and its links.
    pub(crate) calibration: Arc<Calibration>,
}

/// Modification times of a host's certificate and key files.
pub(crate) type CredentialStamp = (std::time::SystemTime, std::time::SystemTime);

fn credential_stamp(config: &HostConfig) -> Option<CredentialStamp> {
    let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    Some((modified(&config.cert)?, modified(&config.key)?))
}

/// A running host.
pub struct Host {
    shared: Arc<Shared>,
    /// Migrations prepared here before a restart, to settle with their sources.
    prepared: Vec<AgentRecord>,
    /// The address the endpoint is bound to.
    bound: SocketAddr,
}

impl Host {
    /// Loads the certificates, binds the QUIC endpoint and prepares the
    /// runtime. Fails with a one-line reason for a bad configuration.
    pub async fn start(config: HostConfig) -> Result<Host> {
        crate::config::validate(&config)?;
        let creds = Credentials::load(&config.ca, &config.cert, &config.key)?;
        if creds.identity.role != Role::Host {
            return Err(Error::Identity(format!(
                "{} is a {} certificate; a host needs a host certificate",
                config.cert.display(),
                creds.identity.role
            )));
        }
        if let Some(name) = &config.name
            && name != &creds.identity.name
        {
            return Err(Error::Config(format!(
                "name {name:?} does not match the certificate, issued to {:?}",
                creds.identity.name
            )));
        }
        std::fs::create_dir_all(&config.data_dir).map_err(|e| Error::io(&config.data_dir, e))?;
        let store = ComponentStore::open(
            &config.data_dir.join("components"),
            config.limits.component_store_mib.saturating_mul(1 << 20),
        )?;
        let agent_store = AgentStore::open(&config.data_dir.join("agents"))?;
        let runtime = RuntimeBuilder::new(config.cache_dir())
            .limits(Limits {
                max_memory_mib: config.limits.max_agent_memory_mib,
                call_timeout: Duration::from_millis(config.limits.call_timeout_ms),
                ..Limits::default()
            })
            .build()?;
        let revocations = Arc::new(Revocations::open(
            creds.ca.clone(),
            config.data_dir.join(HOST_LIST_FILE),
        )?);
        let dial = host_client_config(&creds, &revocations)?;
        let endpoint = bind(
            Some(host_server_config(
                &creds,
                &revocations,
                config.limits.streams_per_connection,
            )?),
            dial.clone(),
            config.listen,
        )?;
        let stamp = credential_stamp(&config);
        let bound = endpoint
            .local_addr()
            .map_err(|e| Error::io(config.listen.to_string(), e))?;
        let addr = config.advertise.unwrap_or(bound);
        let data_dir = config.data_dir.clone();
        let core_gcps = config.labels.core_gcps;
        let (sampler, status) = tokio::task::spawn_blocking(move || -> Result<_> {
            let mut sampler =
                Sampler::new(&data_dir, core_gcps).map_err(|e| Error::Config(e.to_string()))?;
            std::thread::sleep(Duration::from_millis(200));
            let status = sampler.read().map_err(|e| Error::Config(e.to_string()))?;
            Ok((sampler, status))
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
        let policy_runtime = PolicyRuntimeBuilder::new(config.data_dir.join("policy-cache"))
            .limits(PolicyLimits {
                memory_mib: config.limits.policy_memory_mib,
                ..PolicyLimits::default()
            })
            .build()?;
        // The HTTP clients block; they are built (and used) off the async threads.
        let llm_settings = config.llm.clone();
        let calibration = Arc::new(Calibration::default());
        let llm_calibration = calibration.clone();
        let (llm, refiner) = tokio::task::spawn_blocking(move || -> Result<_> {
            let Some(settings) = llm_settings else {
                return Ok((None, None));
            };
            let mut advisor = AdvisorConfig::new(settings.endpoint, settings.model);
            advisor.api_key_env = settings.api_key_env;
            advisor.timeout = Duration::from_millis(settings.timeout_ms);
            let chat =
                ChatClient::new(advisor.clone()).map_err(|e| Error::Config(format!("llm: {e}")))?;
            let refiner =
                LlmRefiner::new(advisor).map_err(|e| Error::Config(format!("llm: {e}")))?;
            Ok((
                Some(Arc::new(HostLlm {
                    chat,
                    calibration: llm_calibration,
                })),
                Some(Arc::new(refiner)),
            ))
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
        let suspect_after =
            Duration::from_millis(config.heartbeat_ms * 5).max(Duration::from_secs(2));
        let shared = Arc::new(Shared {
            name: creds.identity.name.clone(),
            addr,
            membership: Mutex::new(Membership::new(creds.identity.name.clone(), suspect_after)),
            config,
            endpoint,
            runtime,
            store,
            agents: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            preparing: Mutex::new(HashMap::new()),
            moved: Mutex::new(HashMap::new()),
            agent_store,
            attachments: Mutex::new(HashMap::new()),
            events: Mutex::new(std::collections::VecDeque::new()),
            migrations: Mutex::new(std::collections::VecDeque::new()),
            connections: Mutex::new(HashMap::new()),
            status: Mutex::new(status),
            sampler: Mutex::new(sampler),
            compiling: Mutex::new(HashSet::new()),
            metrics: Metrics::default(),
            policy: PolicySlot::default(),
            active_policy: Mutex::new(crate::policy_swap::ActivePolicy::default()),
            policy_runtime,
            llm,
            refiner,
            started: Instant::now(),
            handle: tokio::runtime::Handle::current(),
            incoming: Mutex::new(HashMap::new()),
            uploads: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_UPLOADS)),
            revocations,
            dial: Mutex::new(dial),
            credential_stamp: Mutex::new(stamp),
            peer_revocations: Mutex::new(HashMap::new()),
            recorded: Mutex::new(HashSet::new()),
            collected_at: Mutex::new(Instant::now()),
            calibration,
        });
        // Bring back what this host owned before a restart.
        let (records, tombstones) = shared.agent_store.load()?;
        lock(&shared.recorded).extend(records.iter().map(|r| r.digest));
        for t in tombstones {
            lock(&shared.moved).insert(t.name.clone(), t);
        }
        let mut prepared = Vec::new();
        for record in records {
            match record.standing {
                Standing::Active => {
                    let s = shared.clone();
                    let r = record.clone();
                    match tokio::task::spawn_blocking(move || s.recover(&r)).await {
                        Ok(Ok(())) => {
                            tracing::info!(agent = %record.name, epoch = record.epoch, "recovered")
                        }
                        Ok(Err(e)) => {
                            tracing::error!(agent = %record.name, "could not recover: {e}")
                        }
                        Err(e) => tracing::error!(agent = %record.name, "{e}"),
                    }
                }
                Standing::Prepared { .. } | Standing::PreparedFrom { .. } => prepared.push(record),
            }
        }
        shared.collect_components().await;
        Ok(Host {
            shared,
            prepared,
            bound,
        })
    }

    /// The host's name, from its certificate.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The address the host listens on (what it advertises may differ).
    pub fn local_addr(&self) -> SocketAddr {
        self.bound
    }

    /// Serves until `shutdown` completes, then closes connections cleanly.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let shared = self.shared.clone();
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(heartbeat_loop(Arc::downgrade(&shared)));
        if shared.config.alm.check_ms > 0 {
            tasks.spawn(alm_loop(Arc::downgrade(&shared)));
        }
        if !self.prepared.is_empty() {
            let s = shared.clone();
            let prepared = self.prepared;
            tasks.spawn(async move { s.settle_prepared(prepared).await });
        }
        if let Some(metrics_addr) = shared.config.metrics_listen {
            if !metrics_addr.ip().is_loopback() {
                tracing::warn!(%metrics_addr, "the metrics endpoint has no authentication and listens beyond loopback");
            }
            let listener = tokio::net::TcpListener::bind(metrics_addr)
                .await
                .map_err(|e| Error::io(metrics_addr.to_string(), e))?;
            let weak = Arc::downgrade(&shared);
            tasks.spawn(crate::metrics::serve(listener, move || {
                match weak.upgrade() {
                    Some(s) => s.render_metrics(),
                    None => String::new(),
                }
            }));
        }
        tracing::info!(name = %shared.name, addr = %shared.addr, "serving");
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                incoming = shared.endpoint.accept() => {
                    let Some(incoming) = incoming else { break };
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        match incoming.await {
                            Ok(connection) => serve_connection(shared, connection).await,
                            Err(e) => tracing::debug!("handshake refused: {e}"),
                        }
                    });
                }
            }
        }
        tracing::info!(name = %shared.name, "shutting down");
        tasks.abort_all();
        // Last snapshots, so a clean restart loses nothing.
        let s = shared.clone();
        let _ = tokio::task::spawn_blocking(move || s.snapshot_all(true)).await;
        shared.endpoint.close(0u32.into(), b"shutting down");
        let _ = tokio::time::timeout(Duration::from_secs(2), shared.endpoint.wait_idle()).await;
        Ok(())
    }
}

async fn serve_connection(shared: Arc<Shared>, connection: Connection) {
    let identity = match peer_identity(&connection) {
        Ok(identity) => identity,
        Err(e) => {
            tracing::warn!(remote = %connection.remote_address(), "refusing connection: {e}");
            connection.close(2u32.into(), b"no edgehost identity");
            return;
        }
    };
    {
        let mut incoming = lock(&shared.incoming);
        let open = incoming.entry(identity.clone()).or_default();
        if *open >= MAX_CONNECTIONS_PER_PEER {
            drop(incoming);
            tracing::warn!(%identity, "refusing connection: {MAX_CONNECTIONS_PER_PEER} already open");
            connection.close(3u32.into(), b"too many connections from this identity");
            return;
        }
        *open += 1;
    }
    tracing::debug!(%identity, remote = %connection.remote_address(), "connected");
    // A new revocation list closes this connection if it revokes the peer;
    // so does one that arrived while the handshake was finishing.
    let mut lists = shared.revocations.subscribe();
    let mut watching = true;
    let mut revoked = shared.revokes_peer(&connection);
    while !revoked {
        tokio::select! {
            accepted = connection.accept_bi() => {
                let Ok((send, recv)) = accepted else { break };
                let shared = shared.clone();
                let identity = identity.clone();
                tokio::spawn(async move { serve_stream(shared, identity, send, recv).await });
            }
            changed = lists.changed(), if watching => match changed {
                Ok(()) => revoked = shared.revokes_peer(&connection),
                Err(_) => watching = false,
            },
        }
    }
    if revoked {
        tracing::warn!(%identity, "closing a connection: its certificate is revoked");
        connection.close(4u32.into(), b"certificate revoked");
    }
    let mut incoming = lock(&shared.incoming);
    if let Some(open) = incoming.get_mut(&identity) {
        *open = open.saturating_sub(1);
        if *open == 0 {
            incoming.remove(&identity);
        }
    }
}

async fn serve_stream(
    shared: Arc<Shared>,
    identity: Identity,
    mut send: SendStream,
    mut recv: RecvStream,
) {
    let deadline = shared.frame_deadline();
    let answer = match read_frame_within(&mut recv, MAX_MESSAGE_BYTES, deadline).await {
        Ok(Some(frame)) => match decode::<Request>(&frame) {
            Ok(request) => shared.handle(&identity, request, &mut recv).await,
            Err(e) => {
                let message = crate::one_line(&e);
                refusal(Error::from(e).kind(), message)
            }
        },
        Ok(None) => return,
        Err(e) => refusal(ErrorKind::BadRequest, e),
    };
    if let Response::Error { message, .. } = &answer {
        tracing::debug!(%identity, "request refused: {message}");
        // Whatever else the peer meant to send on this stream is discarded.
        let _ = recv.stop(1u32.into());
    }
    match encode(&answer) {
        Ok(frame) => {
            let _ = write_frame(&mut send, &frame).await;
            let _ = send.finish();
        }
        Err(e) => tracing::error!("encoding an answer: {e}"),
    }
}

fn refusal(kind: ErrorKind, e: impl std::fmt::Display) -> Response {
    Response::Error {
        kind,
        message: e.to_string(),
    }
}

impl Shared {
    async fn handle(
        self: &Arc<Self>,
        identity: &Identity,
        request: Request,
        recv: &mut RecvStream,
    ) -> Response {
        // The one authorization check: the table in protocol::authz.
        if let Err(reason) = authorize(identity.role, &request) {
            let reason = format!("{identity} {reason}");
            return refusal(ErrorKind::Forbidden, reason);
        }
        let result = match request {
            Request::Status => Ok(Response::Status(self.report())),
            Request::Fleet => Ok(Response::Fleet(self.fleet_views())),
            Request::Has { digest } => Ok(Response::Has(self.store.has(&digest))),
            Request::Upload { digest, size } => self.receive_upload(digest, size, recv).await,
            Request::Deploy {
                name,
                digest,
                config,
            } => self.deploy(name, digest, config).await,
            Request::Invoke {
                name,
                body,
                caller,
                hops,
            } => self
                .invoke(name, body, caller, hops)
                .await
                .map(|(body, host)| Response::Invoked { body, host }),
            Request::Release { name } => self.release(&name),
            Request::Place {
                descriptor,
                component_bytes,
                user,
                requires_arch,
            } => {
                self.place(descriptor, component_bytes, user, requires_arch)
                    .await
            }
            Request::SetPolicy {
                heuristic,
                cost_model,
            } => {
                self.set_policy(PolicyPlugins {
                    heuristic,
                    cost_model,
                })
                .await
            }
            Request::Migrate { name, to } => self.migrate(name, to).await,
            Request::Prepare {
                name,
                digest,
                config,
                epoch,
                source,
            } => {
                self.prepare(identity, name, digest, config, epoch, source)
                    .await
            }
            Request::Precopy {
                name,
                epoch,
                state_digest,
                state,
            } => {
                self.receive_precopy(identity, &name, epoch, state_digest, state)
                    .await
            }
            Request::Transfer {
                name,
                epoch,
                state_digest,
                len,
                blocks,
            } => {
                self.receive_state(identity, name, epoch, state_digest, len, blocks)
                    .await
            }
            Request::Commit { name, epoch } => self.commit(identity, &name, epoch),
            Request::Abort { name, epoch } => self.abort_prepared(identity, &name, epoch),
            Request::Outcome { name, epoch } => self.outcome(identity, &name, epoch),
            Request::Attach { agent, host } => self.attach(agent, host).await,
            Request::Events => Ok(Response::Events(
                lock(&self.events).iter().cloned().collect(),
            )),
            Request::Migrations => Ok(Response::Migrations(
                lock(&self.migrations).iter().cloned().collect(),
            )),
            Request::Revocations { list } => self.take_revocations(list).await,
            Request::Heartbeat(report) => {
                if report.name != identity.name {
                    Err(Error::Forbidden(format!(
                        "{identity} sent a report for {:?}",
                        report.name
                    )))
                } else {
                    self.heard_from(*report).await;
                    Ok(Response::Fleet(self.fleet_views()))
                }
            }
        };
        result.unwrap_or_else(|e| refusal(e.kind(), e))
    }

    /// Offers a revocation list to this host; a newer one closes the
    /// connections this host dialled to identities it revokes (those it
    /// accepted close themselves, in `serve_connection`).
    async fn take_revocations(&self, list: Vec<u8>) -> Result<Response> {
        let revocations = self.revocations.clone();
        let offered = tokio::task::spawn_blocking(move || revocations.offer(&list))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
        let number = match offered {
            Offered::Applied(number) => {
                lock(&self.connections).retain(|addr, (connection, identity)| {
                    let revoked = self.revokes_peer(connection);
                    if revoked {
                        tracing::warn!(%identity, %addr, "closing a connection: its certificate is revoked");
                        connection.close(4u32.into(), b"certificate revoked");
                    }
                    !revoked
                });
                number
            }
            Offered::Kept(number) => number,
        };
        Ok(Response::Revocations { number })
    }

    /// Whether the list held revokes the certificate `connection`'s peer
    /// presented.
    fn revokes_peer(&self, connection: &Connection) -> bool {
        peer_certificate(connection).is_ok_and(|cert| self.revocations.is_revoked(&cert))
    }

    /// Passes this host's revocation list to the peer at `addr` if the peer
    /// may not have it yet: the gossip that reaches a host that missed the
    /// operator's `fleet revoke`.
    async fn gossip_revocations(&self, addr: SocketAddr, peer: &Identity) {
        let Some(list) = self.revocations.current() else {
            return;
        };
        let known = lock(&self.peer_revocations)
            .get(&peer.name)
            .copied()
            .unwrap_or(0);
        if known >= list.number() {
            return;
        }
        let request = Request::Revocations {
            list: list.der().to_vec(),
        };
        match self.call_peer(addr, Some(&peer.name), &request).await {
            Ok((Response::Revocations { number }, _)) => {
                lock(&self.peer_revocations).insert(peer.name.clone(), number);
            }
            Ok((other, _)) => tracing::debug!(%peer, "odd answer to a revocation list: {other:?}"),
            Err(e) => tracing::debug!(%peer, "passing on the revocation list failed: {e}"),
        }
    }

    /// Swaps in the certificate and key when their files changed since they
    /// were loaded (`edgehost fleet rotate`): new connections, both ways,
    /// use the new certificate; open ones and the agents are untouched. A
    /// pair that does not load yet (a rotation half written) is tried again
    /// at the next heartbeat.
    fn reload_credentials(&self) {
        let stamp = credential_stamp(&self.config);
        if stamp.is_none() || *lock(&self.credential_stamp) == stamp {
            return;
        }
        match self.rebuild_tls() {
            Ok(()) => {
                *lock(&self.credential_stamp) = stamp;
                tracing::info!(cert = %self.config.cert.display(), "certificate reloaded");
            }
            Err(e) => tracing::warn!("the certificate files changed but cannot be used: {e}"),
        }
    }

    fn rebuild_tls(&self) -> Result<()> {
        let creds = Credentials::load(&self.config.ca, &self.config.cert, &self.config.key)?;
        if creds.identity.role != Role::Host || creds.identity.name != self.name {
            return Err(Error::Identity(format!(
                "{} now holds the certificate of {}, not of host {:?}",
                self.config.cert.display(),
                creds.identity,
                self.name
            )));
        }
        let server = host_server_config(
            &creds,
            &self.revocations,
            self.config.limits.streams_per_connection,
        )?;
        let client = host_client_config(&creds, &self.revocations)?;
        self.endpoint.set_server_config(Some(server));
        *lock(&self.dial) = client;
        Ok(())
    }

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
                    Gate::Open => "serving",
                    Gate::Migrating => "migrating",
                    Gate::Held | Gate::Moved(_) => "held",
                }
                .to_owned(),
                processing: self.calibration.processing(name),
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
            max_agents: self.config.limits.max_agents,
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

    fn fleet_views(&self) -> Vec<crate::protocol::PeerView> {
        let mut views = vec![crate::protocol::PeerView {
            report: self.report(),
            reachable: true,
            last_seen_s: 0.0,
        }];
        views.extend(lock(&self.membership).views(Instant::now()));
        views
    }

    fn render_metrics(&self) -> String {
        let views = lock(&self.membership).views(Instant::now());
        let reachable = views.iter().filter(|v| v.reachable).count();
        self.metrics.render(&crate::metrics::Gauges {
            agents: lock(&self.agents).len(),
            peers_reachable: reachable,
            peers_known: views.len(),
            policy_generation: self.policy.generation(),
        })
    }

    async fn receive_upload(
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

    async fn deploy(
        self: &Arc<Self>,
        name: AgentName,
        digest: Digest,
        config: Vec<(String, String)>,
    ) -> Result<Response> {
        {
            let agents = lock(&self.agents);
            if agents.contains_key(&name) {
                return Err(Error::Conflict(format!(
                    "an agent named {name:?} already runs here"
                )));
            }
            if agents.len() >= self.config.limits.max_agents as usize {
                return Err(Error::Conflict(format!(
                    "this host runs its maximum of {} agents",
                    self.config.limits.max_agents
                )));
            }
        }
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
    fn fence(&self, report: &HostReport) {
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
        instance.init(config)?;
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
    fn revive(self: &Arc<Self>, slot: &AgentSlot, instance: &mut AgentInstance) -> Result<()> {
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
        let state_bytes = on_disk.as_ref().map_or(0, |s| s.len() as u64);
        let slot = Arc::new(AgentSlot {
            name: name.to_string(),
            durability: Durability::new(on_disk),
            restarts: Mutex::new((0, Instant::now())),
            descriptor: instance.descriptor().clone(),
            requires_arch: instance.requires_arch().map(str::to_owned),
            instance: Mutex::new(instance),
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

    /// Starts a recorded agent with its last committed state (blocking).
    pub(crate) fn recover(self: &Arc<Self>, record: &AgentRecord) -> Result<()> {
        let component = self.load_component(&record.digest)?;
        let state = self.agent_store.state(&record.name)?;
        let instance =
            self.start_instance(&component, &record.name, &record.config, state.as_deref())?;
        if record.standing != Standing::Active {
            self.agent_store.put_record(&AgentRecord {
                standing: Standing::Active,
                ..record.clone()
            })?;
        }
        self.install(
            &record.name,
            instance,
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
            // never writes a state older than one a call wrote.
            let staged = slot.stage(&mut lock(&slot.instance));
            match staged.and_then(|seq| slot.make_durable(seq, &self.agent_store)) {
                Ok(()) => slot.snapshot_calls.store(calls, Ordering::Relaxed),
                Err(e) => tracing::warn!(agent = %name, "could not write a snapshot: {e}"),
            }
        }
    }

    fn release(&self, name: &str) -> Result<Response> {
        match lock(&self.agents).remove(name) {
            Some(_) => {
                self.agent_store.forget(name)?;
                self.calibration.forget_agent(name);
                tracing::info!(agent = %name, "released");
                Ok(Response::Released)
            }
            None => Err(Error::NotFound(format!(
                "no agent named {name:?} runs here"
            ))),
        }
    }

    async fn place(
        self: &Arc<Self>,
        descriptor: Descriptor,
        component_bytes: u64,
        user: Option<HostName>,
        requires_arch: Option<String>,
    ) -> Result<Response> {
        let hosts = self.reachable_reports();
        let user = match user {
            None => None,
            Some(user) => Some(hosts.iter().position(|h| h.name == user).ok_or_else(|| {
                Error::NotFound(format!("no reachable host named {user:?} in the fleet"))
            })?),
        };
        let neighbourhood = self.config.alm.hop_threshold;
        // One snapshot of the policy for the whole decision: a swap that
        // lands meanwhile applies to the next one.
        let (_, policy) = self.policy.snapshot();
        let name = lock(&self.active_policy).name.clone();
        let refiner = self.refiner.clone();
        let placement = tokio::task::spawn_blocking(move || {
            let refiner = refiner
                .as_deref()
                .map(|r| r as &dyn edgehost_placement::Refiner);
            crate::place::place(
                &hosts,
                crate::place::Newcomer {
                    descriptor: &descriptor,
                    component_bytes,
                    requires_arch: requires_arch.as_deref(),
                },
                crate::place::User {
                    at: user,
                    neighbourhood,
                },
                &policy,
                &name,
                refiner,
            )
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
        Ok(Response::Placement(placement))
    }

    /// Runs `name` here if it lives here, else forwards to its owner.
    async fn invoke(
        self: &Arc<Self>,
        name: AgentName,
        body: Vec<u8>,
        caller: Option<AgentName>,
        hops: u8,
    ) -> Result<(Vec<u8>, HostName)> {
        if body.len() > MAX_BODY_BYTES {
            return Err(Error::BadRequest(format!(
                "body of {} bytes is over the limit",
                body.len()
            )));
        }
        let slot = lock(&self.agents).get(&name).cloned();
        if let Some(slot) = slot {
            let mut gate = slot.gate.subscribe();
            let mut body = Some(body);
            let mut held = false;
            loop {
                let state = gate.borrow_and_update().clone();
                match state {
                    Gate::Open | Gate::Migrating => {
                        let taken = body.take().unwrap_or_default();
                        match self.run_local(&slot, taken, caller.clone()).await? {
                            Ok(out) => return out,
                            // A handoff began while this call waited for the
                            // agent: it was not run; wait for the outcome.
                            Err(returned) => body = Some(returned),
                        }
                    }
                    Gate::Held => {
                        // Counted while it waits, even if the caller goes away.
                        let limit = self.config.limits.held_calls_per_agent;
                        let Some(_waiting) = Waiting::within(&slot.holding, limit) else {
                            return Err(Error::Conflict(format!(
                                "{limit} calls already wait for {name:?} while it moves; try again shortly"
                            )));
                        };
                        if !held {
                            held = true;
                            slot.held_calls.fetch_add(1, Ordering::Relaxed);
                        }
                        if gate.changed().await.is_err() {
                            return Err(Error::NotFound(format!("{name:?} was released")));
                        }
                    }
                    Gate::Moved(t) => {
                        return self
                            .forward(
                                &name,
                                (&t.host, crate::persist::tombstone_socket(&t)?),
                                body.take().unwrap_or_default(),
                                caller,
                                hops,
                            )
                            .await;
                    }
                }
            }
        }
        let moved = lock(&self.moved).get(&name).cloned();
        if let Some(t) = moved {
            // Until the fleet's reports catch up, this host knows best where
            // an agent it handed off went.
            if hops < MAX_HOPS {
                return self
                    .forward(
                        &name,
                        (&t.host, crate::persist::tombstone_socket(&t)?),
                        body,
                        caller,
                        hops,
                    )
                    .await;
            }
        }
        let mut owner = lock(&self.membership).owner_of(&name, Instant::now());
        if owner.is_none() {
            // The agent may be newer than the last reports: ask the peers.
            self.refresh_peers().await;
            owner = lock(&self.membership).owner_of(&name, Instant::now());
        }
        let Some(owner) = owner else {
            return Err(Error::NotFound(format!(
                "no reachable host runs an agent named {name:?}"
            )));
        };
        if hops >= MAX_HOPS {
            return Err(Error::NotFound(format!(
                "{name:?} could not be reached within {MAX_HOPS} hops"
            )));
        }
        self.forward(&name, (&owner.name, owner.addr), body, caller, hops)
            .await
    }

    /// Runs one call on a local agent. `Ok(Err(body))` hands the body back
    /// unrun when a handoff started before the call got the agent.
    async fn run_local(
        self: &Arc<Self>,
        slot: &Arc<AgentSlot>,
        body: Vec<u8>,
        caller: Option<AgentName>,
    ) -> Result<std::result::Result<Result<(Vec<u8>, HostName)>, Vec<u8>>> {
        let shared = self.clone();
        self.metrics
            .body_bytes
            .fetch_add(body.len() as u64, Ordering::Relaxed);
        let start = Instant::now();
        let run_slot = slot.clone();
        let run_shared = self.clone();
        let result = tokio::task::spawn_blocking(move || {
            let mut instance = lock(&run_slot.instance);
            if matches!(*run_slot.gate.borrow(), Gate::Held | Gate::Moved(_)) {
                return Err(body);
            }
            if instance.poisoned().is_some()
                && let Err(e) = run_shared.revive(&run_slot, &mut instance)
            {
                return Ok(Err(e));
            }
            Ok(run_slot.call_durably(instance, &run_shared.agent_store, body, caller))
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))?;
        let result = match result {
            Ok(r) => r,
            Err(body) => return Ok(Err(body)),
        };
        let micros = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
        shared
            .metrics
            .invocation_micros
            .fetch_add(micros, Ordering::Relaxed);
        shared.metrics.invocations.fetch_add(1, Ordering::Relaxed);
        Ok(Ok(match result {
            Ok(out) => {
                shared
                    .metrics
                    .body_bytes
                    .fetch_add(out.len() as u64, Ordering::Relaxed);
                Ok((out, shared.name.clone()))
            }
            Err(e) => {
                shared
                    .metrics
                    .invocation_errors
                    .fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }))
    }

    /// Sends an invocation on to the host `owner` (its name and address);
    /// the certificate at the address must name that host.
    async fn forward(
        self: &Arc<Self>,
        name: &AgentName,
        owner: (&HostName, SocketAddr),
        body: Vec<u8>,
        caller: Option<AgentName>,
        hops: u8,
    ) -> Result<(Vec<u8>, HostName)> {
        if hops >= MAX_HOPS {
            return Err(Error::NotFound(format!(
                "{name:?} could not be reached within {MAX_HOPS} hops"
            )));
        }
        self.metrics.forwarded.fetch_add(1, Ordering::Relaxed);
        let (owner_name, addr) = owner;
        let agent = name.clone();
        let request = Request::Invoke {
            name: name.clone(),
            body,
            caller,
            hops: hops.saturating_add(1),
        };
        // H7: a forwarded call has a deadline, so a call cycle across hosts
        // (A calls B calls A, each waiting for the other's instance) ends
        // with an error instead of wedging both.
        let deadline = Duration::from_millis(self.config.limits.call_timeout_ms)
            .saturating_mul(2)
            .saturating_add(Duration::from_secs(2));
        let answer = tokio::time::timeout(
            deadline,
            self.call_peer(addr, Some(owner_name), &request),
        )
        .await
        .map_err(|_| {
            Error::Agent(format!(
                "{owner_name} did not answer for {agent:?} within {deadline:?} (a call cycle?)"
            ))
        })??;
        match answer.0 {
            Response::Invoked { body, host } => Ok((body, host)),
            other => Err(crate::client::unexpected(&other)),
        }
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
    async fn heard_from(&self, report: HostReport) {
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
    fn components_in_use(&self) -> HashSet<Digest> {
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

    async fn heartbeat(self: &Arc<Self>) {
        self.reload_credentials();
        // Refresh our own telemetry first.
        let shared = self.clone();
        if let Ok(Ok(status)) =
            tokio::task::spawn_blocking(move || lock(&shared.sampler).read()).await
        {
            *lock(&self.status) = status;
        }
        let shared = self.clone();
        let _ = tokio::task::spawn_blocking(move || shared.snapshot_all(false)).await;
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
    }
}

/// ALM's periodic check: agents whose users moved or whose host runs short
/// are reconsidered even when nobody reports anything.
async fn alm_loop(shared: Weak<Shared>) {
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

async fn heartbeat_loop(shared: Weak<Shared>) {
    loop {
        let Some(s) = shared.upgrade() else { return };
        let period = Duration::from_millis(s.config.heartbeat_ms);
        s.heartbeat().await;
        drop(s);
        tokio::time::sleep(period).await;
    }
}

/// Routes an agent's calls to its dependencies: to a local agent directly,
/// else over QUIC to the host that runs it. Runs on the blocking thread that
/// is executing the calling agent.
struct FleetRouter {
    shared: Weak<Shared>,
}

impl Router for FleetRouter {
    fn call(&self, from: &str, to: &str, body: Vec<u8>) -> std::result::Result<Vec<u8>, HostError> {
        let shared = self
            .shared
            .upgrade()
            .ok_or_else(|| HostError::Failed("the host is shutting down".into()))?;
        // The name comes from the agent: checked like any name from outside.
        let to = AgentName::new(to).map_err(|e| HostError::UnknownAgent(e.to_string()))?;
        let from = AgentName::new(from).map_err(|e| HostError::Failed(e.to_string()))?;
        let local = lock(&shared.agents).get(&to).cloned();
        if let Some(slot) = local {
            let instance = slot.instance.try_lock().map_err(|_| {
                HostError::Failed(format!("{to:?} is busy (a call cycle through {from:?}?)"))
            })?;
            // Through the migration gate like any call: an agent being
            // handed off takes the path below, which waits while it is held
            // and follows it to its new owner.
            if matches!(*slot.gate.borrow(), Gate::Open | Gate::Migrating) {
                return slot
                    .call_durably(instance, &shared.agent_store, body, Some(from))
                    .map_err(|e| HostError::Failed(e.to_string()));
            }
        }
        let handle = shared.handle.clone();
        handle
            .block_on(shared.invoke(to, body, Some(from), 0))
            .map(|(body, _host)| body)
            .map_err(|e| match e {
                Error::NotFound(m) => HostError::UnknownAgent(m),
                other => HostError::Failed(other.to_string()),
            })
    }
}

/// The host's LLM, offered to agents through `host.complete`.
pub(crate) struct HostLlm {
    chat: ChatClient,
    calibration: Arc<Calibration>,
}

/// Bytes per token, roughly, in the English text LLMs answer with: replies
/// are sized in tokens without a tokenizer at hand.
const BYTES_PER_TOKEN: f64 = 4.0;

impl Llm for HostLlm {
    fn complete(&self, agent: &str, request: Completion) -> std::result::Result<String, HostError> {
        let messages: Vec<ChatMessage> = request
            .messages
            .into_iter()
            .map(|m| ChatMessage {
                role: m.role,
                content: m.content,
            })
            .collect();
        let started = Instant::now();
        self.chat
            .complete(&messages, request.max_tokens, request.temperature, false)
            .inspect(|reply| {
                self.calibration.record(
                    Operation::Llm,
                    None,
                    reply.len() as f64 / BYTES_PER_TOKEN,
                    started.elapsed().as_secs_f64() * 1e3,
                );
            })
            .map_err(|e| {
                tracing::debug!(agent, "LLM call failed: {e}");
                HostError::Failed(format!("LLM: {e}"))
            })
    }
}
