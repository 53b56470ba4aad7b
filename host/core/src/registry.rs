//! The registry: which host owns each agent name, agreed by a majority of
//! a small group of hosts (the registry's members).
//!
//! Each name is its own register, changed only by compare-and-set through
//! one round of single-decree Paxos per change (the CASPaxos construction):
//! a proposer gets promises for a ballot from a majority, takes the value
//! accepted under the highest ballot among them, applies its change to it,
//! and has a majority accept the result. A change that does not apply (the
//! name is taken, the agent is no longer where the change expects it) still
//! writes back the value it read, so a refusal is as final as a success.
//! Acceptors answer only once what they promised or accepted is durable.
//!
//! Three things go through the registry: creating a name (a claim), the
//! commit point of a migration (a move, proposed by the source after it has
//! durably recorded its intent and stopped serving), and a prepared
//! target's question whether the move of its copy committed (a read). A
//! host cut off from the majority keeps serving what it owns; it cannot
//! create or move anything until it is back.

use std::collections::{BTreeMap, BTreeSet};

use edgehost_proto::{AgentName, HostName};

use crate::Time;
use crate::core::Core;
use crate::io::{Action, Attempt, Message, OpId, Write};

/// A proposal's number. Higher wins; the proposer's name and the nonce of
/// its current start make every ballot unique, also across restarts.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ballot {
    /// Raised past every ballot the proposer has seen refused.
    pub round: u64,
    /// The proposer.
    pub by: HostName,
    /// Drawn at each start of the proposer.
    pub nonce: u64,
}

/// What the registry holds for one name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ownership {
    /// `host` owns the agent at `epoch`; `attempt` is the claim or the
    /// handoff that put it there.
    Owned {
        /// The owner.
        host: HostName,
        /// The ownership epoch.
        epoch: u64,
        /// The claim or handoff.
        attempt: Attempt,
    },
    /// The agent was released at `epoch`; the name may be claimed again.
    Released {
        /// The epoch it was released at.
        epoch: u64,
    },
}

impl Ownership {
    /// The epoch the value is at.
    pub fn epoch(&self) -> u64 {
        match self {
            Ownership::Owned { epoch, .. } | Ownership::Released { epoch } => *epoch,
        }
    }
}

/// One compare-and-set on a name's register.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Take a name nobody holds, or one released, for `host`.
    Claim {
        /// The claimant.
        host: HostName,
        /// Tells a retried claim from another.
        attempt: Attempt,
    },
    /// The commit point of a handoff: `from` owns the agent at `epoch`; `to`
    /// owns it at `epoch + 1`.
    Move {
        /// The source.
        from: HostName,
        /// The epoch the source serves at.
        epoch: u64,
        /// The target.
        to: HostName,
        /// The handoff's attempt.
        attempt: Attempt,
    },
    /// `host` no longer holds the agent it owned at `epoch`.
    Release {
        /// The owner.
        host: HostName,
        /// Its epoch.
        epoch: u64,
    },
    /// Change nothing; learn the value.
    Read,
}

/// A register's value: `None` for a name never claimed.
pub type Value = Option<Ownership>;

impl Change {
    /// The register's next value, and whether the change holds in it
    /// (applied now, or by an earlier round of the same change).
    pub fn apply(&self, current: &Value) -> (Value, bool) {
        use Ownership::{Owned, Released};
        let next = |epoch: u64| epoch.saturating_add(1);
        match (self, current) {
            (Change::Read, _) => (current.clone(), true),
            (Change::Claim { host, attempt }, None) => (
                Some(Owned {
                    host: host.clone(),
                    epoch: 1,
                    attempt: *attempt,
                }),
                true,
            ),
            (Change::Claim { host, attempt }, Some(Released { epoch })) => (
                Some(Owned {
                    host: host.clone(),
                    epoch: next(*epoch),
                    attempt: *attempt,
                }),
                true,
            ),
            (
                Change::Claim { host, attempt },
                Some(Owned {
                    host: owner,
                    epoch,
                    attempt: held,
                }),
            ) if owner == host => {
                if held == attempt {
                    (current.clone(), true)
                } else {
                    // The host claims a name the registry says it holds,
                    // and its own table says it does not (a create that
                    // failed after its claim): it takes it again, at a
                    // new epoch.
                    (
                        Some(Owned {
                            host: host.clone(),
                            epoch: next(*epoch),
                            attempt: *attempt,
                        }),
                        true,
                    )
                }
            }
            (
                Change::Move {
                    from,
                    epoch,
                    to,
                    attempt,
                },
                Some(Owned {
                    host,
                    epoch: at,
                    attempt: held,
                }),
            ) => {
                if host == from && at == epoch {
                    (
                        Some(Owned {
                            host: to.clone(),
                            epoch: next(*epoch),
                            attempt: *attempt,
                        }),
                        true,
                    )
                } else {
                    let done = host == to && *at == next(*epoch) && held == attempt;
                    (current.clone(), done)
                }
            }
            (
                Change::Release { host, epoch },
                Some(Owned {
                    host: owner,
                    epoch: at,
                    ..
                }),
            ) if owner == host && at == epoch => (Some(Released { epoch: *epoch }), true),
            (Change::Release { epoch, .. }, Some(Released { epoch: at })) => {
                (current.clone(), at == epoch)
            }
            _ => (current.clone(), false),
        }
    }
}

/// What one member stores for one name: the highest ballot it promised and
/// the value it accepted last.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Acceptor {
    /// No ballot below this one is answered.
    pub promised: Option<Ballot>,
    /// The last value accepted, and under which ballot.
    pub accepted: Option<(Ballot, Value)>,
}

/// The registry's messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Vote {
    /// Proposer to members: promise to answer nothing below `ballot`.
    Prepare {
        /// The name.
        name: AgentName,
        /// The ballot.
        ballot: Ballot,
    },
    /// Member to proposer: promised, with what it accepted last.
    Promise {
        /// The name.
        name: AgentName,
        /// The ballot promised.
        ballot: Ballot,
        /// The member's last accepted value.
        accepted: Option<(Ballot, Value)>,
    },
    /// Proposer to members: accept `value` under `ballot`.
    Accept {
        /// The name.
        name: AgentName,
        /// The ballot.
        ballot: Ballot,
        /// The register's next value.
        value: Value,
    },
    /// Member to proposer: accepted, and durable.
    Accepted {
        /// The name.
        name: AgentName,
        /// The ballot.
        ballot: Ballot,
    },
    /// Member to proposer: refused; it has promised a higher ballot.
    Nack {
        /// The name.
        name: AgentName,
        /// The ballot refused.
        ballot: Ballot,
        /// The ballot promised.
        promised: Ballot,
    },
}

impl Vote {
    /// The name voted on.
    pub fn name(&self) -> &AgentName {
        match self {
            Vote::Prepare { name, .. }
            | Vote::Promise { name, .. }
            | Vote::Accept { name, .. }
            | Vote::Accepted { name, .. }
            | Vote::Nack { name, .. } => name,
        }
    }
}

/// A change this host is getting agreed.
#[derive(Debug)]
pub(crate) struct Proposal {
    pub(crate) change: Change,
    ballot: Ballot,
    phase: Phase,
    pub(crate) deadline: Time,
    /// Rounds left before the change fails; `None`: until it is decided.
    tries: Option<u32>,
    /// Rounds started: each waits twice as long as the one before, up to
    /// sixteen times [`crate::Timing::vote`], so that a slow path still
    /// lets a round finish.
    rounds: u32,
}

#[derive(Debug)]
enum Phase {
    /// Gathering promises: each member's last accepted value.
    Promising(BTreeMap<HostName, Option<(Ballot, Value)>>),
    /// Gathering acceptances of `value`.
    Accepting {
        value: Value,
        holds: bool,
        votes: BTreeSet<HostName>,
    },
    /// Refused; a new round starts at the deadline.
    Waiting,
}

/// How a proposal ended: the register's value and whether the change
/// holds in it, or why no majority answered.
pub(crate) type Decision = Result<(Value, bool), String>;

/// The registry's part of a host: the members, this host's acceptor state
/// if it is one, and its proposals in flight.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    pub(crate) members: Vec<HostName>,
    pub(crate) acceptors: BTreeMap<AgentName, Acceptor>,
    /// Answers to send once the acceptor state they rest on is durable.
    pub(crate) replies: BTreeMap<OpId, (HostName, Vote)>,
    pub(crate) proposals: BTreeMap<AgentName, Proposal>,
    /// The highest round seen per name.
    seen: BTreeMap<AgentName, u64>,
    pub(crate) nonce: u64,
}

impl Registry {
    pub(crate) fn majority(&self) -> usize {
        self.members.len() / 2 + 1
    }

    /// Whether a registry is configured; without one, names and commit
    /// points are decided by each host alone.
    pub(crate) fn on(&self) -> bool {
        !self.members.is_empty()
    }
}

impl Core {
    /// Gets `change` to `name`'s register agreed; `tries` rounds at most,
    /// or until it is decided. Replaces a proposal of this host for the
    /// same name.
    pub(crate) fn propose(&mut self, name: &AgentName, change: Change, tries: Option<u32>) {
        let ballot = self.next_ballot(name);
        let proposal = Proposal {
            change,
            ballot,
            phase: Phase::Waiting,
            deadline: self.now,
            tries,
            rounds: 0,
        };
        self.registry.proposals.insert(name.clone(), proposal);
        self.round(name);
    }

    /// Whether this host has a proposal for `name` in flight.
    pub(crate) fn proposing(&self, name: &AgentName) -> bool {
        self.registry.proposals.contains_key(name)
    }

    fn next_ballot(&mut self, name: &AgentName) -> Ballot {
        let seen = self.registry.seen.entry(name.clone()).or_default();
        *seen += 1;
        Ballot {
            round: *seen,
            by: self.me.clone(),
            nonce: self.registry.nonce,
        }
    }

    /// Starts a round of `name`'s proposal, or ends it when out of tries.
    fn round(&mut self, name: &AgentName) {
        let ballot = self.next_ballot(name);
        let noise = self.random();
        let Some(proposal) = self.registry.proposals.get_mut(name) else {
            return;
        };
        let wait = self.timing.vote * (1 << proposal.rounds.min(4));
        let jitter = std::time::Duration::from_micros(noise % (wait.as_micros() as u64 / 2).max(1));
        proposal.rounds = proposal.rounds.saturating_add(1);
        if let Some(tries) = &mut proposal.tries {
            if *tries == 0 {
                let members = self.registry.members.len();
                let majority = self.registry.majority();
                let proposal = self
                    .registry
                    .proposals
                    .remove(name)
                    .expect("looked up above");
                return self.decided(
                    name,
                    proposal.change,
                    Err(format!(
                        "no majority of the registry ({majority} of {members}) answered: \
                         this host is cut off from it"
                    )),
                );
            }
            *tries -= 1;
        }
        proposal.ballot = ballot.clone();
        proposal.phase = Phase::Promising(BTreeMap::new());
        proposal.deadline = self.now + wait + jitter;
        for member in self.registry.members.clone() {
            self.send(
                &member,
                Message::Vote(Vote::Prepare {
                    name: name.clone(),
                    ballot: ballot.clone(),
                }),
            );
        }
    }

    /// A registry message from `from`.
    pub(crate) fn vote(&mut self, from: HostName, vote: Vote) {
        match vote {
            Vote::Prepare { name, ballot } => self.prepare_vote(from, name, ballot),
            Vote::Accept {
                name,
                ballot,
                value,
            } => self.accept_vote(from, name, ballot, value),
            Vote::Promise {
                name,
                ballot,
                accepted,
            } => self.promised(from, name, ballot, accepted),
            Vote::Accepted { name, ballot } => self.accepted(from, name, ballot),
            Vote::Nack {
                name,
                ballot,
                promised,
            } => self.refused(from, name, ballot, promised),
        }
    }

    fn member(&self, host: &HostName) -> bool {
        self.registry.members.contains(host)
    }

    /// Member: a proposer asks for a promise.
    fn prepare_vote(&mut self, from: HostName, name: AgentName, ballot: Ballot) {
        if !self.member(&self.me.clone()) {
            return;
        }
        let acceptor = self.registry.acceptors.entry(name.clone()).or_default();
        if let Some(promised) = acceptor.promised.as_ref().filter(|p| **p > ballot) {
            let promised = promised.clone();
            return self.send(
                &from,
                Message::Vote(Vote::Nack {
                    name,
                    ballot,
                    promised,
                }),
            );
        }
        acceptor.promised = Some(ballot.clone());
        let accepted = acceptor.accepted.clone();
        self.persist_vote(
            &name,
            from,
            Vote::Promise {
                name: name.clone(),
                ballot,
                accepted,
            },
        );
    }

    /// Member: a proposer asks it to accept a value.
    fn accept_vote(&mut self, from: HostName, name: AgentName, ballot: Ballot, value: Value) {
        if !self.member(&self.me.clone()) {
            return;
        }
        let acceptor = self.registry.acceptors.entry(name.clone()).or_default();
        if let Some(promised) = acceptor.promised.as_ref().filter(|p| **p > ballot) {
            let promised = promised.clone();
            return self.send(
                &from,
                Message::Vote(Vote::Nack {
                    name,
                    ballot,
                    promised,
                }),
            );
        }
        acceptor.promised = Some(ballot.clone());
        acceptor.accepted = Some((ballot.clone(), value));
        self.persist_vote(
            &name,
            from,
            Vote::Accepted {
                name: name.clone(),
                ballot,
            },
        );
    }

    /// Member: writes the name's acceptor state; `reply` goes once it is
    /// durable, never before. Every write carries the whole state, so a
    /// later write covers an earlier one that failed.
    fn persist_vote(&mut self, name: &AgentName, to: HostName, reply: Vote) {
        let state = self
            .registry
            .acceptors
            .get(name)
            .cloned()
            .unwrap_or_default();
        let op = self.next_op();
        self.registry.replies.insert(op, (to, reply));
        self.push(Action::Persist {
            op,
            writes: vec![Write::Acceptor(name.clone(), state)],
        });
    }

    /// Member: an acceptor state's write ended.
    pub(crate) fn vote_persisted(&mut self, op: OpId, result: &Result<(), String>) -> bool {
        let Some((to, reply)) = self.registry.replies.remove(&op) else {
            return false;
        };
        if result.is_ok() {
            self.send(&to, Message::Vote(reply));
        }
        true
    }

    fn promised(
        &mut self,
        from: HostName,
        name: AgentName,
        ballot: Ballot,
        accepted: Option<(Ballot, Value)>,
    ) {
        if !self.member(&from) {
            return;
        }
        let majority = self.registry.majority();
        let Some(proposal) = self.registry.proposals.get_mut(&name) else {
            return;
        };
        if proposal.ballot != ballot {
            return;
        }
        let Phase::Promising(promises) = &mut proposal.phase else {
            return;
        };
        promises.insert(from, accepted);
        if promises.len() < majority {
            return;
        }
        let current = promises
            .values()
            .flatten()
            .max_by(|a, b| a.0.cmp(&b.0))
            .and_then(|(_, value)| value.clone());
        let (value, holds) = proposal.change.apply(&current);
        proposal.phase = Phase::Accepting {
            value: value.clone(),
            holds,
            votes: BTreeSet::new(),
        };
        for member in self.registry.members.clone() {
            self.send(
                &member,
                Message::Vote(Vote::Accept {
                    name: name.clone(),
                    ballot: ballot.clone(),
                    value: value.clone(),
                }),
            );
        }
    }

    fn accepted(&mut self, from: HostName, name: AgentName, ballot: Ballot) {
        if !self.member(&from) {
            return;
        }
        let majority = self.registry.majority();
        let Some(proposal) = self.registry.proposals.get_mut(&name) else {
            return;
        };
        if proposal.ballot != ballot {
            return;
        }
        let Phase::Accepting { votes, .. } = &mut proposal.phase else {
            return;
        };
        votes.insert(from);
        if votes.len() < majority {
            return;
        }
        let proposal = self
            .registry
            .proposals
            .remove(&name)
            .expect("looked up above");
        let Phase::Accepting { value, holds, .. } = proposal.phase else {
            return;
        };
        self.decided(&name, proposal.change, Ok((value, holds)));
    }

    fn refused(&mut self, from: HostName, name: AgentName, ballot: Ballot, promised: Ballot) {
        if !self.member(&from) {
            return;
        }
        let seen = self.registry.seen.entry(name.clone()).or_default();
        *seen = (*seen).max(promised.round);
        let step = self.timing.vote.as_micros() as u64;
        let backoff = std::time::Duration::from_micros(self.random() % step.max(1));
        let now = self.now;
        let Some(proposal) = self.registry.proposals.get_mut(&name) else {
            return;
        };
        if proposal.ballot != ballot || matches!(proposal.phase, Phase::Waiting) {
            return;
        }
        // Another proposer is ahead: step back for a random while, so that
        // two proposers do not keep cutting each other off.
        proposal.phase = Phase::Waiting;
        proposal.deadline = now + backoff;
    }

    /// The earliest deadline of a proposal.
    pub(crate) fn registry_timeout(&self) -> Option<Time> {
        self.registry.proposals.values().map(|p| p.deadline).min()
    }

    /// Starts a new round of every proposal whose deadline passed.
    pub(crate) fn registry_timers(&mut self) {
        let due: Vec<AgentName> = self
            .registry
            .proposals
            .iter()
            .filter(|(_, p)| p.deadline <= self.now)
            .map(|(n, _)| n.clone())
            .collect();
        for name in due {
            self.round(&name);
        }
    }

    /// A proposal ended.
    fn decided(&mut self, name: &AgentName, change: Change, decision: Decision) {
        match change {
            Change::Claim { .. } => self.claimed(name, decision),
            Change::Move { .. } => self.move_decided(name, decision),
            Change::Read => {
                let checking = matches!(
                    self.agents.get(name).map(|a| &a.life),
                    Some(crate::Life::Leaving { .. })
                );
                if checking {
                    self.check_decided(name, decision);
                } else if let Ok((value, _)) = decision {
                    self.settle_read(name, value);
                }
            }
            Change::Release { .. } => {}
        }
    }
}
