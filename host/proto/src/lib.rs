//! The edgehost wire protocol, as pure data and pure functions.
//!
//! Everything a host, a client or a peer sends is defined here: the
//! messages ([`Request`], [`Response`] and the reports they carry), their
//! versioned encoding ([`encode`], [`decode`]), the frame header
//! ([`frame_len`]), the block deltas a migration ships ([`delta`]), and the
//! validated types those messages are made of: [`AgentName`] and
//! [`HostName`] (checked once, so no name from a peer can become a path),
//! socket addresses parsed rather than strings, and numbers that are finite
//! and in range, checked at decode ([`Checked`]). The authorization table
//! ([`RequestKind::allowed`]) says which [`Role`] may send each request.
//! Two more decoders of bytes from outside live here for the same reason:
//! a host's records and state log on disk ([`disk`]) and the hosts' and
//! clients' configuration files ([`config`]).
//!
//! Like quinn-proto, it does no I/O and depends on no async runtime and no
//! WebAssembly engine: the fleet's daemon moves frames between QUIC streams
//! and these functions, and fuzz targets call them directly. A value that
//! decodes is a value the fleet may act on.

pub mod authz;
mod calibration;
mod check;
pub mod config;
pub mod delta;
mod descriptor;
mod digest;
pub mod disk;
#[doc(hidden)]
pub mod fuzzing;
mod message;
mod name;
mod report;

pub use authz::{RequestKind, Role, authorize};
pub use calibration::{
    ComponentModel, Estimate, HostModel, LinkModel, MAX_COMPONENT_MODELS, MAX_LINKS,
};
pub use check::{Checked, MAX_FIGURE_MS, MAX_FIGURE_SIZE};
pub use descriptor::{Descriptor, ResourceDemand};
pub use digest::{Digest, ParseDigestError};
pub use edgehost_telemetry::ServerStatus;
pub use message::*;
pub use name::{AgentName, HostName, MAX_NAME_BYTES, NameError, check_name, is_valid_name};
pub use report::*;

/// Why a frame or message was refused. Nothing it carried takes effect.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The peer speaks another protocol version.
    #[error("the peer speaks protocol version {theirs}, this build speaks {ours}")]
    Version {
        /// The peer's version.
        theirs: u16,
        /// Ours.
        ours: u16,
    },
    /// A frame announced more bytes than its kind may carry.
    #[error("a frame of {len} bytes is over the {max}-byte limit")]
    FrameTooLarge {
        /// What the header announced.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The frame is shorter than the version in front of every message.
    #[error("a frame too short for a protocol version")]
    Truncated,
    /// The bytes do not decode as the message.
    #[error("malformed message")]
    Malformed(#[source] postcard::Error),
    /// The message decoded but bytes were left over.
    #[error("{0} trailing bytes after the message")]
    Trailing(usize),
    /// A message could not be encoded.
    #[error("encoding a message")]
    Encode(#[source] postcard::Error),
    /// A name in the message breaks the naming rule.
    #[error(transparent)]
    Name(#[from] NameError),
    /// A field breaks a rule of its own (a NaN, a zero bandwidth, too many
    /// configuration entries).
    #[error("{0}")]
    Invalid(String),
    /// A configuration file does not parse, or breaks a rule of its own.
    #[error("{0}")]
    Config(String),
    /// A state delta does not fit the state it claims to rebuild.
    #[error("{0}")]
    Delta(String),
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
