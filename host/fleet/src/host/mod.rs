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
use crate::durable::{Durability, Mode};
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

mod agents;
mod calls;
mod peers;
mod serve;
mod trust;

pub(crate) use calls::{FleetRouter, HostLlm};
use peers::{alm_loop, heartbeat_loop};
use serve::serve_connection;

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
        // The first `max_agents` come back awake; with hibernation on, the
        // rest come back hibernating, so a host holding many agents does
        // not start them all at once.
        let mut awake = 0;
        for record in records {
            match record.standing {
                Standing::Active => {
                    let s = shared.clone();
                    let r = record.clone();
                    let limits = &shared.config.limits;
                    let wake = awake < limits.max_agents || limits.hibernate_after_ms == 0;
                    match tokio::task::spawn_blocking(move || s.recover(&r, wake)).await {
                        Ok(Ok(())) => {
                            awake += u32::from(wake);
                            tracing::info!(agent = %record.name, epoch = record.epoch, awake = wake, "recovered")
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
