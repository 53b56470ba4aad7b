//! The source's side of a handoff: prepare, pre-copy, hold, transfer, and
//! the commit point; or, before the commit point, the abort.

use edgehost_proto::{AgentName, HostName};

use crate::core::{Core, Op};
use crate::io::{Action, Answer, Attempt, Handoff, Message, OpId, Record, RequestId, Write};
use crate::registry::{Change, Decision, Ownership};
use crate::table::{Agent, Life, Out, Outgoing, Work};

impl Outgoing {
    /// Whether new calls wait instead of running: from the hold on.
    pub(crate) fn holds_calls(&self) -> bool {
        matches!(
            self.phase,
            Out::Holding
                | Out::Transferring
                | Out::Committing(_)
                | Out::Intending(_)
                | Out::Deciding
        )
    }

    /// Whether the handoff is past the point where it may still abort on
    /// its own: the commit point is being written or decided.
    pub(crate) fn deciding(&self) -> bool {
        matches!(
            self.phase,
            Out::Committing(_) | Out::Intending(_) | Out::Deciding
        )
    }
}

impl Core {
    pub(crate) fn migrate(&mut self, request: RequestId, name: AgentName, to: HostName) {
        if to == self.me {
            return self.done(request, Err(format!("{name:?} already runs on {to}")));
        }
        let attempt = Attempt(self.random());
        let Some(agent) = self.agents.get_mut(&name) else {
            return self.done(request, Err(format!("{name:?} is not here")));
        };
        let epoch = match &agent.life {
            Life::Serving { epoch } => *epoch,
            Life::Leaving { .. } => {
                return self.done(request, Err(format!("{name:?} is already moving")));
            }
            Life::Moved { to, .. } => {
                let to = to.clone();
                return self.done(request, Err(format!("{name:?} moved to {to}")));
            }
            _ => return self.done(request, Err(format!("{name:?} is not served here"))),
        };
        let Some(next) = epoch.checked_add(1) else {
            return self.done(request, Err(format!("{name:?} has run out of epochs")));
        };
        let handoff = Handoff {
            agent: name.clone(),
            epoch: next,
            attempt,
        };
        let spec = agent.spec.clone();
        agent.life = Life::Leaving {
            epoch,
            out: Outgoing {
                to: to.clone(),
                handoff: handoff.clone(),
                request: Some(request),
                phase: Out::Preparing,
                recovered: false,
            },
        };
        self.send(&to, Message::Prepare { handoff, spec });
        self.arm(&name, self.timing.prepare_step);
    }

    /// The source's handoff of `name`, when `from` may speak for it.
    fn outgoing(&mut self, name: &AgentName, from: &HostName, handoff: &Handoff) -> Option<Out> {
        match &self.agents.get(name)?.life {
            Life::Leaving { out, .. } if out.to == *from && out.handoff == *handoff => {
                Some(out.phase)
            }
            _ => None,
        }
    }

    fn set_phase(&mut self, name: &AgentName, phase: Out) {
        if let Some(Agent {
            life: Life::Leaving { out, .. },
            ..
        }) = self.agents.get_mut(name)
        {
            out.phase = phase;
        }
    }

    /// Source: the target answered.
    pub(crate) fn source_receives(&mut self, from: HostName, message: Message) {
        let Some(handoff) = message.handoff().cloned() else {
            return;
        };
        let name = handoff.agent.clone();
        let Some(phase) = self.outgoing(&name, &from, &handoff) else {
            return;
        };
        match (message, phase) {
            (Message::Prepared(_), Out::Preparing) => {
                self.set_phase(&name, Out::Exporting);
                if let Some(agent) = self.agents.get_mut(&name) {
                    agent.work.push_front(Work::Export);
                }
                self.arm(&name, self.timing.step);
                self.pump(&name);
            }
            (Message::Precopied(_), Out::Precopying) => {
                if self.registry.on() {
                    // Before any call waits: is the registry's majority
                    // within reach, and does it agree this host owns the
                    // agent? A host cut off from it keeps serving.
                    self.set_phase(&name, Out::Checking);
                    // Longer than the two rounds the check may take, so
                    // that a host cut off hears why from the registry.
                    self.arm(&name, self.timing.vote * 6);
                    return self.propose(&name, Change::Read, Some(2));
                }
                self.hold(&name);
            }
            (Message::Transferred(_), Out::Transferring) => {
                let Some(to) = self.leaving_target(&name) else {
                    return;
                };
                let op = self.op(&name, Op::Record);
                let record = if self.registry.on() {
                    // The intent: from its write on, this host never serves
                    // the agent again unless the registry refuses the move.
                    self.set_phase(&name, Out::Intending(op));
                    let spec = self.agents.get(&name).map(|a| a.spec.clone());
                    Record::Moving {
                        handoff,
                        to,
                        spec: spec.unwrap_or_default(),
                    }
                } else {
                    // The commit point.
                    self.set_phase(&name, Out::Committing(op));
                    Record::Moved { handoff, to }
                };
                if let Some(agent) = self.agents.get_mut(&name) {
                    agent.deadline = None;
                }
                self.push(Action::Persist {
                    op,
                    writes: vec![Write::Record(name, record)],
                });
            }
            (Message::Refused { reason, .. }, phase)
                if !matches!(
                    phase,
                    Out::Committing(_) | Out::Intending(_) | Out::Deciding
                ) =>
            {
                self.abort(&name, format!("{from} refused: {reason}"));
            }
            _ => {}
        }
    }

    /// Source: the hold. Calls not yet started wait from here on; the final
    /// export runs once the running call ends.
    fn hold(&mut self, name: &AgentName) {
        self.set_phase(name, Out::Holding);
        if let Some(agent) = self.agents.get_mut(name) {
            let mut kept = std::collections::VecDeque::new();
            for work in agent.work.drain(..) {
                match work {
                    Work::Call(call, body) => agent.held.push_back((call, body)),
                    Work::Export => kept.push_back(Work::Export),
                }
            }
            agent.work = kept;
            agent.work.push_front(Work::Export);
        }
        self.arm(name, self.timing.step);
        self.pump(name);
    }

    /// Source: the registry answered the check before the hold.
    pub(crate) fn check_decided(&mut self, name: &AgentName, decision: Decision) {
        let Some(Agent {
            life: Life::Leaving { epoch, out },
            ..
        }) = self.agents.get(name)
        else {
            return;
        };
        if out.phase != Out::Checking {
            return;
        }
        match decision {
            Ok((
                Some(Ownership::Owned {
                    host, epoch: at, ..
                }),
                _,
            )) if host == self.me && at == *epoch => self.hold(name),
            Ok((value, _)) => {
                self.abort(name, format!("the registry holds {value:?}, not this host"))
            }
            Err(e) => self.abort(name, e),
        }
    }

    fn leaving_target(&self, name: &AgentName) -> Option<HostName> {
        match &self.agents.get(name)?.life {
            Life::Leaving { out, .. } => Some(out.to.clone()),
            _ => None,
        }
    }

    /// Source: an export for the handoff ended.
    pub(crate) fn leaving_exported(&mut self, name: &AgentName, result: Result<Vec<u8>, String>) {
        let Some(Agent {
            life: Life::Leaving { out, .. },
            ..
        }) = self.agents.get(name)
        else {
            return;
        };
        let (to, handoff, phase) = (out.to.clone(), out.handoff.clone(), out.phase);
        let state = match result {
            Ok(state) => state,
            Err(e) => return self.abort(name, format!("export-state failed: {e}")),
        };
        match phase {
            Out::Exporting => {
                self.set_phase(name, Out::Precopying);
                self.send(&to, Message::Precopy { handoff, state });
                self.arm(name, self.timing.transfer_step);
            }
            Out::Holding => {
                self.set_phase(name, Out::Transferring);
                self.send(&to, Message::Transfer { handoff, state });
                self.arm(name, self.timing.transfer_step);
            }
            _ => {}
        }
    }

    /// Source: a step took too long.
    pub(crate) fn leaving_timeout(&mut self, name: &AgentName) {
        let phase = match &self.agents.get(name).map(|a| &a.life) {
            Some(Life::Leaving { out, .. }) => out.phase,
            _ => return,
        };
        if !matches!(
            phase,
            Out::Committing(_) | Out::Intending(_) | Out::Deciding
        ) {
            self.abort(name, format!("no answer in time ({phase:?})"));
        }
    }

    /// Source: before the commit point, the handoff ends and the agent
    /// serves here again, its state as it was.
    fn abort(&mut self, name: &AgentName, why: String) {
        let Some(agent) = self.agents.get_mut(name) else {
            return;
        };
        let Life::Leaving { epoch, out } =
            std::mem::replace(&mut agent.life, Life::Serving { epoch: 0 })
        else {
            return;
        };
        agent.life = Life::Serving { epoch };
        agent.deadline = None;
        agent.work.retain(|w| !matches!(w, Work::Export));
        // Held calls run, in their order, before anything that came later.
        while let Some((call, body)) = agent.held.pop_back() {
            agent.work.push_front(Work::Call(call, body));
        }
        if matches!(out.phase, Out::Deciding) {
            // The record says the agent is moving: it says serving again.
            let spec = agent.spec.clone();
            let op = self.op(name, Op::Record);
            self.push(Action::Persist {
                op,
                writes: vec![Write::Record(name.clone(), Record::Active { epoch, spec })],
            });
        }
        if out.recovered {
            // No instance after a restart: made anew from the store.
            let op = self.op(name, Op::Load);
            if let Some(agent) = self.agents.get_mut(name) {
                agent.life = Life::Starting {
                    epoch,
                    op,
                    creating: None,
                };
            }
            self.push(Action::Reload {
                op,
                agent: name.clone(),
            });
        }
        self.send(&out.to, Message::Abort(out.handoff));
        if let Some(request) = out.request {
            self.done(
                request,
                Err(format!(
                    "migration aborted, {name:?} still serves here: {why}"
                )),
            );
        }
        self.flush(name);
        self.pump(name);
    }

    /// Source: the commit point's write (no registry), or the intent's
    /// (registry), ended.
    pub(crate) fn tombstone_written(
        &mut self,
        name: &AgentName,
        op: OpId,
        result: Result<(), String>,
    ) {
        let Some(agent) = self.agents.get_mut(name) else {
            return;
        };
        let Life::Leaving { out, .. } = &mut agent.life else {
            return;
        };
        let intent = match out.phase {
            Out::Committing(writing) if writing == op => false,
            Out::Intending(writing) if writing == op => true,
            _ => return,
        };
        if let Err(e) = result {
            return self.abort(name, format!("could not record the handoff: {e}"));
        }
        if intent {
            out.phase = Out::Deciding;
            return self.propose_move(name);
        }
        self.moved(name);
    }

    /// Source: asks the registry to move `name`, until it answers.
    pub(crate) fn propose_move(&mut self, name: &AgentName) {
        let Some(Agent {
            life: Life::Leaving { epoch, out },
            ..
        }) = self.agents.get(name)
        else {
            return;
        };
        let change = Change::Move {
            from: self.me.clone(),
            epoch: *epoch,
            to: out.to.clone(),
            attempt: out.handoff.attempt,
        };
        self.propose(name, change, None);
    }

    /// Source: the registry decided the move.
    pub(crate) fn move_decided(&mut self, name: &AgentName, decision: Decision) {
        let Some(Agent {
            life: Life::Leaving { out, .. },
            ..
        }) = self.agents.get(name)
        else {
            return;
        };
        if out.phase != Out::Deciding {
            return;
        }
        let (to, handoff) = (out.to.clone(), out.handoff.clone());
        match decision {
            // The move holds, or the registry is past the epoch it moves
            // to: only this host could move the agent on from its epoch,
            // and the one move it proposed at that epoch is this one (a
            // restart proposes the same again). Found by the simulator
            // (seed 35 of the registry's first run): a source restarted
            // while its target had already moved the agent on, read the
            // newer owner as a refusal, and served again.
            Ok((value, holds))
                if holds || value.as_ref().is_some_and(|v| v.epoch() >= handoff.epoch) =>
            {
                // The commit point. The tombstone replaces the intent; until
                // it is durable a restart asks the registry again and gets
                // the same answer.
                let op = self.op(name, Op::Record);
                self.push(Action::Persist {
                    op,
                    writes: vec![Write::Record(
                        name.clone(),
                        Record::Moved {
                            handoff,
                            to: to.clone(),
                        },
                    )],
                });
                self.moved(name);
            }
            Ok((value, _)) => {
                self.abort(name, format!("the registry holds {value:?}, not this host"));
            }
            Err(e) => {
                // Never given up on; a new proposal asks again.
                let _ = e;
                self.propose_move(name);
            }
        }
    }

    /// Source: past the commit point. Calls that ran before the final
    /// export are acknowledged (the target made their state durable), the
    /// others go to the target.
    fn moved(&mut self, name: &AgentName) {
        let Some(agent) = self.agents.get_mut(name) else {
            return;
        };
        let Life::Leaving { out, .. } = &agent.life else {
            return;
        };
        let (to, handoff, request) = (out.to.clone(), out.handoff.clone(), out.request);
        agent.life = Life::Moved {
            handoff: handoff.clone(),
            to: to.clone(),
        };
        agent.commit.staged = None;
        let waiting: Vec<_> = std::mem::take(&mut agent.commit.waiting);
        let held: Vec<_> = agent.held.drain(..).collect();
        let queued: Vec<_> = crate::calls::drain_calls(agent);
        for (_, call, reply) in waiting {
            self.reply(call, Answer::Done(reply));
        }
        for (call, _) in held.into_iter().chain(queued) {
            self.reply(call, Answer::Moved(to.clone()));
        }
        self.ops
            .retain(|_, (agent, kind)| agent != name || matches!(kind, Op::State | Op::Record));
        self.push(Action::Drop {
            agent: name.clone(),
        });
        self.send(&to, Message::Commit(handoff));
        if let Some(request) = request {
            self.done(request, Ok(()));
        }
    }
}
