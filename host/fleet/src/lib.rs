//! The edgehost fleet: hosts that talk QUIC with mutual TLS.
//!
//! Every edge server runs a [`Host`] (`edgehost serve`). Hosts and clients
//! hold certificates from one fleet CA ([`identity`]); every connection is
//! QUIC with mutual TLS that trusts only that CA ([`tls`]), and the
//! certificate names the peer's role and name, which the protocol checks. A
//! peer without a fleet certificate gets nothing: its handshake fails.
//!
//! Main types and modules:
//! - [`Host`] and [`HostConfig`]: the daemon and its configuration.
//! - [`protocol`]: the messages of `edgehost-proto` on QUIC streams, one
//!   stream per request, with a size limit and a deadline on every frame.
//! - [`client`]: connecting to hosts, requests, uploads.
//! - [`membership`]: the peer view and its failure detector.
//! - [`store`]: content-addressed, hash-verified component storage.
//! - [`place`]: the live fleet as a placement instance for ALP and ALM.
//! - [`migration`]: the handoff that moves an agent by its state blob, with
//!   ownership epochs and a pre-copy (`edgehost_proto::delta`); [`persist`]: what a host keeps on disk to come back
//!   after a crash; [`alm`]: automatic migration when users move.
//! - [`revocation`]: the CA-signed list of revoked certificates every host
//!   holds and passes on.
//!
//! It does not run agents itself (that is `edgehost-runtime`) nor decide
//! placements (that is `edgehost-placement`); it connects the two across
//! machines.

pub mod alm;
pub mod calibration;
pub mod client;
pub mod config;
pub mod durable;
pub mod host;
pub mod identity;
pub mod membership;
pub mod metrics;
pub mod migration;
pub mod persist;
pub mod place;
mod policy_swap;
pub mod protocol;
pub mod revocation;
mod slot;
pub mod store;
mod sync;
pub mod tls;

use std::path::Path;

pub use client::Client;
pub use config::{ClientConfig, HostConfig};
pub use edgehost_proto::delta;
pub use host::Host;
pub use identity::{Credentials, Identity, Role};
pub use protocol::ErrorKind;

/// Everything that can go wrong in the fleet.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A certificate or key is missing, unreadable or of the wrong kind.
    #[error("identity: {0}")]
    Identity(String),
    /// A configuration value is wrong.
    #[error("configuration: {0}")]
    Config(String),
    /// A host could not be reached.
    #[error("cannot reach {0}")]
    Connect(String),
    /// The peer restarted and no longer knows the connection; the request
    /// was not processed.
    #[error("the peer restarted and reset the connection")]
    Reset,
    /// A frame or message broke the protocol.
    #[error("protocol: {0}")]
    Protocol(String),
    /// A frame or message from a peer was refused at decode (another
    /// version, malformed, a bad name or number).
    #[error(transparent)]
    Proto(#[from] edgehost_proto::Error),
    /// The peer's identity may not ask this, or spoke for someone else.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// A request was refused as malformed.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// No such agent or component.
    #[error("not found: {0}")]
    NotFound(String),
    /// A name is taken or a host is full.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The agent failed or refused.
    #[error("agent: {0}")]
    Agent(String),
    /// The placement engine could not decide.
    #[error("placement: {0}")]
    Placement(String),
    /// The runtime refused the component or the agent.
    #[error(transparent)]
    Runtime(#[from] edgehost_runtime::Error),
    /// A host answered with a refusal.
    #[error("{message}")]
    Remote {
        /// What kind of refusal.
        kind: ErrorKind,
        /// The host's explanation.
        message: String,
    },
    /// A bug or an unexpected failure inside the host.
    #[error("internal: {0}")]
    Internal(String),
    /// A file could not be read or written.
    #[error("{path}: {cause}")]
    Io {
        /// The file.
        path: String,
        /// The cause, in the message (not a separate source, so a chain
        /// printed in full names it once).
        cause: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(path: impl AsRef<Path>, cause: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().display().to_string(),
            cause,
        }
    }

    /// The protocol's kind for this error, when sent to a peer.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Proto(edgehost_proto::Error::Version { .. }) => ErrorKind::Version,
            Error::Proto(_) => ErrorKind::BadRequest,
            Error::Protocol(_) | Error::BadRequest(_) | Error::Config(_) => ErrorKind::BadRequest,
            Error::Identity(_) | Error::Forbidden(_) => ErrorKind::Forbidden,
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::Conflict(_) => ErrorKind::Conflict,
            Error::Agent(_) | Error::Runtime(_) => ErrorKind::Agent,
            Error::Remote { kind, .. } => *kind,
            Error::Connect(_)
            | Error::Reset
            | Error::Placement(_)
            | Error::Internal(_)
            | Error::Io { .. } => ErrorKind::Internal,
        }
    }
}

/// An error and its causes on one line, for an answer to a peer that has
/// only the message to go on.
pub(crate) fn one_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut line = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        line.push_str(": ");
        line.push_str(&c.to_string());
        cause = c.source();
    }
    line
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
