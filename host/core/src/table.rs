//! The agent table: one entry per agent a host knows, each with one
//! lifecycle.

use std::collections::{BTreeMap, VecDeque};

use edgehost_proto::{AgentName, HostName};

use crate::Time;
use crate::io::{CallId, Handoff, OpId, RequestId};

/// Every agent a host knows of, by name.
pub type AgentTable = BTreeMap<AgentName, Agent>;

/// One agent as one host knows it.
#[derive(Debug)]
pub struct Agent {
    /// Where it stands.
    pub life: Life,
    /// The shell's description of it.
    pub spec: Vec<u8>,
    /// When the current step times out, if it can.
    pub deadline: Option<Time>,
    /// Sandbox work waiting for the instance.
    pub(crate) work: VecDeque<Work>,
    /// The sandbox operation running, if any: one at a time.
    pub(crate) busy: Option<OpId>,
    /// Calls held while the agent is handed off.
    pub(crate) held: VecDeque<(CallId, Vec<u8>)>,
    /// Calls whose effects wait for a durable write.
    pub(crate) commit: GroupCommit,
    /// A call trapped: the instance is made anew from the store once the
    /// writes before it are durable.
    pub(crate) poisoned: bool,
}

impl Agent {
    pub(crate) fn new(life: Life, spec: Vec<u8>) -> Self {
        Agent {
            life,
            spec,
            deadline: None,
            work: VecDeque::new(),
            busy: None,
            held: VecDeque::new(),
            commit: GroupCommit::default(),
            poisoned: false,
        }
    }

    /// Whether this host owns the agent: it serves it, or will once its
    /// instance is loaded, or is handing it off and has not asked the
    /// registry to move it.
    pub fn owns(&self) -> bool {
        match &self.life {
            Life::Starting { .. }
            | Life::Recording { .. }
            | Life::Serving { .. }
            | Life::Releasing { .. } => true,
            Life::Leaving { out, .. } => !matches!(out.phase, Out::Deciding),
            Life::Claiming { .. } | Life::Arriving(_) | Life::Moved { .. } => false,
        }
    }

    /// The epoch this host serves the agent at, if it owns it.
    pub fn epoch(&self) -> Option<u64> {
        match &self.life {
            Life::Starting { epoch, .. }
            | Life::Recording { epoch, .. }
            | Life::Serving { epoch }
            | Life::Leaving { epoch, .. } => Some(*epoch),
            _ => None,
        }
    }
}

/// Where one agent stands on one host.
#[derive(Debug)]
pub enum Life {
    /// A new agent whose name the registry is asked for; calls are turned
    /// away.
    Claiming {
        /// The create request.
        request: RequestId,
    },
    /// Its instance is being made (after a create or a restart); calls
    /// queue.
    Starting {
        /// The epoch it will serve at.
        epoch: u64,
        /// The load.
        op: OpId,
        /// The create request to answer, if this is a new agent.
        creating: Option<RequestId>,
    },
    /// A new agent's record is being written; calls queue.
    Recording {
        /// The epoch its claim gave it (1 without a registry).
        epoch: u64,
        /// The write.
        op: OpId,
        /// The create request.
        request: RequestId,
    },
    /// Serving calls.
    Serving {
        /// The ownership epoch.
        epoch: u64,
    },
    /// Serving, and being handed off.
    Leaving {
        /// The ownership epoch before the handoff.
        epoch: u64,
        /// The handoff.
        out: Outgoing,
    },
    /// Being deleted.
    Releasing {
        /// The epoch it serves at, should the release fail.
        epoch: u64,
        /// The write.
        op: OpId,
        /// The release request.
        request: RequestId,
    },
    /// Being handed here.
    Arriving(Incoming),
    /// Handed off: the commit point is durable.
    Moved {
        /// The handoff.
        handoff: Handoff,
        /// Where it went.
        to: HostName,
    },
}

/// The source's side of a handoff.
#[derive(Debug)]
pub struct Outgoing {
    /// The target.
    pub to: HostName,
    /// The handoff.
    pub handoff: Handoff,
    /// The migrate request to answer; none after a restart.
    pub request: Option<RequestId>,
    /// How far it is.
    pub phase: Out,
    /// Taken up again after a restart: there is no instance.
    pub recovered: bool,
}

/// The steps of a handoff at the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Out {
    /// `Prepare` sent.
    Preparing,
    /// Exporting the pre-copy.
    Exporting,
    /// `Precopy` sent.
    Precopying,
    /// Asking the registry whether it still agrees this host owns the
    /// agent, before calls are held.
    Checking,
    /// Calls held; waiting for the running call, then exporting.
    Holding,
    /// `Transfer` sent.
    Transferring,
    /// The commit point is being written (no registry).
    Committing(OpId),
    /// The intent to move is being written (registry): the agent stops
    /// serving here.
    Intending(OpId),
    /// The registry is asked to move the agent; until it answers, no host
    /// serves it.
    Deciding,
}

/// The target's side of a handoff.
#[derive(Debug)]
pub struct Incoming {
    /// The source.
    pub from: HostName,
    /// The handoff.
    pub handoff: Handoff,
    /// How far it is.
    pub phase: In,
    /// The source aborted while a step was running: forget the agent once it
    /// ends.
    pub aborted: bool,
}

/// The steps of a handoff at the target.
#[derive(Debug)]
pub enum In {
    /// Making the fresh instance.
    Loading(OpId),
    /// `Prepared` sent; waiting for the state.
    Ready,
    /// Importing the final state.
    Importing(OpId, Vec<u8>),
    /// Writing the prepared record and the state.
    Writing(OpId),
    /// `Transferred` sent; waiting for the commit, asking the source now
    /// and then.
    Imported,
    /// Reloading a prepared agent after a restart.
    Restoring(OpId),
    /// Writing the active record: the handoff committed.
    Activating(OpId),
    /// Forgetting the prepared agent.
    Forgetting(OpId),
}

/// Sandbox work for one agent.
#[derive(Debug)]
pub(crate) enum Work {
    /// A client call.
    Call(CallId, Vec<u8>),
    /// An export for the handoff.
    Export,
}

/// Group commit: calls that changed the state wait for a durable write of
/// that state or a newer one; whoever writes takes the newest.
#[derive(Debug, Default)]
pub(crate) struct GroupCommit {
    /// Raised by every call that changed the state.
    pub seq: u64,
    /// The newest state not yet being written.
    pub staged: Option<(u64, Vec<u8>)>,
    /// The write in flight and the sequence number it covers.
    pub writing: Option<(OpId, u64)>,
    /// The sequence number of the newest durable state.
    pub durable: u64,
    /// Calls answered once `durable` reaches their number.
    pub waiting: Vec<(u64, CallId, Vec<u8>)>,
}

impl GroupCommit {
    /// Whether every state a call produced is durable.
    pub fn idle(&self) -> bool {
        self.staged.is_none() && self.writing.is_none()
    }
}
