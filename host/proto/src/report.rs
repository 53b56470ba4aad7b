//! What hosts say about themselves and what they decide, as the messages
//! carry it: reports of hosts and agents, placements, migration reports and
//! ALM's events.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::{AgentName, Descriptor, Digest, HostName, ServerStatus};

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
    pub name: AgentName,
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
    /// `serving`; `hibernating` while idle with no instance (the next call
    /// wakes it); `migrating` while a handoff prepares the target and
    /// pre-copies the state (calls still run); `held` while the final state
    /// moves (calls wait).
    pub status: String,
    /// Its measured processing time per call, against the request's bytes.
    pub processing: Option<crate::Estimate>,
    /// How long its last wake from hibernation took here, milliseconds
    /// (`None` if it has not hibernated here).
    pub wake_ms: Option<f64>,
}

/// One ALM decision, kept for `edgehost events`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The host that decided.
    pub host: HostName,
    /// The agent.
    pub agent: AgentName,
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
    pub agent: AgentName,
    /// The source host.
    pub from: HostName,
    /// The target host.
    pub to: HostName,
    /// The agent's epoch at the target.
    pub epoch: u64,
    /// Measured, milliseconds.
    pub measured_ms: MigrationTimes,
    /// Predicted by the cost model, milliseconds.
    pub predicted_ms: MigrationTimes,
    /// The parts of the prediction priced with the model's defaults, for
    /// want of a measurement (`export`, `transfer`, `initiation`, `load`).
    pub predicted_defaults: Vec<String>,
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
    /// Whether the state crossed once with the agent held (stop-and-copy),
    /// because the link carries it within a round trip, rather than as a
    /// pre-copy followed by a delta.
    pub stop_and_copy: bool,
    /// The state's move, milliseconds: from the first export to the commit
    /// point (the target holds the state durably and the source has
    /// recorded the handoff).
    pub move_ms: f64,
    /// The whole handoff, milliseconds: from its first message (the
    /// prepare) until the target acknowledged the commit.
    pub handoff_ms: f64,
}

/// The plugins a placement policy is made of; `None` stands for the
/// built-in heuristic or cost model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyPlugins {
    /// The heuristic plugin's component.
    pub heuristic: Option<Digest>,
    /// The cost-model plugin's component.
    pub cost_model: Option<Digest>,
}

impl PolicyPlugins {
    /// The components, heuristic first.
    pub fn digests(&self) -> impl Iterator<Item = Digest> + '_ {
        self.heuristic.iter().chain(self.cost_model.iter()).copied()
    }
}

/// A host's report of itself: what the placement engine needs and what
/// `edgehost ps` shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostReport {
    /// The host's name (from its certificate).
    pub name: HostName,
    /// Where it listens.
    pub addr: SocketAddr,
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
    /// How many policy swaps this host has made since it started.
    pub policy_generation: u64,
    /// The plugins that policy is made of.
    pub policy_plugins: PolicyPlugins,
    /// What it has measured about itself and its links.
    pub model: Box<crate::HostModel>,
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
    pub host: HostName,
    /// Its address.
    pub addr: SocketAddr,
    /// Which algorithm decided (`antllm`, or `only-host`).
    pub algorithm: String,
    /// The policy that scored it.
    pub policy: String,
    /// Where a plugged-in policy failed and the built-in one stood in.
    pub fallbacks: Vec<String>,
    /// Predicted latency, seconds.
    pub latency_s: LatencyParts,
    /// Predicted cost.
    pub cost: CostParts,
    /// The objective the engine minimised.
    pub objective: f64,
    /// Hosts considered.
    pub candidates: Vec<HostName>,
    /// What the LLM refinement did (`None` when no LLM is configured).
    pub refinement: Option<String>,
    /// A lower bound on the native objective of any placement of the agent
    /// over the candidates (the proven optimum when the exact solver fits).
    pub lower_bound: f64,
    /// `(objective − lower_bound) / objective` of the chosen plan under the
    /// native cost model: how far from optimal it may be at most.
    pub gap: f64,
}

/// The parts of a migration's time (eq. 3), milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct MigrationTimes {
    /// `export-state` on the source (T_export).
    pub export_ms: f64,
    /// Moving the state to the target (T_m^tra).
    pub transfer_ms: f64,
    /// Instantiating and initialising the agent on the target (T_initiation).
    pub initiation_ms: f64,
    /// `import-state` on the target (T_load).
    pub load_ms: f64,
}

impl MigrationTimes {
    /// Their sum: the whole migration (eq. 3).
    pub fn total_ms(&self) -> f64 {
        self.export_ms + self.transfer_ms + self.initiation_ms + self.load_ms
    }

    /// Each part with its name, in the order of eq. 3, for tables.
    pub fn parts(&self) -> [(&'static str, f64); 4] {
        [
            ("export", self.export_ms),
            ("transfer", self.transfer_ms),
            ("initiation", self.initiation_ms),
            ("load", self.load_ms),
        ]
    }
}

/// The parts of an agent's predicted latency (eq. 1), seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyParts {
    /// Transmitting requests and answers (T_tra).
    pub transmit_s: f64,
    /// Migrating it there (T_mig).
    pub migration_s: f64,
    /// Starting it (T_ini).
    pub initiation_s: f64,
    /// Processing its requests (T_pro).
    pub processing_s: f64,
}

impl LatencyParts {
    /// Their sum: the agent's latency (eq. 1).
    pub fn total_s(&self) -> f64 {
        self.transmit_s + self.migration_s + self.initiation_s + self.processing_s
    }
}

/// The parts of an agent's predicted resource cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CostParts {
    /// CPU.
    pub cpu: f64,
    /// Storage.
    pub storage: f64,
    /// Communication.
    pub communication: f64,
}

impl CostParts {
    /// Their sum.
    pub fn total(&self) -> f64 {
        self.cpu + self.storage + self.communication
    }
}
