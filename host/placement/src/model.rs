//! The placement model: agents, servers, tasks, the instance that ties them
//! to a topology, and plans that assign every agent to a server.
//!
//! Units are fixed across the crate and appear in every field name: memory and
//! storage in GB, state and files in MB, bandwidth in Mbit/s, compute in
//! gigacycles (Gcyc) and compute rates in gigacycles per second, times in
//! seconds.

use serde::{Deserialize, Serialize};

pub use crate::topology::Site;
use crate::topology::Topology;
use crate::{Error, Result};

/// Tolerance used when comparing resource sums against capacities, so that a
/// plan that fills a server exactly is not rejected because of rounding.
pub const EPSILON: f64 = 1e-9;

/// The three resources that eq. 11 constrains on every server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    /// Memory, GB (M).
    pub memory_gb: f64,
    /// Disk, GB (S).
    pub storage_gb: f64,
    /// Network bandwidth reserved, Mbit/s (V).
    pub bandwidth_mbps: f64,
}

impl Resources {
    /// Builds a resource vector.
    pub const fn new(memory_gb: f64, storage_gb: f64, bandwidth_mbps: f64) -> Self {
        Self {
            memory_gb,
            storage_gb,
            bandwidth_mbps,
        }
    }

    /// Component-wise sum.
    pub fn plus(self, other: Self) -> Self {
        Self::new(
            self.memory_gb + other.memory_gb,
            self.storage_gb + other.storage_gb,
            self.bandwidth_mbps + other.bandwidth_mbps,
        )
    }

    /// Component-wise difference (may go negative; callers check).
    pub fn minus(self, other: Self) -> Self {
        Self::new(
            self.memory_gb - other.memory_gb,
            self.storage_gb - other.storage_gb,
            self.bandwidth_mbps - other.bandwidth_mbps,
        )
    }

    /// Whether `self` fits inside `room` on every resource.
    pub fn fits_in(self, room: Self) -> bool {
        self.memory_gb <= room.memory_gb + EPSILON
            && self.storage_gb <= room.storage_gb + EPSILON
            && self.bandwidth_mbps <= room.bandwidth_mbps + EPSILON
    }

    fn is_valid(self) -> bool {
        [self.memory_gb, self.storage_gb, self.bandwidth_mbps]
            .iter()
            .all(|v| v.is_finite() && *v >= 0.0)
    }
}

/// A communication edge of the dependency set D_a: agent `a` exchanges
/// `volume_mb` per task execution with `agent`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dependency {
    /// Index of the agent depended on, into [`Instance::agents`].
    pub agent: usize,
    /// Data exchanged per task execution, MB.
    pub volume_mb: f64,
}

/// One AI agent to place (an LLM plus planning, memory and tools).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Agent {
    /// Unique name, shown to operators and to the refining LLM.
    pub name: String,
    /// Index of the task this agent serves, into [`Instance::tasks`].
    pub task: usize,
    /// Resident memory and disk needed on the server, plus the bandwidth the
    /// agent reserves (M_a, S_a, V_a).
    pub demand: Resources,
    /// Compute needed per task execution, gigacycles (C_a).
    pub compute_gcyc: f64,
    /// Size of the exported state (memory and configuration) that moves when
    /// the agent is deployed away from where its state lives or migrated, MB.
    pub state_mb: f64,
    /// Expected LLM thinking time per task execution, seconds (part of
    /// T_LLM). Zero for agents that never call an LLM.
    pub llm_s: f64,
    /// Agents this one exchanges data with (D_a).
    pub depends_on: Vec<Dependency>,
    /// Server that holds the agent's state now, if any. Placing the agent
    /// elsewhere means a migration (eq. 3); `None` means a cold start.
    pub origin: Option<usize>,
    /// The CPU architecture the agent needs (its component declares it),
    /// if any: it may only run on servers of that architecture, or of one
    /// not known. `None` runs anywhere.
    #[serde(default)]
    pub requires_arch: Option<String>,
}

/// Constants of the cost model.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CostParams {
    /// Start-up time of an agent on an idle server, seconds.
    pub init_base_s: f64,
    /// Extra start-up time per agent running on the same server, seconds:
    /// T_init(n) = init_base_s + init_per_agent_s * n (eq. 4 only says it grows).
    pub init_per_agent_s: f64,
    /// Fixed cost of exporting an agent's state, seconds.
    pub export_base_s: f64,
    /// Rate at which state is serialised on export, MB/s.
    pub export_mb_per_s: f64,
    /// Fixed cost of importing state into a fresh agent, seconds.
    pub load_base_s: f64,
    /// Rate at which state is imported, MB/s.
    pub load_mb_per_s: f64,
    /// Round trip between a user and the server it is attached to, seconds.
    pub access_rtt_s: f64,
    /// Weight theta of the dependency-communication term of the EAD objective.
    pub theta: f64,
    /// Weight of the compute-load term of the EAD objective (seconds per
    /// second of compute; 1 keeps the objective in seconds).
    pub compute_weight: f64,
}

impl Default for CostParams {
    fn default() -> Self {
        Self {
            init_base_s: 0.8,
            init_per_agent_s: 0.2,
            export_base_s: 0.2,
            export_mb_per_s: 100.0,
            load_base_s: 0.2,
            load_mb_per_s: 100.0,
            access_rtt_s: 0.01,
            theta: 1.0,
            compute_weight: 1.0,
        }
    }
}

impl CostParams {
    /// Rejects negative or non-finite constants and zero rates.
    pub fn validate(&self) -> Result<()> {
        let non_negative = [
            self.init_base_s,
            self.init_per_agent_s,
            self.export_base_s,
            self.load_base_s,
            self.access_rtt_s,
            self.theta,
            self.compute_weight,
        ];
        let positive = [self.export_mb_per_s, self.load_mb_per_s];
        if non_negative.iter().any(|v| !v.is_finite() || *v < 0.0)
            || positive.iter().any(|v| !v.is_finite() || *v <= 0.0)
        {
            return Err(Error::InvalidInstance(
                "cost parameters must be finite and non-negative, rates positive".into(),
            ));
        }
        Ok(())
    }
}

/// One edge server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Server {
    /// Unique name (a site such as `beijing`).
    pub name: String,
    /// CPU architecture (`x86_64`, `aarch64`), empty when unknown. Agents
    /// run on any architecture unless they require one.
    #[serde(default)]
    pub arch: String,
    /// Where the server is.
    pub site: Site,
    /// Memory, disk and bandwidth capacity (M_e, S_e, V_e).
    pub capacity: Resources,
    /// What is already in use before this decision (other agents, the OS).
    pub used: Resources,
    /// Number of CPU cores.
    pub cores: u32,
    /// Compute capacity of the whole server, gigacycles per second (C_e).
    pub compute_gcps: f64,
    /// Fraction of the compute capacity already busy, in `[0, 1)`.
    pub cpu_busy: f64,
    /// Measured network bandwidth of the server (eta_e), Mbit/s.
    pub eta_mbps: f64,
    /// Most agents the server may run at once (the paper uses 10).
    pub max_agents: usize,
    /// Agents already running on the server before this decision.
    pub hosted: usize,
}

impl Server {
    /// What is left of the constrained resources (M_e^rem, S_e^rem, V_e^rem).
    pub fn remaining(&self) -> Resources {
        self.capacity.minus(self.used)
    }

    /// Compute left, gigacycles per second (C_e^rem). Never below 1% of the
    /// capacity so that a saturated server costs a lot rather than infinity.
    pub fn compute_remaining_gcps(&self) -> f64 {
        (self.compute_gcps * (1.0 - self.cpu_busy)).max(self.compute_gcps * 0.01)
    }

    /// Bandwidth left for new transfers (eta_e^rem), Mbit/s: the measured
    /// bandwidth minus what running agents reserve, never below 1% of it.
    pub fn eta_remaining_mbps(&self) -> f64 {
        (self.eta_mbps - self.used.bandwidth_mbps).max(self.eta_mbps * 0.01)
    }

    /// Agent slots left.
    pub fn slots_remaining(&self) -> usize {
        self.max_agents.saturating_sub(self.hosted)
    }
}

/// A user task r: a prompt, an input file and the agents it needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// Unique name.
    pub name: String,
    /// The user's prompt p_r.
    pub prompt: String,
    /// Size of the input file s_r, MB.
    pub file_mb: f64,
    /// Agents A_r, indices into [`Instance::agents`]. The first one is the
    /// entry agent: it receives the prompt and the file.
    pub agents: Vec<usize>,
    /// The server the user is attached to (e_c).
    pub user_server: usize,
}

impl Task {
    /// The agent that receives the prompt and the file.
    pub fn entry_agent(&self) -> Option<usize> {
        self.agents.first().copied()
    }
}

/// Everything a placement decision needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    /// All agents of all tasks.
    pub agents: Vec<Agent>,
    /// The candidate servers.
    pub servers: Vec<Server>,
    /// The tasks.
    pub tasks: Vec<Task>,
    /// Hop counts and communication times between servers.
    pub topology: Topology,
    /// Constants of the cost model.
    pub params: CostParams,
}

impl Instance {
    /// Checks internal consistency: indices in range, numbers finite and
    /// non-negative, every agent in exactly its own task, topology sized to
    /// the servers. Instances may come from plugins or peers; everything
    /// else in the crate assumes a validated instance.
    pub fn validate(&self) -> Result<()> {
        let n_agents = self.agents.len();
        let n_servers = self.servers.len();
        if n_servers == 0 {
            return Err(Error::InvalidInstance("no servers".into()));
        }
        if self.topology.len() != n_servers {
            return Err(Error::InvalidInstance(format!(
                "topology has {} servers, instance has {n_servers}",
                self.topology.len()
            )));
        }
        for (i, s) in self.servers.iter().enumerate() {
            let numbers = [s.compute_gcps, s.eta_mbps];
            if !s.capacity.is_valid()
                || !s.used.is_valid()
                || numbers.iter().any(|v| !v.is_finite() || *v <= 0.0)
                || !(0.0..1.0).contains(&s.cpu_busy)
                || s.cores == 0
            {
                return Err(Error::InvalidInstance(format!(
                    "server {i} ({}) has an invalid capacity",
                    s.name
                )));
            }
        }
        let mut owner = vec![None; n_agents];
        for (t, task) in self.tasks.iter().enumerate() {
            if task.user_server >= n_servers || !task.file_mb.is_finite() || task.file_mb < 0.0 {
                return Err(Error::InvalidInstance(format!(
                    "task {t} ({}) is invalid",
                    task.name
                )));
            }
            for &a in &task.agents {
                match owner.get_mut(a) {
                    Some(slot @ None) => *slot = Some(t),
                    _ => {
                        return Err(Error::InvalidInstance(format!(
                            "task {t} lists agent {a}, which is out of range or in another task"
                        )));
                    }
                }
            }
        }
        for (i, a) in self.agents.iter().enumerate() {
            let numbers = [a.compute_gcyc, a.state_mb, a.llm_s];
            let bad_dep = a.depends_on.iter().any(|d| {
                d.agent >= n_agents || d.agent == i || !d.volume_mb.is_finite() || d.volume_mb < 0.0
            });
            if owner[i] != Some(a.task)
                || !a.demand.is_valid()
                || numbers.iter().any(|v| !v.is_finite() || *v < 0.0)
                || bad_dep
                || a.origin.is_some_and(|o| o >= n_servers)
            {
                return Err(Error::InvalidInstance(format!(
                    "agent {i} ({}) is invalid",
                    a.name
                )));
            }
        }
        self.params.validate()
    }

    /// Whether agent `a` may run on server `e`: its required architecture,
    /// if any, is the server's (or the server's is not known).
    pub fn runs_on(&self, a: usize, e: usize) -> bool {
        match &self.agents[a].requires_arch {
            None => true,
            Some(arch) => {
                let server = &self.servers[e].arch;
                server.is_empty() || server == arch
            }
        }
    }

    /// Index of the agent called `name`.
    pub fn agent_index(&self, name: &str) -> Option<usize> {
        self.agents.iter().position(|a| a.name == name)
    }

    /// Index of the server called `name`.
    pub fn server_index(&self, name: &str) -> Option<usize> {
        self.servers.iter().position(|s| s.name == name)
    }

    /// Undirected neighbour lists of the dependency graph: for every agent,
    /// `(other agent, volume_mb)` for each dependency record that mentions
    /// it. A record `a -> b` appears in both lists, so walking one side of
    /// every pair counts each record once.
    pub fn neighbours(&self) -> Vec<Vec<(usize, f64)>> {
        let mut out = vec![Vec::new(); self.agents.len()];
        for (a, agent) in self.agents.iter().enumerate() {
            for d in &agent.depends_on {
                out[a].push((d.agent, d.volume_mb));
                out[d.agent].push((a, d.volume_mb));
            }
        }
        out
    }
}

/// A placement: `assignment[a]` is the server index of agent `a` (the
/// decision variables z_{a,e} of the paper, one-hot per agent).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Plan {
    /// Server index per agent, in [`Instance::agents`] order.
    pub assignment: Vec<usize>,
}

impl Plan {
    /// Wraps an assignment vector.
    pub fn new(assignment: Vec<usize>) -> Self {
        Self { assignment }
    }

    /// Server of agent `a`.
    pub fn server_of(&self, a: usize) -> usize {
        self.assignment[a]
    }

    /// Checks the plan's shape against the instance (one server per agent,
    /// all indices in range). Says nothing about capacities: see
    /// [`crate::constraint::check`].
    pub fn check_shape(&self, instance: &Instance) -> Result<()> {
        if self.assignment.len() != instance.agents.len() {
            return Err(Error::InvalidPlan(format!(
                "plan assigns {} agents, instance has {}",
                self.assignment.len(),
                instance.agents.len()
            )));
        }
        if let Some((a, &e)) = self
            .assignment
            .iter()
            .enumerate()
            .find(|&(_, &e)| e >= instance.servers.len())
        {
            return Err(Error::InvalidPlan(format!(
                "agent {a} is assigned to server {e}, out of range"
            )));
        }
        Ok(())
    }

    /// Number of new agents per server.
    pub fn counts(&self, n_servers: usize) -> Vec<usize> {
        let mut counts = vec![0; n_servers];
        for &e in &self.assignment {
            counts[e] += 1;
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_is_euclidean_on_the_projection() {
        let a = Site {
            x_km: 0.0,
            y_km: 0.0,
        };
        let b = Site {
            x_km: 3.0,
            y_km: 4.0,
        };
        assert!((a.distance_km(b) - 5.0).abs() < 1e-12);
        // Beijing to Shanghai is about 1,070 km on the ground.
        let bj = Site::from_degrees(39.90, 116.40, 25.0);
        let sh = Site::from_degrees(31.23, 121.47, 25.0);
        let d = bj.distance_km(sh);
        assert!((1000.0..1250.0).contains(&d), "{d}");
    }

    #[test]
    fn resources_fit_with_tolerance() {
        let room = Resources::new(1.0, 2.0, 3.0);
        assert!(Resources::new(1.0, 2.0, 3.0).fits_in(room));
        assert!(!Resources::new(1.1, 2.0, 3.0).fits_in(room));
        assert_eq!(room.minus(room), Resources::default());
    }
}
