//! The fleet's ownership and migration logic as a deterministic state
//! machine, in the shape of quinn-proto: no I/O, no clock, no threads.
//!
//! A host's shell feeds its [`Core`] what happens ([`Input`]: messages from
//! peers, client calls, operator requests, the completions of storage and
//! sandbox work, the passing of time) and carries out what the core asks
//! ([`Action`]: send a message, write durably, run a call, export or import
//! a state, answer). Every agent a host knows has one entry in its
//! [`AgentTable`], with one [`Life`].
//!
//! Because the core does no I/O and takes the time as an argument, many
//! hosts' cores can be driven by one seeded simulator ([`sim`]) through
//! message loss, duplication, reordering, partitions and crashes, with the
//! fleet's invariants checked after every step.
//!
//! What the core promises, and the simulator checks:
//!
//! - at most one host owns an agent at any instant;
//! - a call is answered `Done` only once its effect is durable, and every
//!   such effect is in the state of whichever host owns the agent later;
//! - every handoff ends, committed or aborted, once the network heals;
//! - no agent is lost: each one created is owned by a host, or was
//!   released.

mod calls;
mod core;
pub mod io;
pub mod registry;
pub mod sim;
mod source;
pub mod table;
mod target;

use std::time::Duration;

pub use crate::calls::MAX_WAITING_CALLS;
pub use crate::core::Core;
pub use crate::io::{
    Action, Answer, Attempt, CallId, Handoff, Input, Message, OpId, Record, RequestId, Verdict,
    Write,
};
pub use crate::registry::{Acceptor, Ballot, Change, Ownership, Vote};
pub use crate::table::{AgentTable, Life};

/// A point in time: how long since an origin the shell chose. The core
/// never reads a clock.
pub type Time = Duration;

/// How long the steps of a handoff may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// The small steps: an export, a delta, an answer.
    pub step: Duration,
    /// Preparing, which may compile a component.
    pub prepare_step: Duration,
    /// The pre-copy and the transfer of the state.
    pub transfer_step: Duration,
    /// How long a target keeps a prepared agent whose state never came.
    pub prepare_expiry: Duration,
    /// How long a target waits for the commit before it asks the source.
    pub settle_after: Duration,
    /// How often it asks again.
    pub settle_every: Duration,
    /// How long a registry round waits for a majority before it starts
    /// again.
    pub vote: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            step: Duration::from_secs(5),
            prepare_step: Duration::from_secs(120),
            transfer_step: Duration::from_secs(120),
            prepare_expiry: Duration::from_secs(180),
            settle_after: Duration::from_secs(2),
            settle_every: Duration::from_secs(1),
            vote: Duration::from_secs(1),
        }
    }
}
