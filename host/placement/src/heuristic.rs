//! The heuristic eta[a][e]: how suitable server `e` looks for agent `a`
//! before any ant has walked. Computed once per decision, as one matrix.

use serde::{Deserialize, Serialize};

use crate::cost::{init_time_s, ship_time_s};
use crate::model::Instance;
use crate::{Error, Result};

/// A dense agents x servers matrix of positive scores, row-major.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeuristicMatrix {
    servers: usize,
    values: Vec<f64>,
}

impl HeuristicMatrix {
    /// Wraps row-major values; fails unless there are `agents * servers`
    /// finite, non-negative values (a plugin may hand back anything).
    pub fn new(agents: usize, servers: usize, values: Vec<f64>) -> Result<Self> {
        if values.len() != agents * servers {
            return Err(Error::Plugin(format!(
                "heuristic matrix has {} values, expected {agents} x {servers}",
                values.len()
            )));
        }
        if values.iter().any(|v| !v.is_finite() || *v < 0.0) {
            return Err(Error::Plugin(
                "heuristic values must be finite and non-negative".into(),
            ));
        }
        Ok(Self { servers, values })
    }

    /// Number of agents (rows).
    pub fn agents(&self) -> usize {
        self.values.len().checked_div(self.servers).unwrap_or(0)
    }

    /// Number of servers (columns).
    pub fn servers(&self) -> usize {
        self.servers
    }

    /// eta[a][e].
    pub fn get(&self, a: usize, e: usize) -> f64 {
        self.values[a * self.servers + e]
    }

    /// Row of agent `a`.
    pub fn row(&self, a: usize) -> &[f64] {
        &self.values[a * self.servers..(a + 1) * self.servers]
    }
}

/// Scores servers for agents. A policy plugin implements this to replace
/// [`NativeHeuristic`]; the colony calls it once per decision with the
/// whole instance, never per ant step.
pub trait Heuristic {
    /// A short name for reports.
    fn name(&self) -> &str;

    /// eta for every agent and server of `instance`.
    fn matrix(&self, instance: &Instance) -> Result<HeuristicMatrix>;
}

/// Weights of the three scores the native heuristic adds up.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeuristicWeights {
    /// Weight of the initial score (the agent's own EAD cost on the server).
    pub initial: f64,
    /// Weight of the resource score (room left after placing the agent).
    pub resource: f64,
    /// Weight of the communication score (closeness to the task's user).
    pub communication: f64,
}

impl Default for HeuristicWeights {
    fn default() -> Self {
        Self {
            initial: 1.0,
            resource: 0.25,
            communication: 0.25,
        }
    }
}

/// The reference heuristic: eta = initial + resource + communication score,
/// each in `[0, 1]` and weighted.
///
/// * initial score: the cheapest stand-alone EAD cost of the agent over all
///   servers divided by its cost on this one (state shipped over the remaining
///   bandwidth, T_init with one more agent, compute over the remaining rate);
/// * resource score: the mean fraction of memory, storage, bandwidth and
///   agent slots the server keeps after taking the agent (zero if it cannot);
/// * communication score: `1 / (1 + T_comm(e_c, e, v) / s)`, where `e_c` is
///   the user's server, `v` the agent's total dependency volume and `s` one
///   second — agents of a task tend to sit near its user, so this pulls
///   dependent agents together before any pheromone exists.
#[derive(Clone, Copy, Debug, Default)]
pub struct NativeHeuristic {
    /// Score weights.
    pub weights: HeuristicWeights,
}

/// Floor of every heuristic value, so no server is ever impossible by
/// heuristic alone (feasibility decides that).
const ETA_FLOOR: f64 = 1e-6;

impl Heuristic for NativeHeuristic {
    fn name(&self) -> &str {
        "native"
    }

    fn matrix(&self, instance: &Instance) -> Result<HeuristicMatrix> {
        let n_a = instance.agents.len();
        let n_e = instance.servers.len();
        let p = &instance.params;
        let w = self.weights;
        let mut values = vec![0.0; n_a * n_e];
        let mut stand_alone = vec![0.0; n_e];
        for (a, agent) in instance.agents.iter().enumerate() {
            for (e, server) in instance.servers.iter().enumerate() {
                stand_alone[e] = ship_time_s(instance, a, e)
                    + init_time_s(server.hosted + 1, p)
                    + p.compute_weight * agent.compute_gcyc / server.compute_remaining_gcps();
            }
            let cheapest = stand_alone.iter().copied().fold(f64::INFINITY, f64::min);
            let volume: f64 = agent.depends_on.iter().map(|d| d.volume_mb).sum();
            let user = instance.tasks[agent.task].user_server;
            for (e, server) in instance.servers.iter().enumerate() {
                let initial = if stand_alone[e] > 0.0 {
                    cheapest / stand_alone[e]
                } else {
                    1.0
                };
                let room = server.remaining();
                let cap = server.capacity;
                let d = agent.demand;
                let frac = |left: f64, total: f64| {
                    if total > 0.0 {
                        (left / total).clamp(0.0, 1.0)
                    } else {
                        0.0
                    }
                };
                let fits = d.fits_in(room) && server.slots_remaining() > 0;
                let resource = if fits {
                    (frac(room.memory_gb - d.memory_gb, cap.memory_gb)
                        + frac(room.storage_gb - d.storage_gb, cap.storage_gb)
                        + frac(room.bandwidth_mbps - d.bandwidth_mbps, cap.bandwidth_mbps)
                        + frac(
                            (server.slots_remaining() - 1) as f64,
                            server.max_agents.max(1) as f64,
                        ))
                        / 4.0
                } else {
                    0.0
                };
                let communication = 1.0 / (1.0 + instance.topology.comm_time_s(user, e, volume));
                values[a * n_e + e] =
                    (w.initial * initial + w.resource * resource + w.communication * communication)
                        .max(ETA_FLOOR);
            }
        }
        HeuristicMatrix::new(n_a, n_e, values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::tiny_instance;

    #[test]
    fn matrix_is_positive_and_prefers_the_cheaper_server() {
        let inst = tiny_instance();
        let m = NativeHeuristic::default()
            .matrix(&inst)
            .expect("native heuristic");
        for a in 0..inst.agents.len() {
            assert!(m.row(a).iter().all(|v| *v > 0.0));
        }
        // The worker's state already lives on server 0, the user is there and
        // server 0 has twice the free compute: it must score higher.
        assert!(m.get(1, 0) > m.get(1, 1));
    }

    #[test]
    fn matrix_rejects_bad_shapes() {
        assert!(HeuristicMatrix::new(2, 2, vec![1.0; 3]).is_err());
        assert!(HeuristicMatrix::new(1, 2, vec![1.0, f64::NAN]).is_err());
    }
}
