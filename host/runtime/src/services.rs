//! What the host offers agents through the `host` interface of the `agent`
//! world: logging, an LLM, calls to other agents, a monotonic clock. The LLM
//! and the routing of calls are traits, so the fleet can route across hosts
//! and a deployment can plug in its LLM endpoint without touching the runtime.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use crate::AgentInstance;

/// One chat message for an LLM completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

/// A completion an agent asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    /// The conversation, oldest first.
    pub messages: Vec<Message>,
    /// Upper bound on generated tokens, if the agent set one.
    pub max_tokens: Option<u32>,
    /// Sampling temperature, if the agent set one.
    pub temperature: Option<f32>,
}

/// Why the host could not serve an LLM or agent call (mirrors the WIT
/// `host-error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// No LLM endpoint is configured on this host.
    #[error("no LLM configured on this host")]
    NoLlmConfigured,
    /// The target agent is not a declared dependency, or nobody runs it.
    #[error("unknown agent: {0}")]
    UnknownAgent(String),
    /// The call failed; the text says why.
    #[error("call failed: {0}")]
    Failed(String),
    /// The call would break a limit.
    #[error("limit: {0}")]
    Limit(String),
}

/// An LLM the host can ask on an agent's behalf.
pub trait Llm: Send + Sync {
    /// Complete `request` for the agent named `agent`.
    fn complete(&self, agent: &str, request: Completion) -> Result<String, HostError>;
}

/// Routes one agent's call to another agent.
pub trait Router: Send + Sync {
    /// Deliver `body` from agent `from` to agent `to` and return the response.
    fn call(&self, from: &str, to: &str, body: Vec<u8>) -> Result<Vec<u8>, HostError>;
}

/// The LLM of a host that has none: every completion fails with
/// [`HostError::NoLlmConfigured`].
#[derive(Debug, Default, Clone, Copy)]
pub struct NoLlm;

impl Llm for NoLlm {
    fn complete(&self, _agent: &str, _request: Completion) -> Result<String, HostError> {
        Err(HostError::NoLlmConfigured)
    }
}

/// The router of an agent running alone: every call fails with
/// [`HostError::UnknownAgent`].
#[derive(Debug, Default, Clone, Copy)]
pub struct NoRoutes;

impl Router for NoRoutes {
    fn call(&self, _from: &str, to: &str, _body: Vec<u8>) -> Result<Vec<u8>, HostError> {
        Err(HostError::UnknownAgent(format!(
            "no agent named {to:?} is reachable"
        )))
    }
}

/// The services handed to every new instance.
#[derive(Clone)]
pub struct Services {
    /// The LLM behind `host.complete`.
    pub llm: Arc<dyn Llm>,
    /// The router behind `host.call`.
    pub router: Arc<dyn Router>,
}

impl Default for Services {
    fn default() -> Self {
        Services {
            llm: Arc::new(NoLlm),
            router: Arc::new(NoRoutes),
        }
    }
}

/// Routes calls between agents running in this process.
///
/// Each agent sits behind its own mutex. A call to an agent that is busy (in
/// practice: a cycle, A calls B calls A) is refused rather than waited for,
/// because waiting would deadlock.
#[derive(Default)]
pub struct LocalRouter {
    agents: Mutex<HashMap<String, Arc<Mutex<AgentInstance>>>>,
}

impl LocalRouter {
    /// An empty router.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes `instance` reachable under its name and returns the shared handle.
    pub fn insert(&self, instance: AgentInstance) -> Arc<Mutex<AgentInstance>> {
        let name = instance.name().to_owned();
        let shared = Arc::new(Mutex::new(instance));
        self.agents
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name, shared.clone());
        shared
    }

    /// Removes the agent named `name`, returning it if it was there.
    pub fn remove(&self, name: &str) -> Option<Arc<Mutex<AgentInstance>>> {
        self.agents
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name)
    }
}

impl Router for LocalRouter {
    fn call(&self, from: &str, to: &str, body: Vec<u8>) -> Result<Vec<u8>, HostError> {
        let target = self
            .agents
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(to)
            .cloned()
            .ok_or_else(|| HostError::UnknownAgent(format!("no agent named {to:?} runs here")))?;
        let mut target = target.try_lock().map_err(|_| {
            HostError::Failed(format!("{to:?} is busy (a call cycle through {from:?}?)"))
        })?;
        target
            .handle_from(body, Some(from.to_owned()))
            .map_err(|e| HostError::Failed(e.to_string()))
    }
}
