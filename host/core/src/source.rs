//! The source's side of a handoff: prepare, pre-copy, hold, transfer, and
//! the commit point; or, before the commit point, the abort.

use edgehost_proto::{AgentName, HostName};

use crate::core::{Core, Op};
use crate::io::{Action, Answer, Attempt, Handoff, Message, Record, RequestId, Write};
use crate::table::{Agent, Life, Out, Outgoing, Work};

impl Outgoing {
    /// Whether new calls wait instead of running: from the hold on.
    pub(crate) fn holds_calls(&self) -> bool {
        matches!(
            self.phase,
            Out::Holding | Out::Transferring | Out::Committing(_)
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
                request,
                phase: Out::Preparing,
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
        let handoff = message.handoff().clone();
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
                // The hold: calls not yet started wait from here on.
                self.set_phase(&name, Out::Holding);
                if let Some(agent) = self.agents.get_mut(&name) {
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
                self.arm(&name, self.timing.step);
                self.pump(&name);
            }
            (Message::Transferred(_), Out::Transferring) => {
                // The commit point.
                let Some(to) = self.leaving_target(&name) else {
                    return;
                };
                let op = self.op(&name, Op::Record);
                self.set_phase(&name, Out::Committing(op));
                if let Some(agent) = self.agents.get_mut(&name) {
                    agent.deadline = None;
                }
                self.push(Action::Persist {
                    op,
                    writes: vec![Write::Record(name, Record::Moved { handoff, to })],
                });
            }
            (Message::Refused { reason, .. }, phase) if !matches!(phase, Out::Committing(_)) => {
                self.abort(&name, format!("{from} refused: {reason}"));
            }
            _ => {}
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
        if !matches!(phase, Out::Committing(_)) {
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
        self.send(&out.to, Message::Abort(out.handoff));
        self.done(
            out.request,
            Err(format!(
                "migration aborted, {name:?} still serves here: {why}"
            )),
        );
        self.flush(name);
        self.pump(name);
    }

    /// Source: the commit point's write ended.
    pub(crate) fn tombstone_written(
        &mut self,
        name: &AgentName,
        op: crate::io::OpId,
        result: Result<(), String>,
    ) {
        let Some(agent) = self.agents.get_mut(name) else {
            return;
        };
        let Life::Leaving { out, .. } = &agent.life else {
            return;
        };
        if out.phase != Out::Committing(op) {
            return;
        }
        if let Err(e) = result {
            return self.abort(name, format!("could not record the handoff: {e}"));
        }
        let (to, handoff, request) = (out.to.clone(), out.handoff.clone(), out.request);
        agent.life = Life::Moved {
            handoff: handoff.clone(),
            to: to.clone(),
        };
        agent.commit.staged = None;
        // Every call that ran before the final export is in the state the
        // target has made durable: the waiting ones are acknowledged.
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
            .retain(|_, (agent, kind)| agent != name || *kind == Op::State);
        self.push(Action::Drop {
            agent: name.clone(),
        });
        self.send(&to, Message::Commit(handoff));
        self.done(request, Ok(()));
    }
}
