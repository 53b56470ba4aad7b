//! What goes into the core and what comes out of it.

use edgehost_proto::{AgentName, HostName};

use crate::Time;
use crate::registry::{Acceptor, Vote};

/// A client call, numbered by the shell; unique within one host's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CallId(pub u64);

/// A request of the operator (create, migrate, release), numbered by the
/// shell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// A piece of storage or sandbox work the core asked for; its completion
/// names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId(pub u64);

/// One attempt at moving one agent, chosen at random by the source. Two
/// attempts at the same epoch (a source that aborted, or restarted, and
/// tried again) never answer for each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Attempt(pub u64);

/// What a host knows of one migration: the agent, the epoch it moves to and
/// the attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handoff {
    /// The agent that moves.
    pub agent: AgentName,
    /// The ownership epoch the target serves it at.
    pub epoch: u64,
    /// Which attempt.
    pub attempt: Attempt,
}

/// A message between two hosts' cores. The shell tells the core who sent
/// it: the name in the peer's host certificate, never a field of the
/// message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// Source to target: make a fresh instance of `spec` for this handoff.
    Prepare {
        /// The handoff.
        handoff: Handoff,
        /// What the agent is (the shell's component and configuration).
        spec: Vec<u8>,
    },
    /// Target to source: the instance is ready.
    Prepared(Handoff),
    /// Source to target: the state exported while the agent still serves.
    Precopy {
        /// The handoff.
        handoff: Handoff,
        /// The exported state.
        state: Vec<u8>,
    },
    /// Target to source: the pre-copy is kept.
    Precopied(Handoff),
    /// Source to target: the final state, exported while calls are held.
    /// The shell sends it as a delta on the pre-copy.
    Transfer {
        /// The handoff.
        handoff: Handoff,
        /// The final state.
        state: Vec<u8>,
    },
    /// Target to source: the final state is imported and durable.
    Transferred(Handoff),
    /// Source to target, after the commit point: serve.
    Commit(Handoff),
    /// Target to source: serving.
    Committed(Handoff),
    /// Source to target: forget this handoff.
    Abort(Handoff),
    /// Target to source: the step was refused.
    Refused {
        /// The handoff.
        handoff: Handoff,
        /// Why, on one line.
        reason: String,
    },
    /// Target to source: did this handoff commit?
    Outcome(Handoff),
    /// Source to target: the answer to [`Message::Outcome`].
    OutcomeIs {
        /// The handoff asked about.
        handoff: Handoff,
        /// The answer.
        verdict: Verdict,
    },
    /// The registry's agreement on a name's owner.
    Vote(Vote),
}

impl Message {
    /// The handoff the message is about, unless it is the registry's.
    pub fn handoff(&self) -> Option<&Handoff> {
        match self {
            Message::Prepare { handoff, .. }
            | Message::Precopy { handoff, .. }
            | Message::Transfer { handoff, .. }
            | Message::Refused { handoff, .. }
            | Message::OutcomeIs { handoff, .. } => Some(handoff),
            Message::Prepared(h)
            | Message::Precopied(h)
            | Message::Transferred(h)
            | Message::Commit(h)
            | Message::Committed(h)
            | Message::Abort(h)
            | Message::Outcome(h) => Some(h),
            Message::Vote(_) => None,
        }
    }
}

/// The source's answer about a handoff.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The source's commit point is durable and names the asker: serve.
    Committed,
    /// It never committed and never will: drop the copy.
    NotCommitted,
    /// Still under way: ask again.
    Pending,
}

/// How a host stands with an agent, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// This host serves the agent at `epoch`.
    Active {
        /// The ownership epoch.
        epoch: u64,
        /// The shell's description of the agent.
        spec: Vec<u8>,
    },
    /// The agent's final state arrived from `from`; it serves here once the
    /// handoff is known to have committed.
    Prepared {
        /// The handoff.
        handoff: Handoff,
        /// Its source.
        from: HostName,
        /// The shell's description of the agent.
        spec: Vec<u8>,
    },
    /// The source of a handoff has stopped serving and asks the registry to
    /// move the agent to `to`: on a restart it asks again rather than
    /// serve. The state is kept until the move is decided.
    Moving {
        /// The handoff.
        handoff: Handoff,
        /// Its target.
        to: HostName,
        /// The shell's description of the agent.
        spec: Vec<u8>,
    },
    /// The commit point of a handoff from here: the agent moved to `to`, and
    /// this host never serves it again at this epoch or below.
    Moved {
        /// The handoff.
        handoff: Handoff,
        /// Its target.
        to: HostName,
    },
}

impl Record {
    /// The ownership epoch the record is at.
    pub fn epoch(&self) -> u64 {
        match self {
            Record::Active { epoch, .. } => *epoch,
            Record::Prepared { handoff, .. } | Record::Moved { handoff, .. } => handoff.epoch,
            Record::Moving { handoff, .. } => handoff.epoch.saturating_sub(1),
        }
    }
}

/// One change to the store. A [`Action::Persist`] carries several, applied
/// as one transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    /// Sets the agent's record. A [`Record::Moved`] also drops its state.
    Record(AgentName, Record),
    /// Sets the agent's state.
    State(AgentName, Vec<u8>),
    /// Removes the agent's record and state (not its registry entry).
    Forget(AgentName),
    /// Sets this host's registry acceptor state for the name.
    Acceptor(AgentName, Acceptor),
}

/// How a client call ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The call ran here; whatever it changed is durable.
    Done(Vec<u8>),
    /// The agent moved to this host: call it there.
    Moved(HostName),
    /// This host does not serve the agent.
    NotHere,
    /// The call failed; the agent's state is as before it.
    Failed(String),
    /// Too many calls wait for the agent already; it was not run. Try again
    /// later.
    Busy(String),
}

/// Work done outside the core, and events, fed into it.
#[derive(Clone, Debug)]
pub enum Input {
    /// Nothing but the passing of time: expired timers fire.
    Tick,
    /// A message from a peer, authenticated as `from`.
    Received {
        /// The host certificate's name.
        from: HostName,
        /// The message.
        message: Message,
    },
    /// A client calls `agent`.
    Call {
        /// The shell's number for the call.
        call: CallId,
        /// The agent called.
        agent: AgentName,
        /// The call's bytes, for the sandbox.
        body: Vec<u8>,
    },
    /// The operator deploys a new agent here.
    Create {
        /// The shell's number for the request.
        request: RequestId,
        /// The agent.
        agent: AgentName,
        /// What it is.
        spec: Vec<u8>,
    },
    /// The operator moves `agent` to `to`.
    Migrate {
        /// The shell's number for the request.
        request: RequestId,
        /// The agent.
        agent: AgentName,
        /// The target host.
        to: HostName,
    },
    /// The operator deletes `agent`.
    Release {
        /// The shell's number for the request.
        request: RequestId,
        /// The agent.
        agent: AgentName,
    },
    /// A [`Action::Persist`] ended.
    Persisted {
        /// Which.
        op: OpId,
        /// `Err` when nothing of it was written.
        result: Result<(), String>,
    },
    /// A [`Action::Run`] ended.
    Ran {
        /// Which.
        op: OpId,
        /// The call's reply and the state exported after it (`None` when
        /// equal to the export before), or why it failed (the instance is
        /// then made anew from its durable state).
        result: Result<(Vec<u8>, Option<Vec<u8>>), String>,
    },
    /// A [`Action::Export`] ended.
    Exported {
        /// Which.
        op: OpId,
        /// The state, or why not.
        result: Result<Vec<u8>, String>,
    },
    /// A [`Action::Load`], [`Action::Reload`] or [`Action::Import`] ended.
    Loaded {
        /// Which.
        op: OpId,
        /// `Err` when there is no instance.
        result: Result<(), String>,
    },
}

/// What the core asks of its shell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send `message` to the host named `to`. Delivery may fail; the core
    /// retries or times out on its own.
    Send {
        /// The peer.
        to: HostName,
        /// The message.
        message: Message,
    },
    /// Apply `writes` as one durable transaction, then report
    /// [`Input::Persisted`]. Persists complete in the order they are asked.
    Persist {
        /// Which.
        op: OpId,
        /// The changes.
        writes: Vec<Write>,
    },
    /// Make `agent`'s instance anew from `spec` and `init` it. Report
    /// [`Input::Loaded`].
    Load {
        /// Which.
        op: OpId,
        /// The agent.
        agent: AgentName,
        /// What it is.
        spec: Vec<u8>,
    },
    /// Make `agent`'s instance anew from what the store holds: its record's
    /// spec and its last durable state. Report [`Input::Loaded`].
    Reload {
        /// Which.
        op: OpId,
        /// The agent.
        agent: AgentName,
    },
    /// Import `state` into the agent's existing instance. Report
    /// [`Input::Loaded`].
    Import {
        /// Which.
        op: OpId,
        /// The agent.
        agent: AgentName,
        /// The state.
        state: Vec<u8>,
    },
    /// Run one call in the agent's instance, then export its state. Report
    /// [`Input::Ran`].
    Run {
        /// Which.
        op: OpId,
        /// The agent.
        agent: AgentName,
        /// The call's bytes.
        body: Vec<u8>,
    },
    /// Export the agent's state. Report [`Input::Exported`].
    Export {
        /// Which.
        op: OpId,
        /// The agent.
        agent: AgentName,
    },
    /// Drop the agent's instance, if any.
    Drop {
        /// The agent.
        agent: AgentName,
    },
    /// Answer a client call.
    Reply {
        /// Which.
        call: CallId,
        /// How it ended.
        answer: Answer,
    },
    /// Answer an operator request.
    Done {
        /// Which.
        request: RequestId,
        /// `Err` with a one-line reason.
        result: Result<(), String>,
    },
}

/// When the core next wants to be woken with [`Input::Tick`].
pub type Wake = Option<Time>;
