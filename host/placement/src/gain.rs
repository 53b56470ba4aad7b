//! The EAM migration gain: what moving agents is worth, in seconds, given
//! where their users are (eq. 3 for the move itself, the expected delay per
//! request for the benefit, the dependency damage).
//!
//! It sits right above [`crate::cost`], whose equations it composes; ALM
//! ([`crate::migration`]) and the cost-model seam ([`crate::cost_model`])
//! both build on it.

use serde::{Deserialize, Serialize};

use crate::cost::{
    MIGRATION_ROUND_TRIPS, eam_net_gain_s, export_time_s, init_time_s, load_time_s,
    memory_transfer_s, migration_latency_s,
};
use crate::model::{Instance, Plan};
use crate::{Error, Result};

/// Where the users are now and how migration is priced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MigrationContext {
    /// The server each task's user is attached to now (e_c), by task.
    pub user_servers: Vec<usize>,
    /// H_th: an agent more hops than this from its user is a candidate.
    pub hop_threshold: u32,
    /// An agent on a server whose free fraction of any resource is below
    /// this is a candidate.
    pub safety_fraction: f64,
    /// N(e_a): servers within this many hops of the agent's server are
    /// candidate targets (0: every other server).
    pub neighbourhood_hops: u32,
    /// Task executions expected before the next decision; per-request
    /// delays are multiplied by it to compare with one-off migration costs.
    pub horizon_requests: f64,
    /// gamma: seconds charged per MB of state moved (O_overhead).
    pub gamma_s_per_mb: f64,
    /// theta_dep: weight of the dependency damage.
    pub theta_dep: f64,
}

impl MigrationContext {
    /// A context with the default thresholds and prices for users attached
    /// to `user_servers`.
    pub fn new(user_servers: Vec<usize>) -> Self {
        Self {
            user_servers,
            hop_threshold: 2,
            safety_fraction: 0.1,
            neighbourhood_hops: 0,
            horizon_requests: 20.0,
            gamma_s_per_mb: 0.01,
            theta_dep: 1.0,
        }
    }

    /// Checks the context against `instance`: one user server per task,
    /// finite non-negative prices.
    pub fn validate(&self, instance: &Instance) -> Result<()> {
        let n_e = instance.servers.len();
        let ok = self.user_servers.len() == instance.tasks.len()
            && self.user_servers.iter().all(|&e| e < n_e)
            && self.safety_fraction.is_finite()
            && self.horizon_requests.is_finite()
            && self.horizon_requests >= 0.0
            && self.gamma_s_per_mb.is_finite()
            && self.gamma_s_per_mb >= 0.0
            && self.theta_dep.is_finite()
            && self.theta_dep >= 0.0;
        if ok {
            Ok(())
        } else {
            Err(Error::InvalidParameters(
                "migration context: one user server per task, finite non-negative prices".into(),
            ))
        }
    }
}

/// Expected per-request delay of agent `a` on server `e` for a user on
/// `user`: the communication with the user (the entry agent receives the
/// prompt and the file, the others only a round trip) plus its compute time
/// at the server's free rate. Seconds.
pub fn expected_delay_s(instance: &Instance, a: usize, e: usize, user: usize) -> f64 {
    let agent = &instance.agents[a];
    let task = &instance.tasks[agent.task];
    let volume = if task.entry_agent() == Some(a) {
        task.file_mb + task.prompt.len() as f64 / 1e6
    } else {
        0.0
    };
    instance.topology.comm_time_s(user, e, volume)
        + agent.compute_gcyc / instance.servers[e].compute_remaining_gcps()
}

/// T_mig of moving agent `a` from `from` to `to`, where `to` will run
/// `agents_on_target` agents (eq. 3), with the link's round trips
/// ([`crate::cost::MIGRATION_ROUND_TRIPS`]) counted in the transfer.
/// Seconds.
pub fn move_time_s(
    instance: &Instance,
    a: usize,
    from: usize,
    to: usize,
    agents_on_target: usize,
) -> f64 {
    let p = &instance.params;
    let state = instance.agents[a].state_mb;
    migration_latency_s(
        export_time_s(state, p),
        memory_transfer_s(state, instance.topology.bandwidth_mbps(from, to))
            + MIGRATION_ROUND_TRIPS * instance.topology.rtt_s(from, to),
        init_time_s(agents_on_target, p),
        load_time_s(state, p),
    )
}

/// The EAM net gain of going from deployment `before` to `after`, seconds:
/// for every agent that moves, the delay benefit over the horizon minus its
/// migration time and weighted state volume, minus theta_dep times the
/// change in dependency communication over the horizon (each dependency
/// counted once, with both ends where `after` puts them).
pub fn total_net_gain_s(
    instance: &Instance,
    before: &Plan,
    context: &MigrationContext,
    after: &Plan,
) -> f64 {
    let h = context.horizon_requests;
    let mut on_server: Vec<usize> = instance.servers.iter().map(|s| s.hosted).collect();
    for &e in &after.assignment {
        on_server[e] += 1;
    }
    let mut gain = 0.0;
    for (a, (&from, &to)) in before.assignment.iter().zip(&after.assignment).enumerate() {
        if from == to {
            continue;
        }
        let user = context.user_servers[instance.agents[a].task];
        let benefit = h
            * (expected_delay_s(instance, a, from, user) - expected_delay_s(instance, a, to, user));
        gain += eam_net_gain_s(
            benefit,
            move_time_s(instance, a, from, to, on_server[to]),
            context.gamma_s_per_mb,
            instance.agents[a].state_mb,
            0.0,
            0.0,
        );
    }
    let topo = &instance.topology;
    let mut damage = 0.0;
    for (a, agent) in instance.agents.iter().enumerate() {
        for d in &agent.depends_on {
            let b = d.agent;
            if before.assignment[a] == after.assignment[a]
                && before.assignment[b] == after.assignment[b]
            {
                continue;
            }
            damage += topo.comm_time_s(after.assignment[a], after.assignment[b], d.volume_mb)
                - topo.comm_time_s(before.assignment[a], before.assignment[b], d.volume_mb);
        }
    }
    gain - context.theta_dep * h * damage
}
