//! Agents: components of the `agent` world, and their live instances.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use wasmtime::Store;
use wasmtime_wasi::WasiCtx;

use crate::limits::Limits;
use crate::sandbox::{Bounds, Fault, Sandbox, SandboxData, Sandboxed, mib_to_bytes};
use crate::services::{Completion, HostError, Message, Services};
use crate::{CacheOutcome, ComponentInfo, Descriptor, Digest, Error, ResourceDemand, Result};

pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit/agent",
        world: "agent",
    });
}

use bindings::edgehost::agent::types as wit;

impl From<wit::Descriptor> for Descriptor {
    fn from(d: wit::Descriptor) -> Self {
        Descriptor {
            kind: d.kind,
            version: d.version,
            demand: ResourceDemand {
                memory_mib: d.demand.memory_mib,
                cpu_millicores: d.demand.cpu_millicores,
                storage_mib: d.demand.storage_mib,
                bandwidth_mbps: d.demand.bandwidth_mbps,
            },
            dependencies: d.dependencies,
        }
    }
}

/// An answer an agent chose to give instead of a response (the WIT
/// `agent-error`). Traps and broken limits are [`Error`]s, never these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum AgentError {
    /// The request or configuration was not acceptable.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A state blob could not be read; the agent's state is unchanged.
    #[error("invalid state: {0}")]
    InvalidState(String),
    /// Something the agent needs is unavailable right now.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Any other failure inside the agent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<wit::AgentError> for AgentError {
    fn from(e: wit::AgentError) -> Self {
        match e {
            wit::AgentError::InvalidInput(m) => AgentError::InvalidInput(m),
            wit::AgentError::InvalidState(m) => AgentError::InvalidState(m),
            wit::AgentError::Unavailable(m) => AgentError::Unavailable(m),
            wit::AgentError::Internal(m) => AgentError::Internal(m),
        }
    }
}

/// A compiled agent component, ready to instantiate any number of times.
#[derive(Clone)]
pub struct AgentComponent {
    pub(crate) info: ComponentInfo,
    pub(crate) pre: bindings::AgentPre<SandboxData<AgentHost>>,
    pub(crate) cache: CacheOutcome,
    pub(crate) load_time: Duration,
}

impl AgentComponent {
    /// The component's digest.
    pub fn digest(&self) -> Digest {
        self.info.digest
    }

    /// What `inspect` knows about it.
    pub fn info(&self) -> &ComponentInfo {
        &self.info
    }

    /// Whether loading it hit the artifact cache.
    pub fn cache_outcome(&self) -> CacheOutcome {
        self.cache
    }

    /// How long compiling or loading the artifact took.
    pub fn load_time(&self) -> Duration {
        self.load_time
    }
}

/// What an agent's store holds beside the sandbox: its name, the host
/// services it may use and the dependencies it declared.
pub(crate) struct AgentHost {
    name: String,
    services: Services,
    dependencies: Vec<String>,
    clock_origin: Instant,
}

/// Longest log line an agent may write; longer lines are cut.
const MAX_LOG_BYTES: usize = 4096;

impl wit::Host for AgentHost {}

impl bindings::edgehost::agent::host::Host for AgentHost {
    fn log(&mut self, level: wit::Level, message: String) {
        let mut message = message;
        if message.len() > MAX_LOG_BYTES {
            let mut cut = MAX_LOG_BYTES;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str("...");
        }
        let agent = self.name.as_str();
        match level {
            wit::Level::Trace => tracing::trace!(agent, "{message}"),
            wit::Level::Debug => tracing::debug!(agent, "{message}"),
            wit::Level::Info => tracing::info!(agent, "{message}"),
            wit::Level::Warn => tracing::warn!(agent, "{message}"),
            wit::Level::Error => tracing::error!(agent, "{message}"),
        }
    }

    fn complete(&mut self, request: wit::CompletionRequest) -> Result<String, wit::HostError> {
        let request = Completion {
            messages: request
                .messages
                .into_iter()
                .map(|m| Message {
                    role: m.role,
                    content: m.content,
                })
                .collect(),
            max_tokens: request.max_tokens,
            temperature: request.temperature,
        };
        self.services
            .llm
            .complete(&self.name, request)
            .map_err(to_wit_error)
    }

    fn call(&mut self, agent: String, request: wit::Request) -> Result<Vec<u8>, wit::HostError> {
        if !self.dependencies.contains(&agent) {
            return Err(wit::HostError::UnknownAgent(format!(
                "{agent:?} is not among the dependencies {:?} declared",
                self.name
            )));
        }
        self.services
            .router
            .call(&self.name, &agent, request.body)
            .map_err(to_wit_error)
    }

    fn monotonic_now(&mut self) -> u64 {
        u64::try_from(self.clock_origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

fn to_wit_error(e: HostError) -> wit::HostError {
    match e {
        HostError::NoLlmConfigured => wit::HostError::NoLlmConfigured,
        HostError::UnknownAgent(m) => wit::HostError::UnknownAgent(m),
        HostError::Failed(m) => wit::HostError::Failed(m),
        HostError::Limit(m) => wit::HostError::Limit(m),
    }
}

/// One live agent: its own store, its own memory, its own limits.
///
/// A call that traps or breaks a limit poisons the instance: the component
/// model gives no guarantee about an instance's memory after a trap, so every
/// later call fails with [`Error::Poisoned`] and the owner must start a fresh
/// instance (from the last exported state).
pub struct AgentInstance {
    sandboxed: Sandboxed<AgentHost>,
    bindings: bindings::Agent,
    descriptor: Descriptor,
    limits: Limits,
    digest: Digest,
    requires_arch: Option<String>,
}

impl AgentInstance {
    pub(crate) fn start(
        component: &AgentComponent,
        name: &str,
        limits: &Limits,
        services: Services,
        sandbox: &Sandbox<AgentHost>,
    ) -> Result<Self> {
        let host = AgentHost {
            name: name.to_owned(),
            services,
            dependencies: Vec::new(),
            clock_origin: Instant::now(),
        };
        // No preopened directories, no environment, no arguments, no
        // sockets (the default address check denies every address). Until
        // the agent declares its memory, the host's ceiling caps it.
        let mut sandboxed = sandbox.store(
            host,
            WasiCtx::builder().build(),
            Bounds::new(limits.max_memory_mib, limits.call_timeout),
        );
        let bindings = sandboxed
            .call("instantiate", |s| component.pre.instantiate(s))
            .map_err(|fault| agent_error(name, "instantiate", fault))?;
        let mut instance = AgentInstance {
            sandboxed,
            bindings,
            descriptor: Descriptor {
                kind: String::new(),
                version: String::new(),
                demand: ResourceDemand {
                    memory_mib: 0,
                    cpu_millicores: 0,
                    storage_mib: 0,
                    bandwidth_mbps: 0,
                },
                dependencies: Vec::new(),
            },
            limits: limits.clone(),
            digest: component.digest(),
            requires_arch: component.info().requires_arch.clone(),
        };
        let descriptor: Descriptor = instance.call("describe", |g, s| g.call_describe(s))?.into();
        let memory = descriptor.demand.memory_mib;
        if memory == 0 || memory > limits.max_memory_mib {
            return Err(Error::Refused(format!(
                "agent {name:?} declares {memory} MiB of memory; this host accepts 1 to {} MiB per agent",
                limits.max_memory_mib
            )));
        }
        instance.sandboxed.set_memory_cap(mib_to_bytes(memory));
        instance.sandboxed.data_mut().host_mut().dependencies = descriptor.dependencies.clone();
        instance.descriptor = descriptor;
        Ok(instance)
    }

    /// The agent's name on this host.
    pub fn name(&self) -> &str {
        &self.sandboxed.data().host().name
    }

    /// The digest of the component this instance runs.
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// What the agent declared about itself.
    pub fn descriptor(&self) -> &Descriptor {
        &self.descriptor
    }

    /// The CPU architecture its component declares it needs, if any
    /// ([`crate::REQUIRES_ARCH_SECTION`]).
    pub fn requires_arch(&self) -> Option<&str> {
        self.requires_arch.as_deref()
    }

    /// The reason this instance was poisoned, if it was.
    pub fn poisoned(&self) -> Option<&str> {
        self.sandboxed.poisoned()
    }

    /// Sets how long each call may run before it is interrupted.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.sandboxed.set_timeout(timeout);
    }

    /// Calls `init` with the agent's configuration.
    pub fn init(&mut self, config: &[(String, String)]) -> Result<()> {
        let config = config.to_vec();
        self.call("init", |g, s| g.call_init(s, &config))?
            .map_err(|e| Error::Agent(e.into()))
    }

    /// Calls `handle` with a request from a client.
    pub fn handle(&mut self, body: &[u8]) -> Result<Vec<u8>> {
        self.handle_from(body.to_vec(), None)
    }

    /// Calls `handle` with a request from `caller` (another agent), or from a
    /// client when `caller` is `None`.
    pub fn handle_from(&mut self, body: Vec<u8>, caller: Option<String>) -> Result<Vec<u8>> {
        if body.len() > self.limits.max_request_bytes {
            return Err(Error::TooLarge {
                what: "request",
                size: body.len(),
                limit: self.limits.max_request_bytes,
            });
        }
        let request = wit::Request { body, caller };
        let response = self
            .call("handle", |g, s| g.call_handle(s, &request))?
            .map_err(|e| Error::Agent(e.into()))?;
        if response.len() > self.limits.max_response_bytes {
            return Err(Error::TooLarge {
                what: "response",
                size: response.len(),
                limit: self.limits.max_response_bytes,
            });
        }
        Ok(response)
    }

    /// Calls `export-state` and returns the agent's whole memory as one blob.
    pub fn export_state(&mut self) -> Result<Vec<u8>> {
        let state = self
            .call("export-state", |g, s| g.call_export_state(s))?
            .map_err(|e| Error::Agent(e.into()))?;
        if state.len() > self.limits.max_state_bytes {
            return Err(Error::TooLarge {
                what: "state",
                size: state.len(),
                limit: self.limits.max_state_bytes,
            });
        }
        Ok(state)
    }

    /// Calls `import-state`. A blob the agent cannot read comes back as
    /// [`AgentError::InvalidState`] and leaves its state as it was.
    pub fn import_state(&mut self, state: &[u8]) -> Result<()> {
        if state.len() > self.limits.max_state_bytes {
            return Err(Error::TooLarge {
                what: "state",
                size: state.len(),
                limit: self.limits.max_state_bytes,
            });
        }
        self.call("import-state", |g, s| g.call_import_state(s, state))?
            .map_err(|e| Error::Agent(e.into()))
    }

    /// Runs one export in the sandbox, turning traps and broken limits
    /// into precise errors (the sandbox poisons the instance on them).
    fn call<R>(
        &mut self,
        what: &'static str,
        f: impl FnOnce(
            &bindings::exports::edgehost::agent::guest::Guest,
            &mut Store<SandboxData<AgentHost>>,
        ) -> wasmtime::Result<R>,
    ) -> Result<R> {
        let guest = self.bindings.edgehost_agent_guest();
        self.sandboxed
            .call(what, |s| f(guest, s))
            .map_err(|fault| agent_error(&self.sandboxed.data().host().name, what, fault))
    }
}

/// The error of agent `agent` whose `call` failed with `fault`.
fn agent_error(agent: &str, call: &'static str, fault: Fault) -> Error {
    let agent = agent.to_owned();
    match fault {
        Fault::Deadline { timeout_ms } => Error::Deadline {
            agent,
            call,
            timeout_ms,
        },
        Fault::MemoryLimit {
            cap_mib,
            requested_mib,
        } => Error::MemoryLimit {
            agent,
            call,
            cap_mib,
            requested_mib,
        },
        Fault::StackOverflow => Error::StackOverflow { agent, call },
        Fault::Trap(message) => Error::Trap {
            agent,
            call,
            message,
        },
        Fault::Poisoned(reason) => Error::Poisoned { agent, reason },
    }
}
