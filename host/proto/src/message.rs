//! The messages between clients and hosts, and between hosts, and their
//! versioned encoding.
//!
//! One QUIC bidirectional stream per request. Each frame is a 4-byte
//! big-endian length followed by that many bytes; the first frame of a stream
//! and the answer start with a 2-byte protocol version, then a postcard
//! message. An upload's bytes follow its request as further frames of at
//! most [`CHUNK_BYTES`] each. Every length is checked against a limit before
//! anything is allocated; a frame over its limit, a message that does not
//! decode or a peer of another version gets an error answer (when one can
//! still be sent) and its stream is closed. Nothing it sent takes effect.
//!
//! See `docs/protocol.md` for the message reference.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::delta::Block;
use crate::report::{Event, HostReport, MigrationReport, PeerView, Placement, PolicyPlugins};
use crate::{AgentName, Checked, Descriptor, Digest, Error, HostName, Result};

/// The protocol version this build speaks. Raised whenever a message's
/// encoding changes: postcard carries no field names, so hosts of two
/// versions must refuse each other rather than misread. (2: pre-copy
/// migration, agent status in reports; 3: addresses as socket addresses.)
pub const PROTOCOL_VERSION: u16 = 11;
/// Largest message frame (an invoke request or response carries a body of up
/// to 16 MiB; everything else is far smaller).
pub const MAX_MESSAGE_BYTES: usize = (16 << 20) + (64 << 10);
/// Largest upload chunk frame.
pub const CHUNK_BYTES: usize = 1 << 20;
/// Largest component a host accepts.
pub const MAX_COMPONENT_BYTES: u64 = 512 << 20;
/// Largest revocation list a host takes (a CRL of tens of thousands of
/// serials is far smaller).
pub const MAX_REVOCATION_LIST_BYTES: usize = 1 << 20;
/// Largest request or response body of an invoke.
pub const MAX_BODY_BYTES: usize = 16 << 20;

/// What a client or peer asks a host.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    /// This host's report.
    Status,
    /// This host's view of the fleet: its own report and its peers'.
    Fleet,
    /// Does this host hold the component with this digest?
    Has {
        /// The component's digest.
        digest: Digest,
    },
    /// Store a component; its bytes follow as chunk frames.
    Upload {
        /// The digest the bytes must hash to.
        digest: Digest,
        /// Their total length.
        size: u64,
    },
    /// Start an agent from a stored component.
    Deploy {
        /// The agent's name, unique in the fleet.
        name: AgentName,
        /// The component to run.
        digest: Digest,
        /// Its configuration for `init`.
        config: Vec<(String, String)>,
    },
    /// Call an agent, wherever it runs.
    Invoke {
        /// The agent.
        name: AgentName,
        /// The request body.
        body: Vec<u8>,
        /// The calling agent, when an agent calls its dependency.
        caller: Option<AgentName>,
        /// How many hosts forwarded this already (bounded to stop loops).
        hops: u8,
    },
    /// Stop an agent and forget it.
    Release {
        /// The agent.
        name: AgentName,
    },
    /// Where should an agent with this description go?
    Place {
        /// What the agent declared.
        descriptor: Descriptor,
        /// Size of its component, bytes (what a first deployment ships).
        component_bytes: u64,
        /// The host the agent's user is attached to, if known: candidates
        /// are that host's neighbourhood, and the user's latency is priced
        /// from it. Without one, the host asked stands for the user.
        user: Option<HostName>,
        /// The CPU architecture its component declares it needs, if any:
        /// only hosts of that architecture are candidates.
        requires_arch: Option<String>,
        /// The algorithm that decides: `antllm` when none is given, or a
        /// baseline (`local-search`, `greedy`, `polling`, `random`,
        /// `optimal`), to compare them on a live fleet.
        algorithm: Option<String>,
    },
    /// A peer's periodic report (hosts only).
    Heartbeat(Box<HostReport>),
    /// Move an agent that runs here to the host named `to` (sent to the
    /// agent's current owner).
    Migrate {
        /// The agent.
        name: AgentName,
        /// The target host's name.
        to: HostName,
    },
    /// Migration, source to target: get ready to receive `name` (compile or
    /// load the component, instantiate, init) before the source quiesces.
    Prepare {
        /// The agent.
        name: AgentName,
        /// Its component (the target must hold it).
        digest: Digest,
        /// Its configuration.
        config: Vec<(String, String)>,
        /// The ownership epoch it will have at the target.
        epoch: u64,
        /// The source's address, to ask about the outcome after a crash.
        source: SocketAddr,
    },
    /// Migration, source to target: the state blob of a prepared agent,
    /// exported while it still serves (the pre-copy). The target keeps it
    /// in memory as the base of the final delta.
    Precopy {
        /// The agent.
        name: AgentName,
        /// Its epoch at the target.
        epoch: u64,
        /// SHA-256 of `state`.
        state_digest: Digest,
        /// The blob made by `export-state`.
        state: Vec<u8>,
    },
    /// Migration, source to target: the final state of the quiesced agent,
    /// as the blocks that differ from the pre-copy.
    Transfer {
        /// The agent.
        name: AgentName,
        /// Its epoch at the target.
        epoch: u64,
        /// SHA-256 of the final state.
        state_digest: Digest,
        /// Length of the final state.
        len: u64,
        /// The blocks of the final state that differ from the pre-copy.
        blocks: Vec<Block>,
    },
    /// Migration, source to target: the source has handed the agent off;
    /// start serving it.
    Commit {
        /// The agent.
        name: AgentName,
        /// Its epoch at the target.
        epoch: u64,
    },
    /// Migration, source to target: forget the prepared agent.
    Abort {
        /// The agent.
        name: AgentName,
        /// Its epoch at the target.
        epoch: u64,
    },
    /// Target to source, after a restart: did the migration of `name` to
    /// `epoch` commit?
    Outcome {
        /// The agent.
        name: AgentName,
        /// The epoch it was prepared with.
        epoch: u64,
    },
    /// A client reports that the user of `agent` is now attached to the
    /// host named `host` (sent to any host; forwarded to the owner, which
    /// runs ALM for the agent at once).
    Attach {
        /// The agent.
        agent: AgentName,
        /// The host the user is attached to now.
        host: HostName,
    },
    /// The migration decisions this host made.
    Events,
    /// Make these stored policy plugins the host's active policy, from the
    /// next decision on (`None` for both: back to the built-in policy).
    SetPolicy {
        /// The heuristic plugin's component, if any.
        heuristic: Option<Digest>,
        /// The cost-model plugin's component, if any.
        cost_model: Option<Digest>,
    },
    /// The fleet's revocation list, a DER X.509 CRL signed by the fleet CA
    /// (`edgehost fleet revoke`, and hosts passing it on). Taken only if
    /// it verifies and its number is higher than the one held.
    Revocations {
        /// The CRL, DER, at most [`MAX_REVOCATION_LIST_BYTES`].
        list: Vec<u8>,
    },
    /// The migrations away from this host that committed, newest last (at
    /// most [`MAX_RECENT_MIGRATIONS`]).
    Migrations,
    /// Host to host: bytes that only measure the link. The sender times
    /// the answer: what it took beyond the round trip is the link's pace
    /// for a link no migration has measured lately.
    Probe {
        /// At most [`MAX_PROBE_BYTES`]; their content means nothing.
        padding: Vec<u8>,
    },
}

/// The most padding a [`Request::Probe`] may carry.
pub const MAX_PROBE_BYTES: usize = 1 << 20;

/// A host's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Response {
    /// Answer to `Status`.
    Status(HostReport),
    /// Answer to `Fleet` and `Heartbeat`: the reports this host knows.
    Fleet(Vec<PeerView>),
    /// Answer to `Has`.
    Has(bool),
    /// Answer to `Upload`: stored (or already there).
    Uploaded {
        /// Bytes received on this stream (0 when it was already stored).
        received: u64,
    },
    /// Answer to `Deploy`.
    Deployed {
        /// What the agent declared.
        descriptor: Descriptor,
        /// Milliseconds spent compiling or loading the artifact.
        load_ms: f64,
        /// Whether the artifact came from the host's cache.
        cache_hit: bool,
    },
    /// Answer to `Invoke`: the agent's response body.
    Invoked {
        /// The body.
        body: Vec<u8>,
        /// The host that ran the agent.
        host: HostName,
        /// Microseconds the call took on that host, from taking the agent
        /// to the reply (running it, and making what it changed durable):
        /// what a task reports as its processing time, T_pro. The rest of
        /// the caller's wait is transmission and routing.
        processing_us: u64,
    },
    /// Answer to `Release`.
    Released,
    /// Answer to `Place`.
    Placement(Placement),
    /// Answer to `Migrate`.
    Migrated(MigrationReport),
    /// Answer to `Prepare`.
    Prepared {
        /// Instantiate + init on the target, milliseconds (T_initiation).
        initiation_ms: f64,
        /// Compiling or loading the artifact, milliseconds (outside downtime).
        compile_ms: f64,
        /// Whether the artifact came from the target's cache.
        cache_hit: bool,
        /// The target's own figures as they were before this prepare
        /// (links left out): what the source prices the move with, fresher
        /// than the target's last report.
        model: Box<crate::HostModel>,
    },
    /// Answer to `Precopy`.
    Precopied,
    /// Answer to `Transfer`.
    Transferred {
        /// `import-state` on the target, milliseconds (T_load).
        load_ms: f64,
    },
    /// Answer to `Commit`.
    Committed,
    /// Answer to `Abort`.
    Aborted,
    /// Answer to `Outcome`.
    Outcome {
        /// Whether the source handed the agent off at that epoch.
        committed: bool,
    },
    /// Answer to `Attach`: what ALM decided.
    Decided(Vec<Event>),
    /// Answer to `Events`.
    Events(Vec<Event>),
    /// Answer to `SetPolicy`: the policy now active and its generation.
    PolicySet {
        /// The active policy's description.
        policy: String,
        /// How many swaps this host has made.
        generation: u64,
        /// The plugins it replaced, for a fleet-wide swap to roll back to
        /// when another host refuses the new ones.
        previous: PolicyPlugins,
    },
    /// The request failed; nothing changed.
    Error {
        /// What kind of failure.
        kind: ErrorKind,
        /// One line for a human.
        message: String,
    },
    /// Answer to `Revocations`: the number of the list the host holds
    /// now (the one sent, or a newer one it already had).
    Revocations {
        /// The CRL number.
        number: u64,
    },
    /// Answer to `Migrations`.
    Migrations(Vec<RecentMigration>),
    /// Answer to `Probe`: how many bytes of padding arrived.
    Probed {
        /// The padding's length.
        bytes: u64,
    },
}

/// A committed migration away from a host, and when it committed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecentMigration {
    /// When the target took the agent over, milliseconds since the Unix
    /// epoch (the source's clock).
    pub at_ms: u64,
    /// What it did.
    pub report: MigrationReport,
}

/// The most committed migrations a host remembers for `Migrations`.
pub const MAX_RECENT_MIGRATIONS: usize = 64;

/// Kinds of refusal, for programs; the message is for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The peer speaks another protocol version.
    Version,
    /// The message was malformed or over a limit.
    BadRequest,
    /// The peer's identity may not ask this.
    Forbidden,
    /// No such agent or component.
    NotFound,
    /// The name is taken, or the host is full.
    Conflict,
    /// The agent failed or refused.
    Agent,
    /// Anything else.
    Internal,
}

/// Bytes of a frame's length header.
pub const FRAME_HEADER_BYTES: usize = 4;

/// The length header of a frame of `len` bytes.
pub fn frame_header(len: usize) -> Result<[u8; FRAME_HEADER_BYTES]> {
    u32::try_from(len)
        .map(u32::to_be_bytes)
        .map_err(|_| Error::FrameTooLarge {
            len,
            max: u32::MAX as usize,
        })
}

/// The length a frame header announces, refused above `max` before a byte
/// of the body is read or allocated.
pub fn frame_len(header: [u8; FRAME_HEADER_BYTES], max: usize) -> Result<usize> {
    let len = u32::from_be_bytes(header) as usize;
    if len > max {
        Err(Error::FrameTooLarge { len, max })
    } else {
        Ok(len)
    }
}

/// Encodes a message with the protocol version in front.
pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>> {
    let mut out = PROTOCOL_VERSION.to_be_bytes().to_vec();
    postcard::to_io(message, &mut out).map_err(Error::Encode)?;
    Ok(out)
}

/// Decodes a versioned message and checks it ([`Checked`]). A different
/// version is [`Error::Version`]; anything that does not decode exactly, or
/// breaks a rule of its fields (a name that is not a name, a NaN), is
/// another error, and nothing in the frame may be acted on.
pub fn decode<T: for<'de> Deserialize<'de> + Checked>(frame: &[u8]) -> Result<T> {
    let Some((version, body)) = frame.split_first_chunk::<2>() else {
        return Err(Error::Truncated);
    };
    let version = u16::from_be_bytes(*version);
    if version != PROTOCOL_VERSION {
        return Err(Error::Version {
            theirs: version,
            ours: PROTOCOL_VERSION,
        });
    }
    let (message, rest) = postcard::take_from_bytes(body).map_err(Error::Malformed)?;
    if !rest.is_empty() {
        return Err(Error::Trailing(rest.len()));
    }
    let message: T = message;
    message.check()?;
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_versions_are_checked() {
        let name = AgentName::new("a").unwrap();
        let frame = encode(&Request::Release { name }).unwrap();
        assert!(
            matches!(decode::<Request>(&frame).unwrap(), Request::Release { name } if name == "a")
        );

        // Any version but ours is refused, naming both.
        let theirs = PROTOCOL_VERSION.wrapping_add(1);
        let mut other = frame.clone();
        other[..2].copy_from_slice(&theirs.to_be_bytes());
        assert!(matches!(
            decode::<Request>(&other),
            Err(Error::Version { theirs: t, ours: PROTOCOL_VERSION }) if t == theirs
        ));
        assert!(matches!(decode::<Request>(&[0]), Err(Error::Truncated)));
        let mut trailing = frame.clone();
        trailing.push(0);
        assert!(matches!(
            decode::<Request>(&trailing),
            Err(Error::Trailing(1))
        ));
        assert!(matches!(
            frame_len(frame_header(100).unwrap(), 99),
            Err(Error::FrameTooLarge { len: 100, max: 99 })
        ));
    }

    #[test]
    fn truncated_and_junk_frames_are_errors_not_panics() {
        // Every prefix of a valid message and a spread of junk: errors, no panics.
        let frame = encode(&Request::Deploy {
            name: AgentName::new("agent").unwrap(),
            digest: Digest::of(b"x"),
            config: vec![("k".into(), "v".into())],
        })
        .unwrap();
        for cut in 0..frame.len() {
            assert!(decode::<Request>(&frame[..cut]).is_err());
        }
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            let len = (seed % 64) as usize;
            let junk: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            let mut versioned = PROTOCOL_VERSION.to_be_bytes().to_vec();
            versioned.extend(junk);
            let _ = decode::<Request>(&versioned);
        }
    }
}
