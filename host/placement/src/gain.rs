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
    memory_transfer_s, migration_latency_s, user_delay_s,
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
    /// What relieving a short server is worth: seconds per percentage
    /// point of memory, storage or bandwidth brought back up towards
    /// `safety_fraction` (and charged for every point a move takes a target
    /// below it). The policy contract does not carry it: plugins see the
    /// default.
    #[serde(default = "default_pressure_price")]
    pub pressure_s_per_point: f64,
}

/// The default of [`MigrationContext::pressure_s_per_point`]: one second
/// per percentage point, so freeing 5 points of a server's memory is worth
/// about what a default-priced move of a small agent costs.
pub const PRESSURE_S_PER_POINT: f64 = 1.0;

fn default_pressure_price() -> f64 {
    PRESSURE_S_PER_POINT
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
            pressure_s_per_point: PRESSURE_S_PER_POINT,
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
            && self.theta_dep >= 0.0
            && self.pressure_s_per_point.is_finite()
            && self.pressure_s_per_point >= 0.0;
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

/// Percentage points by which the servers fall short of `safety_fraction`
/// free memory, storage and bandwidth once `plan` is applied, summed over
/// servers and resources. Compute is left out: its shortage shows in the
/// delays, which price it at the free rate.
pub fn shortage_points(instance: &Instance, plan: &Plan, safety_fraction: f64) -> f64 {
    let mut room: Vec<_> = instance.servers.iter().map(|s| s.remaining()).collect();
    for (a, &e) in plan.assignment.iter().enumerate() {
        room[e] = room[e].minus(instance.agents[a].demand);
    }
    let short = |left: f64, cap: f64| {
        if cap > 0.0 {
            (safety_fraction - left / cap).max(0.0) * 100.0
        } else {
            0.0
        }
    };
    instance
        .servers
        .iter()
        .zip(&room)
        .map(|(s, r)| {
            short(r.memory_gb, s.capacity.memory_gb)
                + short(r.storage_gb, s.capacity.storage_gb)
                + short(r.bandwidth_mbps, s.capacity.bandwidth_mbps)
        })
        .sum()
}

/// The EAM net gain of going from deployment `before` to `after`, seconds:
/// `eam_net_gain_s` of
///
/// - the delay benefit: the horizon's runs of every task, each priced by
///   [`user_delay_s`] (transmit from the user's server now, compute at each
///   server's free rate, stretched when it runs more agents than cores), as
///   the plan report prices them — so the compute term counts the load the
///   plan's own moves add to their targets and take off their sources;
/// - the moves: T_mig of each moved agent ([`move_time_s`]) and gamma per
///   MB of its state;
/// - the dependency damage: theta_dep times the change in communication
///   between dependent agents over the horizon (each dependency counted
///   once, with both ends where `after` puts them);
///
/// plus the pressure relieved: `pressure_s_per_point` times the drop in
/// [`shortage_points`] (negative when moves push a target below the safety
/// fraction).
pub fn total_net_gain_s(
    instance: &Instance,
    before: &Plan,
    context: &MigrationContext,
    after: &Plan,
) -> f64 {
    if before.assignment == after.assignment {
        return 0.0;
    }
    let h = context.horizon_requests;
    let count = |plan: &Plan| {
        let mut on: Vec<usize> = instance.servers.iter().map(|s| s.hosted).collect();
        for &e in &plan.assignment {
            on[e] += 1;
        }
        on
    };
    let (on_before, on_after) = (count(before), count(after));
    let mut migration = 0.0;
    let mut state = 0.0;
    for (a, (&from, &to)) in before.assignment.iter().zip(&after.assignment).enumerate() {
        if from != to {
            migration += move_time_s(instance, a, from, to, on_after[to]);
            state += instance.agents[a].state_mb;
        }
    }
    let mut benefit = 0.0;
    for (t, &user) in context.user_servers.iter().enumerate() {
        benefit += user_delay_s(instance, before, t, user, &on_before)
            - user_delay_s(instance, after, t, user, &on_after);
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
    let relief = if context.pressure_s_per_point > 0.0 {
        context.pressure_s_per_point
            * (shortage_points(instance, before, context.safety_fraction)
                - shortage_points(instance, after, context.safety_fraction))
    } else {
        0.0
    };
    eam_net_gain_s(
        h * benefit,
        migration,
        context.gamma_s_per_mb,
        state,
        context.theta_dep,
        h * damage,
    ) + relief
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::tiny_instance;

    fn unpriced(users: Vec<usize>) -> MigrationContext {
        MigrationContext {
            pressure_s_per_point: 0.0,
            ..MigrationContext::new(users)
        }
    }

    #[test]
    fn agents_moved_together_crowd_their_target() {
        let mut inst = tiny_instance();
        inst.agents[1].depends_on.clear();
        let ctx = unpriced(vec![0]);
        let before = Plan::new(vec![0, 0]);
        let g = |after: Vec<usize>| total_net_gain_s(&inst, &before, &ctx, &Plan::new(after));
        let both = g(vec![1, 1]);
        let apart = g(vec![1, 0]) + g(vec![0, 1]);
        // Server 1 has one core, 1 gcps free and one agent of its own: an
        // agent moved there alone runs among two, both run among three, so
        // each computes one more share of its gigacycles (4 and 6) on every
        // request, and each starts among one more agent.
        let crowding = ctx.horizon_requests * (4.0 + 6.0) / 1.0;
        let start_up = 2.0 * inst.params.init_per_agent_s;
        assert!(
            (apart - both - crowding - start_up).abs() < 1e-9,
            "{apart} {both}"
        );
    }

    #[test]
    fn the_delay_benefit_is_the_reports_delay() {
        let inst = tiny_instance();
        let ctx = unpriced(vec![1]);
        let before = Plan::new(vec![0, 0]);
        let after = Plan::new(vec![1, 0]);
        // The report's transmit plus processing, less the LLM's thinking
        // and the hand-offs (which the dependency damage prices).
        let delay = |plan: &Plan, users: usize| {
            let mut moved = inst.clone();
            moved.tasks[0].user_server = users;
            let r = crate::cost::report(&moved, plan).latency;
            let llm: f64 = moved.agents.iter().map(|a| a.llm_s).sum();
            let handoff = moved
                .topology
                .comm_time_s(plan.assignment[1], plan.assignment[0], 5.0);
            r.tra + r.pro - llm - handoff
        };
        let benefit = ctx.horizon_requests * (delay(&before, 1) - delay(&after, 1));
        let damage = ctx.horizon_requests
            * (inst.topology.comm_time_s(0, 1, 5.0) - inst.topology.comm_time_s(0, 0, 5.0));
        let on_after = [1, 2];
        let migration = move_time_s(&inst, 0, 0, 1, on_after[1]) + ctx.gamma_s_per_mb * 10.0;
        let expected = benefit - migration - ctx.theta_dep * damage;
        let got = total_net_gain_s(&inst, &before, &ctx, &after);
        assert!((got - expected).abs() < 1e-9, "{got} {expected}");
    }

    #[test]
    fn relieving_a_short_server_is_worth_its_points() {
        let mut inst = tiny_instance();
        inst.agents[1].depends_on.clear();
        // Both agents on server 0 leave it 1% of its memory: 9 points short.
        inst.servers[0].used.memory_gb = 0.78;
        let before = Plan::new(vec![0, 0]);
        assert!((shortage_points(&inst, &before, 0.1) - 9.0).abs() < 1e-9);
        let off = Plan::new(vec![0, 1]);
        assert_eq!(shortage_points(&inst, &off, 0.1), 0.0);
        let priced = MigrationContext::new(vec![0]);
        let relief = total_net_gain_s(&inst, &before, &priced, &off)
            - total_net_gain_s(&inst, &before, &unpriced(vec![0]), &off);
        assert!((relief - 9.0 * PRESSURE_S_PER_POINT).abs() < 1e-9);
        // Overfilling server 1 (1.2 GB on 1 GB) is charged: 30 points.
        let over = Plan::new(vec![1, 1]);
        assert!((shortage_points(&inst, &over, 0.1) - 30.0).abs() < 1e-9);
        assert_eq!(total_net_gain_s(&inst, &before, &priced, &before), 0.0);
    }
}
