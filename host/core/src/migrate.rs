//! Handoffs: the source's side (prepare, pre-copy, hold, transfer, commit
//! point) and the target's (load, keep, import, write, serve), and the
//! question a target asks when its commit does not come.

use edgehost_proto::{AgentName, HostName};

use crate::core::{Core, Op};
use crate::io::{Action, Answer, Attempt, Handoff, Message, Record, RequestId, Verdict, Write};
use crate::table::{Agent, In, Incoming, Life, Out, Outgoing, Work};

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
    fn send(&mut self, to: &HostName, message: Message) {
        self.push(Action::Send {
            to: to.clone(),
            message,
        });
    }

    fn arm(&mut self, name: &AgentName, after: std::time::Duration) {
        let at = self.now + after;
        if let Some(agent) = self.agents.get_mut(name) {
            agent.deadline = Some(at);
        }
    }

    /// Source: the operator asks to move `name` to `to`.
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
    fn source_receives(&mut self, from: HostName, message: Message) {
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

    /// Source: the instance went idle; nothing to do here, since the export
    /// queued at the hold runs as soon as the running call ends.
    pub(crate) fn leaving_idle(&mut self, _name: &AgentName) {}

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
        let Life::Leaving { epoch, out } = std::mem::replace(&mut agent.life, Life::Serving { epoch: 0 })
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
        let queued: Vec<_> = crate::core::drain_calls(agent);
        for (_, call, reply) in waiting {
            self.reply(call, Answer::Done(reply));
        }
        for (call, _) in held.into_iter().chain(queued) {
            self.reply(call, Answer::Moved(to.clone()));
        }
        self.ops.retain(|_, (agent, kind)| agent != name || *kind == Op::State);
        self.push(Action::Drop {
            agent: name.clone(),
        });
        self.send(&to, Message::Commit(handoff));
        self.done(request, Ok(()));
    }

    /// Takes a message from a peer.
    pub(crate) fn receive(&mut self, from: HostName, message: Message) {
        match message {
            Message::Prepared(_)
            | Message::Precopied(_)
            | Message::Transferred(_)
            | Message::Refused { .. } => self.source_receives(from, message),
            Message::Committed(_) => {}
            Message::Outcome(handoff) => {
                let verdict = self.verdict(&from, &handoff);
                self.send(&from, Message::OutcomeIs { handoff, verdict });
            }
            Message::Prepare { handoff, spec } => self.prepare(from, handoff, spec),
            Message::Precopy { handoff, .. } => {
                if self.arriving_phase(&from, &handoff, |p| matches!(p, In::Ready)) {
                    self.send(&from, Message::Precopied(handoff));
                }
            }
            Message::Transfer { handoff, state } => {
                if self.arriving_phase(&from, &handoff, |p| matches!(p, In::Ready)) {
                    let name = handoff.agent.clone();
                    let op = self.op(&name, Op::Load);
                    self.set_in(&name, In::Importing(op, state.clone()));
                    self.push(Action::Import {
                        op,
                        agent: name,
                        state,
                    });
                } else if self.arriving_phase(&from, &handoff, |p| matches!(p, In::Imported)) {
                    // A duplicate: the state is durable already.
                    self.send(&from, Message::Transferred(handoff));
                } else if !self.arriving_phase(&from, &handoff, |_| true) {
                    let reason = format!("no prepared migration of {:?}", handoff.agent);
                    self.send(&from, Message::Refused { handoff, reason });
                }
            }
            Message::Commit(handoff) => self.commit(from, handoff, true),
            Message::OutcomeIs { handoff, verdict } => match verdict {
                Verdict::Committed => self.commit(from, handoff, false),
                Verdict::NotCommitted => self.abort_arriving(&from, &handoff),
                Verdict::Pending => {}
            },
            Message::Abort(handoff) => self.abort_arriving(&from, &handoff),
        }
    }

    /// Source: whether the handoff `handoff` to `asker` committed.
    fn verdict(&self, asker: &HostName, handoff: &Handoff) -> Verdict {
        match self.agents.get(&handoff.agent).map(|a| &a.life) {
            Some(Life::Moved { handoff: h, to }) if h == handoff && to == asker => {
                Verdict::Committed
            }
            Some(Life::Leaving { out, .. }) if out.handoff == *handoff && out.to == *asker => {
                Verdict::Pending
            }
            _ => Verdict::NotCommitted,
        }
    }

    fn arriving_phase(
        &self,
        from: &HostName,
        handoff: &Handoff,
        check: impl Fn(&In) -> bool,
    ) -> bool {
        match self.agents.get(&handoff.agent).map(|a| &a.life) {
            Some(Life::Arriving(i)) => i.from == *from && i.handoff == *handoff && check(&i.phase),
            _ => false,
        }
    }

    fn set_in(&mut self, name: &AgentName, phase: In) {
        if let Some(Agent {
            life: Life::Arriving(incoming),
            ..
        }) = self.agents.get_mut(name)
        {
            incoming.phase = phase;
        }
    }

    /// Target: a source asks this host to prepare.
    fn prepare(&mut self, from: HostName, handoff: Handoff, spec: Vec<u8>) {
        let name = handoff.agent.clone();
        let refuse = match self.agents.get(&name).map(|a| &a.life) {
            None => None,
            Some(Life::Moved { handoff: h, .. }) if h.epoch >= handoff.epoch => Some(format!(
                "{name:?} moved on at epoch {}; epoch {} is stale",
                h.epoch, handoff.epoch
            )),
            Some(Life::Moved { .. }) => None,
            Some(Life::Arriving(i)) if i.from != from => {
                Some(format!("another host is already migrating {name:?} here"))
            }
            Some(Life::Arriving(i)) if i.handoff == handoff => {
                // A duplicate: answer again once ready.
                if matches!(i.phase, In::Ready) {
                    self.send(&from, Message::Prepared(handoff));
                }
                return;
            }
            // The source runs one handoff of an agent at a time, so a new
            // attempt could mean the earlier one ended uncommitted, but a
            // Prepare may also be an old one, delivered late: a copy that
            // holds the final state is never replaced, only settled with
            // the source (`Outcome`). Found by the simulator (seed 847 of
            // its first run): a late Prepare replaced a copy whose commit
            // was on its way, and the agent was lost.
            Some(Life::Arriving(i)) if !matches!(i.phase, In::Loading(_) | In::Ready) => Some(
                format!("an earlier migration of {name:?} is still being settled here"),
            ),
            Some(Life::Arriving(i)) if i.handoff.epoch > handoff.epoch => {
                Some(format!("{name:?} is arriving at a later epoch"))
            }
            Some(Life::Arriving(_)) => None,
            Some(_) => Some(format!("{name:?} already runs here")),
        };
        if let Some(reason) = refuse {
            return self.send(&from, Message::Refused { handoff, reason });
        }
        // Whatever an earlier attempt left in memory goes; a record it
        // wrote is overwritten by this attempt's, or forgotten with it.
        if matches!(self.agents.get(&name).map(|a| &a.life), Some(Life::Arriving(_))) {
            self.ops.retain(|_, (agent, _)| *agent != name);
        }
        let op = self.op(&name, Op::Load);
        let mut agent = Agent::new(
            Life::Arriving(Incoming {
                from,
                handoff,
                phase: In::Loading(op),
                aborted: false,
            }),
            spec.clone(),
        );
        agent.deadline = Some(self.now + self.timing.prepare_expiry);
        self.agents.insert(name.clone(), agent);
        self.push(Action::Load {
            op,
            agent: name,
            spec,
        });
    }

    /// Target: a load, import or reload for an arriving agent ended.
    pub(crate) fn arriving_loaded(
        &mut self,
        name: &AgentName,
        op: crate::io::OpId,
        result: Result<(), String>,
    ) {
        let Some(Agent {
            life: Life::Arriving(incoming),
            spec,
            ..
        }) = self.agents.get_mut(name)
        else {
            return;
        };
        let (from, handoff) = (incoming.from.clone(), incoming.handoff.clone());
        match &mut incoming.phase {
            In::Loading(loading) if *loading == op => {
                if incoming.aborted {
                    return self.remove(name, |_| Answer::NotHere);
                }
                match result {
                    Ok(()) => {
                        incoming.phase = In::Ready;
                        self.send(&from, Message::Prepared(handoff));
                    }
                    Err(reason) => {
                        self.remove(name, |_| Answer::NotHere);
                        self.send(&from, Message::Refused { handoff, reason });
                    }
                }
            }
            In::Importing(importing, state) if *importing == op => {
                let state = std::mem::take(state);
                if incoming.aborted || result.is_err() {
                    self.remove(name, |_| Answer::NotHere);
                    if let Err(reason) = result {
                        self.send(&from, Message::Refused { handoff, reason });
                    }
                    return;
                }
                let record = Record::Prepared {
                    handoff: handoff.clone(),
                    from,
                    spec: spec.clone(),
                };
                let write = self.op(name, Op::Record);
                self.set_in(name, In::Writing(write));
                self.push(Action::Persist {
                    op: write,
                    writes: vec![
                        Write::Record(name.clone(), record),
                        Write::State(name.clone(), state),
                    ],
                });
            }
            In::Restoring(restoring) if *restoring == op => match result {
                Ok(()) => {
                    incoming.phase = In::Imported;
                    // Ask the source at once.
                    self.arm(name, std::time::Duration::ZERO);
                }
                Err(_) => {
                    // Kept on disk, not served: it cannot start here.
                    self.remove(name, |_| Answer::NotHere);
                }
            },
            _ => {}
        }
    }

    /// Target: a durable write for an arriving agent ended.
    pub(crate) fn arriving_written(
        &mut self,
        name: &AgentName,
        op: crate::io::OpId,
        result: Result<(), String>,
    ) {
        let Some(Agent {
            life: Life::Arriving(incoming),
            spec,
            ..
        }) = self.agents.get_mut(name)
        else {
            return;
        };
        let (from, handoff, aborted) = (
            incoming.from.clone(),
            incoming.handoff.clone(),
            incoming.aborted,
        );
        match incoming.phase {
            In::Writing(writing) if writing == op => {
                if let Err(reason) = result {
                    // Nothing of it was written: the copy goes, and the
                    // source hears why. Found by the simulator (seed 7985):
                    // a copy kept after a failed write answered a repeated
                    // Transfer as durable, and the agent was lost.
                    self.remove(name, |_| Answer::NotHere);
                    return self.send(&from, Message::Refused { handoff, reason });
                }
                if aborted {
                    return self.forget_arriving(name);
                }
                incoming.phase = In::Imported;
                self.send(&from, Message::Transferred(handoff));
                self.arm(name, self.timing.settle_after);
            }
            In::Activating(writing) if writing == op => {
                if result.is_err() {
                    // Still prepared on disk; the next question settles it.
                    incoming.phase = In::Imported;
                    return self.arm(name, self.timing.settle_every);
                }
                let spec = std::mem::take(spec);
                let agent = self.agents.get_mut(name).expect("looked up above");
                agent.spec = spec;
                agent.life = Life::Serving {
                    epoch: handoff.epoch,
                };
                agent.deadline = None;
                self.send(&from, Message::Committed(handoff));
                self.pump(name);
            }
            In::Forgetting(writing) if writing == op => {
                // Forgotten, or not: either way this handoff never committed,
                // and a record left on disk is settled after a restart.
                self.remove(name, |_| Answer::NotHere);
            }
            _ => {}
        }
    }

    /// Target: the handoff committed (a `Commit` from the source, or its
    /// answer to `Outcome`).
    fn commit(&mut self, from: HostName, handoff: Handoff, told: bool) {
        let name = handoff.agent.clone();
        if told
            && let Some(agent) = self.agents.get(&name)
            && matches!(agent.life, Life::Serving { epoch } if epoch == handoff.epoch)
        {
            // A repeated commit.
            return self.send(&from, Message::Committed(handoff));
        }
        if !self.arriving_phase(&from, &handoff, |p| matches!(p, In::Imported)) {
            return;
        }
        let Some(agent) = self.agents.get(&name) else {
            return;
        };
        let record = Record::Active {
            epoch: handoff.epoch,
            spec: agent.spec.clone(),
        };
        let op = self.op(&name, Op::Record);
        self.set_in(&name, In::Activating(op));
        if let Some(agent) = self.agents.get_mut(&name) {
            agent.deadline = None;
        }
        self.push(Action::Persist {
            op,
            writes: vec![Write::Record(name, record)],
        });
    }

    /// Target: the source aborted, or says the handoff never committed.
    fn abort_arriving(&mut self, from: &HostName, handoff: &Handoff) {
        if !self.arriving_phase(from, handoff, |_| true) {
            return;
        }
        let name = &handoff.agent;
        let Some(Agent {
            life: Life::Arriving(incoming),
            ..
        }) = self.agents.get_mut(name)
        else {
            return;
        };
        match incoming.phase {
            // Nothing of it is on disk.
            In::Loading(_) | In::Importing(..) => incoming.aborted = true,
            In::Ready => self.remove(name, |_| Answer::NotHere),
            In::Writing(_) => incoming.aborted = true,
            In::Imported | In::Restoring(_) => self.forget_arriving(name),
            // Committed: an abort cannot be meant for it.
            In::Activating(_) | In::Forgetting(_) => {}
        }
    }

    fn forget_arriving(&mut self, name: &AgentName) {
        let op = self.op(name, Op::Record);
        self.set_in(name, In::Forgetting(op));
        if let Some(agent) = self.agents.get_mut(name) {
            agent.deadline = None;
        }
        self.push(Action::Persist {
            op,
            writes: vec![Write::Forget(name.clone())],
        });
    }

    /// Target: a prepared agent's timer.
    pub(crate) fn arriving_timeout(&mut self, name: &AgentName) {
        let Some(Agent {
            life: Life::Arriving(incoming),
            ..
        }) = self.agents.get(name)
        else {
            return;
        };
        match incoming.phase {
            // Its state never came: nothing of it is on disk.
            In::Loading(_) | In::Ready => self.remove(name, |_| Answer::NotHere),
            In::Imported => {
                let (from, handoff) = (incoming.from.clone(), incoming.handoff.clone());
                self.send(&from, Message::Outcome(handoff));
                self.arm(name, self.timing.settle_every);
            }
            _ => {}
        }
    }
}
