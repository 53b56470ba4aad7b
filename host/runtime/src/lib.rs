//! The edgehost runtime: runs agents as WebAssembly components.
//!
//! This is the only crate of edgehost that uses wasmtime. It loads a component,
//! checks that it targets the `agent` world (`wit/agent/agent.wit`), compiles
//! it once and keeps the machine code in an on-disk [`ArtifactCache`], and
//! starts instances through a pre-linked `InstancePre`, each in its own store.
//!
//! Main types:
//! - [`Runtime`] (built by [`RuntimeBuilder`]): the engine, linker, cache and
//!   epoch ticker shared by all agents of a host.
//! - [`AgentComponent`]: a compiled agent, cheap to instantiate many times.
//! - [`AgentInstance`]: one live agent with its own memory and limits;
//!   `init`, `handle`, `export-state`, `import-state`.
//! - [`ComponentInfo`]: what a component is, read without compiling it.
//! - [`Services`]: the LLM and the call router offered to agents.
//!
//! Every instance runs with a hard memory cap (the memory the agent declared),
//! a CPU deadline per call (epoch interruption), a bounded stack, size limits
//! on requests, responses and state, and a WASI context that grants nothing:
//! no files, sockets, environment or arguments. A trap or broken limit is an
//! [`Error`] naming the agent and the cause, and poisons only that instance.
//!
//! Policy plugins (placement heuristics and cost models, the `policy` world
//! in `wit/policy/policy.wit`) run here too, in the same sandbox: both worlds
//! instantiate one generic sandbox (engine, linker, cache, epoch ticker, a
//! memory cap on every memory and table of a store together, deadlines and
//! trap classification), so a protection added for one is had by both. See
//! [`policy`] ([`PolicyRuntime`], [`PolicyComponent`], [`PolicySlot`]).
//!
//! It deliberately does not decide where agents run, speak to the network or
//! persist state: those belong to the placement engine and the fleet.

mod agent;
mod cache;
mod inspect;
mod limits;
pub mod policy;
mod runtime;
mod sandbox;
mod services;

use std::path::Path;

pub use agent::{AgentComponent, AgentError, AgentInstance};
pub use cache::{ArtifactCache, CacheOutcome};
pub use edgehost_proto::{Descriptor, Digest, ParseDigestError, ResourceDemand};
pub use inspect::{CONTRACT_VERSION, ComponentInfo, Kind, REQUIRES_ARCH_SECTION};
pub use limits::Limits;
pub use policy::{
    PluginFault, PolicyComponent, PolicyInstance, PolicyLimits, PolicyRuntime,
    PolicyRuntimeBuilder, PolicySlot, WasmCostModel, WasmHeuristic, plugin_policy,
};
pub use runtime::{Runtime, RuntimeBuilder};
pub use sandbox::Fault;
pub use services::{
    Completion, HostError, Llm, LocalRouter, Message, NoLlm, NoRoutes, Router, Services,
};

/// Everything that can go wrong loading or running an agent.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bytes are not a valid WebAssembly component.
    #[error("malformed component: {0}")]
    Malformed(String),
    /// A valid component, but not an agent this host can run.
    #[error("not an edgehost agent: {0}")]
    WrongWorld(String),
    /// A valid component, but not a policy plugin this host can use.
    #[error("not an edgehost policy plugin: {0}")]
    NotPolicy(String),
    /// An agent that declares it needs another CPU architecture.
    #[error("the agent requires {required}; this host is {host}")]
    Architecture {
        /// What the agent declares it needs.
        required: String,
        /// This host's architecture.
        host: String,
    },
    /// Cranelift could not compile the component.
    #[error("compiling the component failed: {0}")]
    Compile(String),
    /// The engine could not be set up.
    #[error("setting up the engine failed: {0}")]
    Engine(String),
    /// The agent asked for something this host does not grant.
    #[error("refused: {0}")]
    Refused(String),
    /// The agent answered with an error of its own (an answer, not a
    /// failure of the host, so it is not chained as a cause).
    #[error("the agent returned an error: {0}")]
    Agent(AgentError),
    /// A call ran past its deadline and was interrupted.
    #[error("agent {agent:?} was stopped: {call} ran past its {timeout_ms} ms deadline")]
    Deadline {
        /// The agent.
        agent: String,
        /// The export being called.
        call: &'static str,
        /// The deadline.
        timeout_ms: u64,
    },
    /// The agent tried to grow its memory past its cap.
    #[error(
        "agent {agent:?} was stopped: {call} tried to grow memory to {requested_mib} MiB, above its {cap_mib} MiB cap"
    )]
    MemoryLimit {
        /// The agent.
        agent: String,
        /// The export being called.
        call: &'static str,
        /// The cap, MiB.
        cap_mib: usize,
        /// What it asked for, MiB.
        requested_mib: usize,
    },
    /// The agent recursed past the stack limit.
    #[error("agent {agent:?} was stopped: {call} exhausted its stack")]
    StackOverflow {
        /// The agent.
        agent: String,
        /// The export being called.
        call: &'static str,
    },
    /// The agent trapped.
    #[error("agent {agent:?} trapped in {call}: {message}")]
    Trap {
        /// The agent.
        agent: String,
        /// The export being called.
        call: &'static str,
        /// What wasmtime reported.
        message: String,
    },
    /// An earlier trap left this instance unusable.
    #[error(
        "agent {agent:?} is unusable after an earlier failure ({reason}); start a fresh instance"
    )]
    Poisoned {
        /// The agent.
        agent: String,
        /// The earlier failure.
        reason: String,
    },
    /// A request, response or state blob was over its size limit.
    #[error("{what} of {size} bytes is over the {limit}-byte limit")]
    TooLarge {
        /// Which payload.
        what: &'static str,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A policy plugin failed or answered something unusable.
    #[error("policy plugin {plugin:?} failed in {call}: {fault}")]
    Plugin {
        /// The plugin.
        plugin: String,
        /// The export being called.
        call: &'static str,
        /// What went wrong.
        fault: PluginFault,
    },
    /// A file could not be read or written.
    #[error("{path}: {cause}")]
    Io {
        /// The file.
        path: String,
        /// The cause, in the message (not a separate source, so a chain
        /// printed in full names it once).
        cause: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(path: impl AsRef<Path>, cause: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().display().to_string(),
            cause,
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
