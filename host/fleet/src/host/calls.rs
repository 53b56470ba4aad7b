//! Calls: placement of a new agent, invocations run here or forwarded to
//! the owner, and the services agents import (calls to their dependencies,
//! LLM completion).

use super::*;

impl Shared {
    pub(crate) async fn place(
        self: &Arc<Self>,
        descriptor: Descriptor,
        component_bytes: u64,
        user: Option<HostName>,
        requires_arch: Option<String>,
        algorithm: Option<String>,
    ) -> Result<Response> {
        let algorithm = match algorithm {
            None => edgehost_placement::Algorithm::AntLlm,
            Some(a) => a
                .parse()
                .map_err(|e: edgehost_placement::Error| Error::BadRequest(e.to_string()))?,
        };
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
                algorithm,
            )
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
        Ok(Response::Placement(placement))
    }

    /// Runs `name` here if it lives here, else forwards to its owner.
    pub(crate) async fn invoke(
        self: &Arc<Self>,
        name: AgentName,
        body: Vec<u8>,
        caller: Option<AgentName>,
        hops: u8,
    ) -> Result<(Vec<u8>, HostName, u64)> {
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
    pub(crate) async fn run_local(
        self: &Arc<Self>,
        slot: &Arc<AgentSlot>,
        body: Vec<u8>,
        caller: Option<AgentName>,
    ) -> Result<std::result::Result<Result<(Vec<u8>, HostName, u64)>, Vec<u8>>> {
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
            if let Err(e) = run_shared.awaken(&run_slot, &mut instance) {
                return Ok(Err(e));
            }
            if let Some(awake) = instance.as_mut()
                && awake.poisoned().is_some()
                && let Err(e) = run_shared.revive(&run_slot, awake)
            {
                return Ok(Err(e));
            }
            Ok(run_slot.call_durably(
                instance,
                (&run_shared.agent_store, &run_shared.metrics),
                body,
                caller,
            ))
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
                Ok((out, shared.name.clone(), micros))
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
    pub(crate) async fn forward(
        self: &Arc<Self>,
        name: &AgentName,
        owner: (&HostName, SocketAddr),
        body: Vec<u8>,
        caller: Option<AgentName>,
        hops: u8,
    ) -> Result<(Vec<u8>, HostName, u64)> {
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
            Response::Invoked {
                body,
                host,
                processing_us,
            } => Ok((body, host, processing_us)),
            other => Err(crate::client::unexpected(&other)),
        }
    }
}

/// Routes an agent's calls to its dependencies: to a local agent directly,
/// else over QUIC to the host that runs it. Runs on the blocking thread that
/// is executing the calling agent.
pub(crate) struct FleetRouter {
    pub(crate) shared: Weak<Shared>,
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
            let mut instance = slot.instance.try_lock().map_err(|_| {
                HostError::Failed(format!("{to:?} is busy (a call cycle through {from:?}?)"))
            })?;
            // Through the migration gate like any call: an agent being
            // handed off takes the path below, which waits while it is held
            // and follows it to its new owner.
            if matches!(*slot.gate.borrow(), Gate::Open | Gate::Migrating) {
                shared
                    .awaken(&slot, &mut instance)
                    .map_err(|e| HostError::Failed(e.to_string()))?;
                return slot
                    .call_durably(
                        instance,
                        (&shared.agent_store, &shared.metrics),
                        body,
                        Some(from),
                    )
                    .map_err(|e| HostError::Failed(e.to_string()));
            }
        }
        let handle = shared.handle.clone();
        handle
            .block_on(shared.invoke(to, body, Some(from), 0))
            .map(|(body, _host, _micros)| body)
            .map_err(|e| match e {
                Error::NotFound(m) => HostError::UnknownAgent(m),
                other => HostError::Failed(other.to_string()),
            })
    }
}

/// The host's LLM, offered to agents through `host.complete`.
pub(crate) struct HostLlm {
    pub(crate) chat: ChatClient,
    pub(crate) calibration: Arc<Calibration>,
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
                self.calibration.record_llm(
                    agent,
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
