//! The state machine: inputs in, actions out, no I/O and no clock of its
//! own.

use std::collections::{BTreeMap, VecDeque};

use edgehost_proto::{AgentName, HostName};

use crate::calls::drain_calls;
use crate::io::{Action, Answer, CallId, Input, Message, OpId, Record, RequestId, Write};
use crate::registry::{Acceptor, Change, Decision, Ownership, Registry};
use crate::table::{Agent, AgentTable, In, Incoming, Life, Out, Outgoing};
use crate::{Time, Timing};

/// What a pending operation was for, to route its completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// A call running in the sandbox.
    Run(CallId),
    /// An export for a handoff.
    Export,
    /// A load, reload or import.
    Load,
    /// A durable write of a call's state (group commit).
    State,
    /// Any other durable write; the agent's life names it.
    Record,
}

/// One host's ownership and migration logic.
///
/// The shell feeds it [`Input`]s with [`Core::handle`], carries out the
/// [`Action`]s [`Core::poll`] gives back, and calls `handle(now,
/// Input::Tick)` at [`Core::poll_timeout`].
#[derive(Debug)]
pub struct Core {
    pub(crate) me: HostName,
    pub(crate) timing: Timing,
    pub(crate) now: Time,
    pub(crate) agents: AgentTable,
    pub(crate) ops: BTreeMap<OpId, (AgentName, Op)>,
    pub(crate) registry: Registry,
    next_op: u64,
    rng: u64,
    outbox: VecDeque<Action>,
}

/// How many rounds a claim, a release or a read of the registry gets before
/// it fails.
const REGISTRY_TRIES: u32 = 4;

impl Core {
    /// A host named `me` with an empty store. `seed` makes its handoff
    /// attempts unique: give each start of a host another one.
    pub fn new(me: HostName, timing: Timing, seed: u64) -> Self {
        let mut core = Core {
            me,
            timing,
            now: Time::ZERO,
            agents: AgentTable::new(),
            ops: BTreeMap::new(),
            registry: Registry::default(),
            next_op: 0,
            rng: seed,
            outbox: VecDeque::new(),
        };
        core.registry.nonce = core.random();
        core
    }

    /// Names and commit points are agreed by a majority of `members`
    /// (this host among them or not); `acceptors` is what this host's store
    /// holds of its part as a member. Without a call to this, every host
    /// decides alone, as before there was a registry.
    pub fn with_registry(
        mut self,
        members: Vec<HostName>,
        acceptors: impl IntoIterator<Item = (AgentName, Acceptor)>,
    ) -> Self {
        self.registry.members = members;
        self.registry.acceptors = acceptors.into_iter().collect();
        // Handoffs a restart found waiting for the registry ask it again.
        let deciding: Vec<AgentName> = self
            .agents
            .iter()
            .filter(
                |(_, a)| matches!(&a.life, Life::Leaving { out, .. } if out.phase == Out::Deciding),
            )
            .map(|(n, _)| n.clone())
            .collect();
        for name in deciding {
            self.propose_move(&name);
        }
        self
    }

    /// The registry's members; empty when there is none.
    pub fn registry(&self) -> &[HostName] {
        &self.registry.members
    }

    /// A host restarted on a store holding `records`: active agents are
    /// reloaded and serve again, prepared ones are settled with their
    /// sources, tombstones are kept.
    pub fn recover(
        me: HostName,
        timing: Timing,
        seed: u64,
        now: Time,
        records: impl IntoIterator<Item = (AgentName, Record)>,
    ) -> Self {
        let mut core = Core::new(me, timing, seed);
        core.now = now;
        for (name, record) in records {
            let life = match record {
                Record::Active { epoch, spec } => {
                    let op = core.op(&name, Op::Load);
                    let life = Life::Starting {
                        epoch,
                        op,
                        creating: None,
                    };
                    core.push(Action::Reload {
                        op,
                        agent: name.clone(),
                    });
                    Agent::new(life, spec)
                }
                Record::Prepared {
                    handoff,
                    from,
                    spec,
                } => {
                    let op = core.op(&name, Op::Load);
                    let life = Life::Arriving(Incoming {
                        from,
                        handoff,
                        phase: In::Restoring(op),
                        aborted: false,
                    });
                    core.push(Action::Reload {
                        op,
                        agent: name.clone(),
                    });
                    Agent::new(life, spec)
                }
                Record::Moved { handoff, to } => {
                    Agent::new(Life::Moved { handoff, to }, Vec::new())
                }
                Record::Moving { handoff, to, spec } => {
                    // It stopped serving and asked the registry to move it:
                    // it asks again (`with_registry`), and serves only if the
                    // registry says it still owns the agent.
                    let life = Life::Leaving {
                        epoch: handoff.epoch.saturating_sub(1),
                        out: Outgoing {
                            to,
                            handoff,
                            request: None,
                            phase: Out::Deciding,
                            recovered: true,
                        },
                    };
                    Agent::new(life, spec)
                }
            };
            core.agents.insert(name, life);
        }
        core
    }

    /// This host's name.
    pub fn name(&self) -> &HostName {
        &self.me
    }

    /// The agents this host knows, with their lifecycles.
    pub fn agents(&self) -> &AgentTable {
        &self.agents
    }

    /// The next action for the shell, if any.
    pub fn poll(&mut self) -> Option<Action> {
        self.outbox.pop_front()
    }

    /// When the core next wants a [`Input::Tick`].
    pub fn poll_timeout(&self) -> Option<Time> {
        let agents = self.agents.values().filter_map(|a| a.deadline).min();
        match (agents, self.registry_timeout()) {
            (Some(a), Some(r)) => Some(a.min(r)),
            (a, r) => a.or(r),
        }
    }

    /// Takes one input at `now` (never earlier than the last), then fires
    /// the timers that are due.
    pub fn handle(&mut self, now: Time, input: Input) {
        self.now = self.now.max(now);
        match input {
            Input::Tick => {}
            Input::Received { from, message } => self.receive(from, message),
            Input::Call { call, agent, body } => self.call(call, agent, body),
            Input::Create {
                request,
                agent,
                spec,
            } => self.create(request, agent, spec),
            Input::Migrate { request, agent, to } => self.migrate(request, agent, to),
            Input::Release { request, agent } => self.release(request, agent),
            Input::Persisted { op, result } => self.persisted(op, result),
            Input::Ran { op, result } => self.ran(op, result),
            Input::Exported { op, result } => self.exported(op, result),
            Input::Loaded { op, result } => self.loaded(op, result),
        }
        self.fire_timers();
    }

    fn fire_timers(&mut self) {
        let due: Vec<AgentName> = self
            .agents
            .iter()
            .filter(|(_, a)| a.deadline.is_some_and(|d| d <= self.now))
            .map(|(n, _)| n.clone())
            .collect();
        for name in due {
            if let Some(agent) = self.agents.get_mut(&name) {
                agent.deadline = None;
            }
            self.timer(&name);
        }
        self.registry_timers();
    }

    pub(crate) fn send(&mut self, to: &HostName, message: Message) {
        self.push(Action::Send {
            to: to.clone(),
            message,
        });
    }

    pub(crate) fn arm(&mut self, name: &AgentName, after: std::time::Duration) {
        let at = self.now + after;
        if let Some(agent) = self.agents.get_mut(name) {
            agent.deadline = Some(at);
        }
    }

    /// Source: the operator asks to move `name` to `to`.
    pub(crate) fn push(&mut self, action: Action) {
        self.outbox.push_back(action);
    }

    pub(crate) fn op(&mut self, agent: &AgentName, kind: Op) -> OpId {
        let op = self.next_op();
        self.ops.insert(op, (agent.clone(), kind));
        op
    }

    /// A fresh operation number, not tied to an agent.
    pub(crate) fn next_op(&mut self) -> OpId {
        self.next_op += 1;
        OpId(self.next_op)
    }

    /// A random number (splitmix64), for handoff attempts.
    pub(crate) fn random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub(crate) fn reply(&mut self, call: CallId, answer: Answer) {
        self.push(Action::Reply { call, answer });
    }

    pub(crate) fn done(&mut self, request: RequestId, result: Result<(), String>) {
        self.push(Action::Done { request, result });
    }

    fn persisted(&mut self, op: OpId, result: Result<(), String>) {
        if self.vote_persisted(op, &result) {
            return;
        }
        let Some((name, kind)) = self.ops.remove(&op) else {
            return;
        };
        match kind {
            Op::State => {
                let Some(agent) = self.agents.get_mut(&name) else {
                    return;
                };
                let Some((writing, seq)) = agent.commit.writing else {
                    return;
                };
                if writing != op {
                    return;
                }
                agent.commit.writing = None;
                match result {
                    Ok(()) => self.acknowledge(&name, seq),
                    Err(e) => {
                        // Not durable: the calls fail, and the instance,
                        // ahead of the store, is made anew from it.
                        let agent = self.agents.get_mut(&name).expect("looked up above");
                        agent.commit.staged = None;
                        agent.poisoned = true;
                        for (_, call, _) in std::mem::take(&mut agent.commit.waiting) {
                            self.reply(call, Answer::Failed(format!("not written: {e}")));
                        }
                    }
                }
                self.flush(&name);
                self.pump(&name);
            }
            Op::Record => self.record_written(&name, op, result),
            _ => {}
        }
    }

    fn loaded(&mut self, op: OpId, result: Result<(), String>) {
        let Some((name, Op::Load)) = self.ops.remove(&op) else {
            return;
        };
        let Some(agent) = self.agents.get_mut(&name) else {
            return;
        };
        if agent.busy == Some(op) {
            // A poisoned instance made anew.
            agent.busy = None;
            agent.poisoned = result.is_err();
            if let Err(e) = result {
                for (call, _) in drain_calls(agent) {
                    self.reply(call, Answer::Failed(format!("the agent cannot start: {e}")));
                }
            }
            return self.pump(&name);
        }
        match &agent.life {
            Life::Starting {
                epoch,
                op: loading,
                creating,
            } if *loading == op => {
                let (epoch, creating) = (*epoch, *creating);
                match (result, creating) {
                    (Ok(()), None) => {
                        agent.life = Life::Serving { epoch };
                        self.pump(&name);
                    }
                    (Ok(()), Some(request)) => {
                        let spec = agent.spec.clone();
                        let write = self.op(&name, Op::Record);
                        if let Some(agent) = self.agents.get_mut(&name) {
                            agent.life = Life::Recording {
                                epoch,
                                op: write,
                                request,
                            };
                        }
                        self.push(Action::Persist {
                            op: write,
                            writes: vec![Write::Record(name, Record::Active { epoch, spec })],
                        });
                    }
                    (Err(e), creating) => {
                        // Nothing of it was written: the agent is not here.
                        let mut agent = self.agents.remove(&name).expect("looked up above");
                        for (call, _) in drain_calls(&mut agent) {
                            self.reply(
                                call,
                                Answer::Failed(format!("the agent cannot start: {e}")),
                            );
                        }
                        if let Some(request) = creating {
                            self.done(request, Err(format!("the agent cannot start: {e}")));
                            self.unclaim(&name, epoch);
                        }
                    }
                }
            }
            Life::Arriving(_) => self.arriving_loaded(&name, op, result),
            _ => {}
        }
    }

    fn exported(&mut self, op: OpId, result: Result<Vec<u8>, String>) {
        let Some((name, Op::Export)) = self.ops.remove(&op) else {
            return;
        };
        let Some(agent) = self.agents.get_mut(&name) else {
            return;
        };
        if agent.busy != Some(op) {
            return;
        }
        agent.busy = None;
        self.leaving_exported(&name, result);
        self.pump(&name);
    }

    fn create(&mut self, request: RequestId, name: AgentName, spec: Vec<u8>) {
        if let Some(agent) = self.agents.get(&name) {
            let why = match &agent.life {
                Life::Moved { to, .. } => format!("{name:?} exists and runs on {to}"),
                _ => format!("{name:?} exists here"),
            };
            return self.done(request, Err(why));
        }
        if self.registry.on() {
            // The name first: a majority of the registry must agree that
            // nobody holds it.
            self.agents
                .insert(name.clone(), Agent::new(Life::Claiming { request }, spec));
            let attempt = crate::io::Attempt(self.random());
            let change = Change::Claim {
                host: self.me.clone(),
                attempt,
            };
            return self.propose(&name, change, Some(REGISTRY_TRIES));
        }
        self.start(name, spec, 1, request);
    }

    /// A new agent, its name granted at `epoch`: its instance is made, then
    /// its record written.
    fn start(&mut self, name: AgentName, spec: Vec<u8>, epoch: u64, request: RequestId) {
        let op = self.op(&name, Op::Load);
        self.agents.insert(
            name.clone(),
            Agent::new(
                Life::Starting {
                    epoch,
                    op,
                    creating: Some(request),
                },
                spec.clone(),
            ),
        );
        self.push(Action::Load {
            op,
            agent: name,
            spec,
        });
    }

    /// The registry answered a claim.
    pub(crate) fn claimed(&mut self, name: &AgentName, decision: Decision) {
        let Some(Agent {
            life: Life::Claiming { request },
            ..
        }) = self.agents.get(name)
        else {
            return;
        };
        let request = *request;
        let agent = self.agents.remove(name).expect("looked up above");
        match decision {
            Ok((Some(Ownership::Owned { host, epoch, .. }), true)) if host == self.me => {
                self.start(name.clone(), agent.spec, epoch, request);
            }
            Ok((Some(Ownership::Owned { host, .. }), _)) => {
                self.done(request, Err(format!("{name:?} exists and runs on {host}")));
            }
            Ok((value, _)) => self.done(
                request,
                Err(format!("the registry would not grant {name:?}: {value:?}")),
            ),
            Err(e) => self.done(request, Err(format!("cannot create {name:?}: {e}"))),
        }
    }

    /// Gives a name this host holds in the registry back, if there is a
    /// registry: best effort, since the agent is gone from here either way.
    fn unclaim(&mut self, name: &AgentName, epoch: u64) {
        if self.registry.on() {
            let change = Change::Release {
                host: self.me.clone(),
                epoch,
            };
            self.propose(name, change, Some(REGISTRY_TRIES));
        }
    }

    fn release(&mut self, request: RequestId, name: AgentName) {
        let Some(agent) = self.agents.get_mut(&name) else {
            return self.done(request, Err(format!("{name:?} is not here")));
        };
        let epoch = match &agent.life {
            Life::Serving { epoch } => *epoch,
            Life::Leaving { .. } => {
                return self.done(
                    request,
                    Err(format!(
                        "{name:?} is being migrated; release it once that ends"
                    )),
                );
            }
            Life::Moved { to, .. } => {
                let to = to.clone();
                return self.done(request, Err(format!("{name:?} moved to {to}")));
            }
            _ => return self.done(request, Err(format!("{name:?} is not served here"))),
        };
        let op = self.op(&name, Op::Record);
        let agent = self.agents.get_mut(&name).expect("looked up above");
        agent.life = Life::Releasing { epoch, op, request };
        agent.commit.staged = None;
        self.push(Action::Persist {
            op,
            writes: vec![Write::Forget(name)],
        });
    }

    /// A durable write other than a call's state ended.
    fn record_written(&mut self, name: &AgentName, op: OpId, result: Result<(), String>) {
        let Some(agent) = self.agents.get_mut(name) else {
            return;
        };
        match &agent.life {
            Life::Recording {
                epoch,
                op: writing,
                request,
            } if *writing == op => {
                let (epoch, request) = (*epoch, *request);
                match result {
                    Ok(()) => {
                        agent.life = Life::Serving { epoch };
                        self.done(request, Ok(()));
                        self.pump(name);
                    }
                    Err(e) => {
                        self.remove(name, |_| Answer::NotHere);
                        self.done(request, Err(format!("could not record the agent: {e}")));
                        self.unclaim(name, epoch);
                    }
                }
            }
            Life::Releasing {
                epoch,
                op: writing,
                request,
            } if *writing == op => {
                let (epoch, request) = (*epoch, *request);
                match result {
                    Ok(()) => {
                        self.remove(name, |_| Answer::NotHere);
                        self.done(request, Ok(()));
                        self.unclaim(name, epoch);
                    }
                    Err(e) => {
                        // Nothing was removed: it serves on.
                        agent.life = Life::Serving { epoch };
                        self.done(request, Err(format!("could not release: {e}")));
                        self.pump(name);
                    }
                }
            }
            Life::Leaving { .. } => self.tombstone_written(name, op, result),
            Life::Arriving(_) => self.arriving_written(name, op, result),
            _ => {}
        }
    }

    /// Takes the agent out of the table and drops its instance. Every call
    /// still queued, held, running or waiting for a write is answered with
    /// `answer`.
    pub(crate) fn remove(&mut self, name: &AgentName, answer: impl Fn(&str) -> Answer) {
        let Some(mut agent) = self.agents.remove(name) else {
            return;
        };
        let mut calls: Vec<CallId> = drain_calls(&mut agent)
            .into_iter()
            .map(|(c, _)| c)
            .collect();
        calls.extend(agent.commit.waiting.iter().map(|(_, c, _)| *c));
        if let Some(op) = agent.busy
            && let Some((_, Op::Run(call))) = self.ops.get(&op)
        {
            calls.push(*call);
        }
        self.ops.retain(|_, (agent, _)| agent != name);
        for call in calls {
            self.reply(call, answer(name));
        }
        self.push(Action::Drop {
            agent: name.clone(),
        });
    }

    fn timer(&mut self, name: &AgentName) {
        let Some(agent) = self.agents.get(name) else {
            return;
        };
        match &agent.life {
            Life::Leaving { .. } => self.leaving_timeout(name),
            Life::Arriving(_) => self.arriving_timeout(name),
            _ => {}
        }
    }
}
