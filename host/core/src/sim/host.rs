//! What a simulated host does with its core's actions: a network send, a
//! write to its store (durable in order, after a while), a call or export
//! in its sandbox, an answer to a client or to the operator.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use edgehost_proto::AgentName;
use rand::Rng;

use super::world::{Entry, Event, Request, World};
use crate::Core;
use crate::io::{Action, Answer, CallId, Input, Message, Record, Write};

impl World {
    /// Feeds `input` to host `host`'s core and carries out what it asks.
    pub(super) fn input(&mut self, host: usize, input: Input) {
        let Some(core) = self.nodes[host].core.as_mut() else {
            return;
        };
        core.handle(self.now, input);
        self.drain(host);
    }

    pub(super) fn drain(&mut self, host: usize) {
        while let Some(action) = self.nodes[host].core.as_mut().and_then(Core::poll) {
            self.act(host, action);
        }
        let wake = self.nodes[host].core.as_ref().and_then(Core::poll_timeout);
        if let Some(at) = wake
            && self.nodes[host].wake.is_none_or(|w| w > at)
        {
            self.nodes[host].wake = Some(at);
            let life = self.nodes[host].life;
            let after = at.saturating_sub(self.now);
            self.at(after, Event::Tick { host, life });
        }
    }

    fn act(&mut self, host: usize, action: Action) {
        let life = self.nodes[host].life;
        match action {
            Action::Send { to, message } => {
                let Some(to) = self.nodes.iter().position(|n| n.name == to) else {
                    return;
                };
                if self.faulty() && self.rng.random_bool(self.faults.loss) {
                    return self.note(format!("dropped h{host} -> h{to}: {}", brief(&message)));
                }
                let copies = if self.faulty() && self.rng.random_bool(self.faults.duplicate) {
                    2
                } else {
                    1
                };
                for _ in 0..copies {
                    let delay = if self.faulty() && self.rng.random_bool(self.faults.straggle) {
                        self.ms(200, 3000)
                    } else {
                        self.ms(0, self.faults.max_delay_ms)
                    };
                    let message = message.clone();
                    self.at(
                        delay,
                        Event::Deliver {
                            from: host,
                            to,
                            message,
                        },
                    );
                }
            }
            Action::Persist { op, writes } => {
                let node = &mut self.nodes[host];
                node.inflight.push_back((op, writes));
                let start = node.persist_free_at.max(self.now);
                let took = Duration::from_micros(self.rng.random_range(50..3000));
                self.nodes[host].persist_free_at = start + took;
                let after = start + took - self.now;
                self.at(after, Event::PersistDone { host, life, op });
            }
            Action::Load { op, agent, .. } => {
                self.nodes[host].sandbox.insert(agent, BTreeSet::new());
                self.complete(host, Input::Loaded { op, result: Ok(()) });
            }
            Action::Reload { op, agent } => {
                let node = &mut self.nodes[host];
                let result = match node.store.get(&agent) {
                    Some(Entry {
                        record: Some(_),
                        state,
                        ..
                    }) => {
                        let state = state.as_deref().map(decode).unwrap_or_default();
                        node.sandbox.insert(agent, state);
                        Ok(())
                    }
                    _ => Err("nothing stored".to_string()),
                };
                self.complete(host, Input::Loaded { op, result });
            }
            Action::Import { op, agent, state } => {
                self.nodes[host].sandbox.insert(agent, decode(&state));
                self.complete(host, Input::Loaded { op, result: Ok(()) });
            }
            Action::Run { op, agent, body } => {
                let result = match self.nodes[host].sandbox.get_mut(&agent) {
                    Some(state) => {
                        let changed = match <[u8; 8]>::try_from(body.as_slice()) {
                            Ok(bytes) => state.insert(u64::from_le_bytes(bytes)),
                            Err(_) => false,
                        };
                        Ok((Vec::new(), changed.then(|| encode(state))))
                    }
                    None => Err("no instance".to_string()),
                };
                self.complete(host, Input::Ran { op, result });
            }
            Action::Export { op, agent } => {
                let result = self.nodes[host]
                    .sandbox
                    .get(&agent)
                    .map(encode)
                    .ok_or_else(|| "no instance".to_string());
                self.complete(host, Input::Exported { op, result });
            }
            Action::Drop { agent } => {
                self.nodes[host].sandbox.remove(&agent);
            }
            Action::Reply { call, answer } => self.answered(host, call, answer),
            Action::Done { request, result } => {
                let Some(what) = self.nodes[host].requests.remove(&request) else {
                    return;
                };
                self.note(format!("h{host} done {what:?}: {result:?}"));
                match (what, result) {
                    (Request::Create(agent), Ok(())) => {
                        if self.released.remove(&agent) {
                            // A create that reached the registry after the
                            // release: a new agent of the same name, empty.
                            self.releasing.remove(&agent);
                            self.acked.remove(&agent);
                        }
                        self.created.insert(agent);
                    }
                    (Request::Create(agent), Err(_)) if !self.created.contains(&agent) => {
                        // The operator deploys again, where it tried first
                        // (a claim that failed to be confirmed may have
                        // landed, and only its claimant may take it again).
                        let later = self.ms(50, 500);
                        self.at(later, Event::Create { host, agent });
                    }
                    (Request::Migrate(agent), Ok(())) => {
                        self.summary.committed += 1;
                        self.note(format!("{agent} moved"));
                    }
                    (Request::Migrate(_), Err(e)) if e.contains("aborted") => {
                        self.summary.aborted += 1
                    }
                    (Request::Release(agent), Ok(())) => {
                        self.summary.released += 1;
                        self.released.insert(agent);
                    }
                    (Request::Release(agent), Err(_)) => {
                        self.releasing.remove(&agent);
                    }
                    _ => {}
                }
            }
        }
    }

    fn complete(&mut self, host: usize, input: Input) {
        let life = self.nodes[host].life;
        let after = self.ms(0, 3);
        self.at(after, Event::Complete { host, life, input });
    }

    fn answered(&mut self, host: usize, call: CallId, answer: Answer) {
        let Some(write) = self.nodes[host].calls.remove(&call) else {
            return;
        };
        self.probes.remove(&(host, call.0));
        if write == 0 || !self.writes.contains_key(&write) {
            return;
        }
        self.note(format!("h{host} answers write {write}: {answer:?}"));
        match answer {
            Answer::Done(_) => {
                let (agent, _) = self.writes.remove(&write).expect("checked above");
                let name = self.agents[agent].clone();
                self.summary.acknowledged += 1;
                self.acked.entry(name).or_default().insert(write);
            }
            Answer::Moved(to) => {
                if let Some(to) = self.nodes.iter().position(|n| n.name == to) {
                    let later = self.ms(0, 5);
                    self.at(later, Event::Retry { write, host: to });
                }
            }
            Answer::NotHere => {
                let later = self.ms(10, 100);
                let other = self.rng.random_range(0..self.nodes.len());
                self.at(later, Event::Retry { write, host: other });
            }
            Answer::Failed(_) | Answer::Busy(_) => {
                self.writes.remove(&write);
            }
        }
    }

    /// Whether `agent`'s acknowledged writes still count: not once a
    /// release of it may have happened.
    pub(super) fn counts(&self, agent: &AgentName) -> bool {
        !self.releasing.contains(agent)
    }

    /// The probes still unanswered.
    pub(super) fn unanswered_probes(&self) -> usize {
        self.probes.len()
    }

    /// Operator requests still unanswered on hosts that never crashed since.
    pub(super) fn unanswered_requests(&self) -> Vec<String> {
        self.nodes
            .iter()
            .flat_map(|n| {
                n.requests
                    .values()
                    .map(move |r| format!("{} {r:?}", n.name))
            })
            .collect()
    }
}

/// Applies one transaction to a store.
pub(super) fn apply(store: &mut BTreeMap<AgentName, Entry>, writes: &[Write]) {
    for write in writes {
        match write {
            Write::Record(agent, record) => {
                let entry = store.entry(agent.clone()).or_default();
                if matches!(record, Record::Moved { .. }) {
                    entry.state = None;
                }
                entry.record = Some(record.clone());
            }
            Write::State(agent, state) => {
                store.entry(agent.clone()).or_default().state = Some(state.clone());
            }
            Write::Forget(agent) => {
                if let Some(entry) = store.get_mut(agent) {
                    entry.record = None;
                    entry.state = None;
                    if entry.acceptor.is_none() {
                        store.remove(agent);
                    }
                }
            }
            Write::Acceptor(agent, acceptor) => {
                store.entry(agent.clone()).or_default().acceptor = Some(acceptor.clone());
            }
        }
    }
}

pub(super) fn encode(state: &BTreeSet<u64>) -> Vec<u8> {
    state.iter().flat_map(|w| w.to_le_bytes()).collect()
}

pub(super) fn decode(bytes: &[u8]) -> BTreeSet<u64> {
    bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("eight bytes")))
        .collect()
}

pub(super) fn brief(message: &Message) -> String {
    let Some(h) = message.handoff() else {
        return match message {
            Message::Vote(vote) => brief_vote(vote),
            _ => format!("{message:?}"),
        };
    };
    let kind = format!("{message:?}");
    let kind = kind.split([' ', '(', '{']).next().unwrap_or("");
    format!(
        "{kind} {} e{} #{:x}",
        h.agent,
        h.epoch,
        h.attempt.0 & 0xffff
    )
}

fn brief_vote(vote: &crate::Vote) -> String {
    use crate::Vote;
    let ballot = |b: &crate::Ballot| format!("{}.{}", b.round, b.by);
    match vote {
        Vote::Prepare { name, ballot: b } => format!("Prepare {name} {}", ballot(b)),
        Vote::Promise {
            name,
            ballot: b,
            accepted,
        } => format!(
            "Promise {name} {} {:?}",
            ballot(b),
            accepted.as_ref().map(|a| &a.1)
        ),
        Vote::Accept {
            name,
            ballot: b,
            value,
        } => format!("Accept {name} {} {value:?}", ballot(b)),
        Vote::Accepted { name, ballot: b } => format!("Accepted {name} {}", ballot(b)),
        Vote::Nack {
            name,
            ballot: b,
            promised,
        } => format!("Nack {name} {} < {}", ballot(b), ballot(promised)),
    }
}

pub(super) fn brief_write(write: &Write) -> String {
    match write {
        Write::Acceptor(agent, acceptor) => format!(
            "{agent}: acceptor promised {:?} accepted {:?}",
            acceptor.promised.as_ref().map(|b| b.round),
            acceptor.accepted.as_ref().map(|a| &a.1)
        ),
        Write::Record(agent, record) => format!("{agent}: {record:?}"),
        Write::State(agent, state) => format!("{agent}: state of {} writes", state.len() / 8),
        Write::Forget(agent) => format!("forget {agent}"),
    }
}

pub(super) fn brief_input(input: &Input) -> String {
    match input {
        Input::Ran { op, result } => format!("ran {op:?} ok={}", result.is_ok()),
        Input::Exported { op, result } => format!("exported {op:?} ok={}", result.is_ok()),
        Input::Loaded { op, result } => format!("loaded {op:?} {result:?}"),
        other => format!("{other:?}"),
    }
}
