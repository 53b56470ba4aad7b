//! Calls: one at a time per instance, and answered only once what they
//! changed is durable (group commit: whoever writes takes the newest state,
//! so calls made meanwhile share one write).

use edgehost_proto::AgentName;

use crate::core::{Core, Op};
use crate::io::{Action, Answer, CallId, OpId, Write};
use crate::table::{Agent, Life, Work};

/// How many calls may wait for one agent, queued behind the running one or
/// held during a handoff. Past it a call is answered [`Answer::Busy`] at
/// once: a host's memory stays bounded however fast its clients call.
pub const MAX_WAITING_CALLS: usize = 1024;

impl Core {
    pub(crate) fn call(&mut self, call: CallId, name: AgentName, body: Vec<u8>) {
        let Some(agent) = self.agents.get_mut(&name) else {
            return self.reply(call, Answer::NotHere);
        };
        let waiting = agent.work.len() + agent.held.len();
        if waiting >= MAX_WAITING_CALLS && !matches!(agent.life, Life::Moved { .. }) {
            return self.reply(
                call,
                Answer::Busy(format!(
                    "{waiting} calls wait for agent {name} already; try again later"
                )),
            );
        }
        match &agent.life {
            Life::Starting { .. } | Life::Recording { .. } | Life::Serving { .. } => {
                agent.work.push_back(Work::Call(call, body));
            }
            Life::Leaving { out, .. } if out.holds_calls() => agent.held.push_back((call, body)),
            Life::Leaving { .. } => agent.work.push_back(Work::Call(call, body)),
            Life::Moved { to, .. } => {
                let to = to.clone();
                return self.reply(call, Answer::Moved(to));
            }
            Life::Claiming { .. } | Life::Releasing { .. } | Life::Arriving(_) => {
                return self.reply(call, Answer::NotHere);
            }
        }
        self.pump(&name);
    }

    /// Starts the agent's next sandbox work, if its instance is free.
    pub(crate) fn pump(&mut self, name: &AgentName) {
        let Some(agent) = self.agents.get_mut(name) else {
            return;
        };
        if agent.busy.is_some() {
            return;
        }
        let runs = match &agent.life {
            Life::Serving { .. } => true,
            Life::Leaving { out, .. } => !out.deciding(),
            _ => false,
        };
        if !runs {
            return;
        }
        if agent.poisoned {
            if agent.commit.idle() {
                let op = self.op(name, Op::Load);
                if let Some(agent) = self.agents.get_mut(name) {
                    agent.busy = Some(op);
                }
                self.push(Action::Reload {
                    op,
                    agent: name.clone(),
                });
            }
            return;
        }
        let Some(work) = agent.work.pop_front() else {
            return;
        };
        let (kind, action) = match work {
            Work::Call(call, body) => (Op::Run(call), Some(body)),
            Work::Export => (Op::Export, None),
        };
        let op = self.op(name, kind);
        if let Some(agent) = self.agents.get_mut(name) {
            agent.busy = Some(op);
        }
        let agent = name.clone();
        self.push(match action {
            Some(body) => Action::Run { op, agent, body },
            None => Action::Export { op, agent },
        });
    }

    pub(crate) fn ran(&mut self, op: OpId, result: Result<(Vec<u8>, Option<Vec<u8>>), String>) {
        let Some((name, Op::Run(call))) = self.ops.remove(&op) else {
            return;
        };
        let Some(agent) = self.agents.get_mut(&name) else {
            return;
        };
        if agent.busy != Some(op) {
            return;
        }
        agent.busy = None;
        match result {
            Ok((reply, None)) => {
                // It changed nothing, but it may have read a write that is
                // not durable yet: it waits for the newest one.
                let c = &mut agent.commit;
                if c.idle() {
                    self.reply(call, Answer::Done(reply));
                } else {
                    c.waiting.push((c.seq, call, reply));
                }
            }
            Ok((reply, Some(state))) => {
                let c = &mut agent.commit;
                c.seq += 1;
                c.staged = Some((c.seq, state));
                c.waiting.push((c.seq, call, reply));
                self.flush(&name);
            }
            Err(e) => {
                agent.poisoned = true;
                self.reply(call, Answer::Failed(format!("the call failed: {e}")));
            }
        }
        self.pump(&name);
    }

    /// Writes the newest staged state if no write is in flight.
    pub(crate) fn flush(&mut self, name: &AgentName) {
        let Some(agent) = self.agents.get_mut(name) else {
            return;
        };
        // A handoff past its commit point answers the waiting calls from the
        // target's durable copy instead; a released agent writes nothing.
        let writes = matches!(
            &agent.life,
            Life::Serving { .. } | Life::Starting { .. } | Life::Recording { .. }
        ) || matches!(&agent.life, Life::Leaving { out, .. } if !out.deciding());
        if !writes || agent.commit.writing.is_some() {
            return;
        }
        let Some((seq, state)) = agent.commit.staged.take() else {
            return;
        };
        let op = self.op(name, Op::State);
        if let Some(agent) = self.agents.get_mut(name) {
            agent.commit.writing = Some((op, seq));
        }
        self.push(Action::Persist {
            op,
            writes: vec![Write::State(name.clone(), state)],
        });
    }

    /// Answers the calls whose effects are durable up to `seq`.
    pub(crate) fn acknowledge(&mut self, name: &AgentName, seq: u64) {
        let Some(agent) = self.agents.get_mut(name) else {
            return;
        };
        agent.commit.durable = agent.commit.durable.max(seq);
        let durable = agent.commit.durable;
        let (ready, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut agent.commit.waiting)
            .into_iter()
            .partition(|(s, _, _)| *s <= durable);
        agent.commit.waiting = rest;
        for (_, call, reply) in ready {
            self.reply(call, Answer::Done(reply));
        }
    }
}

/// Takes every call queued or held for the agent.
pub(crate) fn drain_calls(agent: &mut Agent) -> Vec<(CallId, Vec<u8>)> {
    let mut calls: Vec<(CallId, Vec<u8>)> = agent
        .work
        .drain(..)
        .filter_map(|w| match w {
            Work::Call(call, body) => Some((call, body)),
            Work::Export => None,
        })
        .collect();
    calls.extend(agent.held.drain(..));
    calls
}
