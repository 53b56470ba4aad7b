//! The wire protocol between clients and hosts, and between hosts.
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

use edgehost_placement::Site;
use edgehost_runtime::{Descriptor, Digest};
use edgehost_telemetry::ServerStatus;
use quinn::{RecvStream, SendStream};
use serde::{Deserialize, Serialize};

use crate::delta::Block;
use crate::{Error, Result};

mod authz;
mod check;

pub use authz::{RequestKind, authorize};
pub use check::Checked;

/// The protocol version this build speaks. Raised whenever a message's
/// encoding changes: postcard carries no field names, so hosts of two
/// versions must refuse each other rather than misread. (2: pre-copy
/// migration, agent status in reports.)
pub const PROTOCOL_VERSION: u16 = 2;
/// Largest message frame (an invoke request or response carries a body of up
/// to 16 MiB; everything else is far smaller).
pub const MAX_MESSAGE_BYTES: usize = (16 << 20) + (64 << 10);
/// Largest upload chunk frame.
pub const CHUNK_BYTES: usize = 1 << 20;
/// Largest component a host accepts.
pub const MAX_COMPONENT_BYTES: u64 = 512 << 20;
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
        name: String,
        /// The component to run.
        digest: Digest,
        /// Its configuration for `init`.
        config: Vec<(String, String)>,
    },
    /// Call an agent, wherever it runs.
    Invoke {
        /// The agent.
        name: String,
        /// The request body.
        body: Vec<u8>,
        /// The calling agent, when an agent calls its dependency.
        caller: Option<String>,
        /// How many hosts forwarded this already (bounded to stop loops).
        hops: u8,
    },
    /// Stop an agent and forget it.
    Release {
        /// The agent.
        name: String,
    },
    /// Where should an agent with this description go?
    Place {
        /// What the agent declared.
        descriptor: Descriptor,
        /// Size of its component, bytes (what a first deployment ships).
        component_bytes: u64,
    },
    /// A peer's periodic report (hosts only).
    Heartbeat(HostReport),
    /// Move an agent that runs here to the host named `to` (sent to the
    /// agent's current owner).
    Migrate {
        /// The agent.
        name: String,
        /// The target host's name.
        to: String,
    },
    /// Migration, source to target: get ready to receive `name` (compile or
    /// load the component, instantiate, init) before the source quiesces.
    Prepare {
        /// The agent.
        name: String,
        /// Its component (the target must hold it).
        digest: Digest,
        /// Its configuration.
        config: Vec<(String, String)>,
        /// The ownership epoch it will have at the target.
        epoch: u64,
        /// The source's address, to ask about the outcome after a crash.
        source: String,
    },
    /// Migration, source to target: the state blob of a prepared agent,
    /// exported while it still serves (the pre-copy). The target keeps it
    /// in memory as the base of the final delta.
    Precopy {
        /// The agent.
        name: String,
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
        name: String,
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
        name: String,
        /// Its epoch at the target.
        epoch: u64,
    },
    /// Migration, source to target: forget the prepared agent.
    Abort {
        /// The agent.
        name: String,
        /// Its epoch at the target.
        epoch: u64,
    },
    /// Target to source, after a restart: did the migration of `name` to
    /// `epoch` commit?
    Outcome {
        /// The agent.
        name: String,
        /// The epoch it was prepared with.
        epoch: u64,
    },
    /// A client reports that the user of `agent` is now attached to the
    /// host named `host` (sent to any host; forwarded to the owner, which
    /// runs ALM for the agent at once).
    Attach {
        /// The agent.
        agent: String,
        /// The host the user is attached to now.
        host: String,
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
        /// The CRL, DER, at most [`crate::revocation::MAX_LIST_BYTES`].
        list: Vec<u8>,
    },
}

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
        host: String,
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
}

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

/// Where a host is, for the cost model's distances.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Location {
    /// Latitude, degrees.
    pub lat: f64,
    /// Longitude, degrees.
    pub lon: f64,
}

/// One agent as its host reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentReport {
    /// Its name.
    pub name: String,
    /// Its component.
    pub digest: Digest,
    /// What it declared.
    pub descriptor: Descriptor,
    /// Size of its last exported state, bytes (0 until it is exported).
    pub state_bytes: u64,
    /// Seconds since it started on this host.
    pub uptime_s: f64,
    /// Calls it has answered here.
    pub calls: u64,
    /// Its ownership epoch.
    pub epoch: u64,
    /// `serving`; `migrating` while a handoff prepares the target and
    /// pre-copies the state (calls still run); `held` while the final state
    /// moves (calls wait).
    pub status: String,
}

/// One ALM decision, kept for `edgehost events`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The host that decided.
    pub host: String,
    /// The agent.
    pub agent: String,
    /// What started the check: `user-moved`, `resource-pressure`, `periodic`.
    pub trigger: String,
    /// `moved to HOST`, `stay`, or `failed`.
    pub decision: String,
    /// The net gain ALM computed for the move, seconds (0 when staying).
    pub net_gain_s: f64,
    /// Why, in a few words each.
    pub reasons: Vec<String>,
}

/// What a migration did, measured, next to what the cost model predicted
/// (eq. 3: export + transfer + initiation + load).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MigrationReport {
    /// The agent.
    pub agent: String,
    /// The source host.
    pub from: String,
    /// The target host.
    pub to: String,
    /// The agent's epoch at the target.
    pub epoch: u64,
    /// Measured, milliseconds: export, transfer, initiation, load.
    pub measured_ms: [f64; 4],
    /// Predicted by the cost model, milliseconds, in the same order.
    pub predicted_ms: [f64; 4],
    /// Time during which calls to the agent were held, milliseconds.
    pub downtime_ms: f64,
    /// Size of the state blob.
    pub state_bytes: u64,
    /// Bytes of state messages on the wire: the pre-copy and the final
    /// delta, with their framing.
    pub wire_bytes: u64,
    /// Of those, the bytes of the final delta: what travelled while calls
    /// were held.
    pub delta_bytes: u64,
    /// The pre-copy, milliseconds: the whole state crossing, hash-checked
    /// on arrival, while the agent still served (part of `transfer`).
    pub precopy_ms: f64,
    /// Compiling (or loading from its cache) the component on the target
    /// during prepare, milliseconds: before the agent was held, never part
    /// of the downtime.
    pub target_compile_ms: f64,
    /// Whether the target had the compiled artifact in its cache.
    pub target_cache_hit: bool,
    /// Bytes of component uploaded to the target (0 when it had it).
    pub component_bytes_sent: u64,
    /// Calls that arrived during the handoff and were held, then served by
    /// the new owner.
    pub held_calls: u64,
}

/// A host's report of itself: what the placement engine needs and what
/// `edgehost ps` shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostReport {
    /// The host's name (from its certificate).
    pub name: String,
    /// Where it listens.
    pub addr: String,
    /// Its site label.
    pub site: String,
    /// Its coordinates.
    pub location: Location,
    /// Uplink bandwidth declared for it, Mbit/s (the cost model's eta_e).
    pub bandwidth_mbps: f64,
    /// The most agents it accepts.
    pub max_agents: u32,
    /// Its resources, as last sampled.
    pub status: ServerStatus,
    /// The agents it runs.
    pub agents: Vec<AgentReport>,
    /// Digests it is compiling right now.
    pub compiling: Vec<Digest>,
    /// Seconds since the host started.
    pub uptime_s: f64,
    /// The placement policy this host decides with.
    pub policy: String,
}

/// One host as another host sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerView {
    /// Its latest report.
    pub report: HostReport,
    /// Whether it answered recently.
    pub reachable: bool,
    /// Seconds since it was last heard from.
    pub last_seen_s: f64,
}

/// A placement decision and its reasons.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Placement {
    /// The chosen host.
    pub host: String,
    /// Its address.
    pub addr: String,
    /// Which algorithm decided (`antllm`, or `only-host`).
    pub algorithm: String,
    /// The policy that scored it.
    pub policy: String,
    /// Where a plugged-in policy failed and the built-in one stood in.
    pub fallbacks: Vec<String>,
    /// Predicted latency, seconds: transmit, migration, initiation, processing.
    pub latency_s: [f64; 4],
    /// Predicted cost: CPU, storage, communication.
    pub cost: [f64; 3],
    /// The objective the engine minimised.
    pub objective: f64,
    /// Hosts considered.
    pub candidates: Vec<String>,
    /// What the LLM refinement did (`None` when no LLM is configured).
    pub refinement: Option<String>,
}

/// Writes one frame.
pub async fn write_frame(send: &mut SendStream, payload: &[u8]) -> Result<()> {
    let len =
        u32::try_from(payload.len()).map_err(|_| Error::Protocol("frame too large".into()))?;
    send.write_all(&len.to_be_bytes())
        .await
        .map_err(stream_err)?;
    send.write_all(payload).await.map_err(stream_err)?;
    Ok(())
}

/// How long one frame may take to arrive once its length header has: a
/// peer that announces a frame and then trickles (or stops) is cut off
/// instead of holding a stream and its buffer for ever. 16 MiB in 30 s is
/// 4.5 Mbit/s, below the thinnest uplink the fleet plans for.
pub const FRAME_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// Bytes a frame's buffer grows by as they arrive: memory follows what the
/// peer actually sent, never what its length header claims.
const READ_STEP: usize = 64 << 10;

/// Reads one frame of at most `max` bytes; `None` when the stream ended
/// cleanly before a frame started. The frame's body must arrive within
/// [`FRAME_DEADLINE`].
pub async fn read_frame(recv: &mut RecvStream, max: usize) -> Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match recv.read_exact(&mut len).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(e) => return Err(read_error(e)),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(Error::Protocol(format!(
            "frame of {len} bytes is over the {max}-byte limit"
        )));
    }
    let body = async {
        let mut buf = Vec::with_capacity(len.min(READ_STEP));
        while buf.len() < len {
            let start = buf.len();
            let step = (len - start).min(READ_STEP.max(start));
            buf.resize(start + step, 0);
            recv.read_exact(&mut buf[start..])
                .await
                .map_err(read_error)?;
        }
        Ok(buf)
    };
    match tokio::time::timeout(FRAME_DEADLINE, body).await {
        Ok(result) => result.map(Some),
        Err(_) => Err(Error::Protocol(format!(
            "a frame of {len} bytes did not arrive within {FRAME_DEADLINE:?}"
        ))),
    }
}

/// A peer that answers a connection with a stateless reset restarted and
/// never saw the request: that is worth telling apart (it is safe to retry
/// on a new connection) from a connection lost mid-request.
fn read_error(e: quinn::ReadExactError) -> Error {
    match e {
        quinn::ReadExactError::ReadError(quinn::ReadError::ConnectionLost(
            quinn::ConnectionError::Reset,
        )) => Error::Reset,
        e => Error::Protocol(format!("reading a frame: {e}")),
    }
}

/// Encodes a message with the protocol version in front.
pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>> {
    let mut out = PROTOCOL_VERSION.to_be_bytes().to_vec();
    postcard::to_io(message, &mut out).map_err(|e| Error::Protocol(format!("encoding: {e}")))?;
    Ok(out)
}

/// Decodes a versioned message and checks it ([`Checked`]). A different
/// version is [`Error::Version`]; anything that does not decode exactly, or
/// breaks a rule of its fields (a name that is not a name, a NaN), is
/// [`Error::Protocol`].
pub fn decode<T: for<'de> Deserialize<'de> + Checked>(frame: &[u8]) -> Result<T> {
    let Some((version, body)) = frame.split_first_chunk::<2>() else {
        return Err(Error::Protocol("frame too short for a version".into()));
    };
    let version = u16::from_be_bytes(*version);
    if version != PROTOCOL_VERSION {
        return Err(Error::Version {
            theirs: version,
            ours: PROTOCOL_VERSION,
        });
    }
    let (message, rest) = postcard::take_from_bytes(body)
        .map_err(|e| Error::Protocol(format!("malformed message: {e}")))?;
    if !rest.is_empty() {
        return Err(Error::Protocol(format!(
            "{} trailing bytes after the message",
            rest.len()
        )));
    }
    let message: T = message;
    message.check()?;
    Ok(message)
}

fn stream_err(e: quinn::WriteError) -> Error {
    Error::Protocol(format!("writing: {e}"))
}

/// The site of a host for the cost model, from its coordinates.
pub fn site_of(location: Location) -> Site {
    // Distances are measured on a flat projection around the equator; what
    // matters to the model is that they grow with real distance.
    Site::from_degrees(location.lat, location.lon, 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_versions_are_checked() {
        let frame = encode(&Request::Release { name: "a".into() }).unwrap();
        assert!(
            matches!(decode::<Request>(&frame).unwrap(), Request::Release { name } if name == "a")
        );

        let mut other = frame.clone();
        other[1] = 9;
        assert!(matches!(
            decode::<Request>(&other),
            Err(Error::Version {
                theirs: 9,
                ours: PROTOCOL_VERSION
            })
        ));
        assert!(matches!(decode::<Request>(&[0]), Err(Error::Protocol(_))));
        let mut trailing = frame.clone();
        trailing.push(0);
        assert!(matches!(
            decode::<Request>(&trailing),
            Err(Error::Protocol(_))
        ));
    }

    #[test]
    fn truncated_and_junk_frames_are_errors_not_panics() {
        // Every prefix of a valid message and a spread of junk: errors, no panics.
        let frame = encode(&Request::Deploy {
            name: "agent".into(),
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
