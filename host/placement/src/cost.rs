//! The cost model: the latencies of eqs. 1-6, the resource costs of eqs. 7-10,
//! the EAD placement objective and the EAM migration net gain.
//!
//! Each equation is a small named function with its units, so a reader can
//! hold it against the paper; [`report`] and [`ead_objective`] put them
//! together for a whole plan. The migration gain built on them is in
//! [`crate::gain`]; the seam where a policy plugin replaces them is
//! [`crate::cost_model`].

use serde::{Deserialize, Serialize};

pub use crate::model::CostParams;
use crate::model::{Instance, Plan};

/// Seconds to move `mb` megabytes over `mbps` megabits per second.
pub fn transfer_time_s(mb: f64, mbps: f64) -> f64 {
    mb * 8.0 / mbps
}

/// T_p: time to receive the prompt, seconds — the user's access round trip,
/// the round trip from the user's server to the entry server, and the prompt
/// bytes over the entry server's bandwidth.
pub fn prompt_time_s(
    prompt_bytes: usize,
    eta_mbps: f64,
    access_rtt_s: f64,
    relay_rtt_s: f64,
) -> f64 {
    // The cast is exact for any prompt shorter than 2^52 bytes.
    access_rtt_s + relay_rtt_s + transfer_time_s(prompt_bytes as f64 / 1e6, eta_mbps)
}

/// Eq. 1, T_r^tra: upload of the task's file (`file_mb`) over the entry
/// server's bandwidth `eta_mbps`, plus the prompt time `prompt_s`. Seconds.
pub fn transmit_latency_s(file_mb: f64, eta_mbps: f64, prompt_s: f64) -> f64 {
    transfer_time_s(file_mb, eta_mbps) + prompt_s
}

/// Round trips a live migration makes on the link besides the bytes it
/// ships: prepare, the pre-copy, the final transfer and the commit. Eq. 2
/// counts bandwidth only; on a wide-area link these round trips are most
/// of the transfer time of a small state.
pub const MIGRATION_ROUND_TRIPS: f64 = 4.0;

/// Eq. 2, T_m^tra: time to ship an agent's exported memory (`state_mb`) over
/// the link between source and target (`link_mbps`). Seconds.
pub fn memory_transfer_s(state_mb: f64, link_mbps: f64) -> f64 {
    transfer_time_s(state_mb, link_mbps)
}

/// T^export: time for the source to export `state_mb` of agent state. Seconds.
pub fn export_time_s(state_mb: f64, params: &CostParams) -> f64 {
    params.export_base_s + state_mb / params.export_mb_per_s
}

/// T^load: time for the target to import `state_mb` of agent state. Seconds.
pub fn load_time_s(state_mb: f64, params: &CostParams) -> f64 {
    params.load_base_s + state_mb / params.load_mb_per_s
}

/// T_init(n): start-up time of an agent on a server that runs `agents`
/// agents (itself included). Seconds; grows linearly with the count.
pub fn init_time_s(agents: usize, params: &CostParams) -> f64 {
    // The cast is exact: agent counts are far below 2^52.
    params.init_base_s + params.init_per_agent_s * agents as f64
}

/// Eq. 3, T_r^mig for one agent: export at the source, memory transfer,
/// initiation at the target and import of the memory. Seconds.
pub fn migration_latency_s(export_s: f64, transfer_s: f64, initiation_s: f64, load_s: f64) -> f64 {
    export_s + transfer_s + initiation_s + load_s
}

/// Eq. 4, T_r^ini: the sum of T_init over the task's agents, each evaluated
/// at the number of agents on its server. `agents_on_server` yields that
/// count once per agent of the task. Seconds.
pub fn initiation_latency_s(
    agents_on_server: impl IntoIterator<Item = usize>,
    params: &CostParams,
) -> f64 {
    agents_on_server
        .into_iter()
        .map(|n| init_time_s(n, params))
        .sum()
}

/// Eq. 5, T_r^pro: file processing time plus LLM thinking time. Seconds.
pub fn processing_latency_s(file_processing_s: f64, llm_s: f64) -> f64 {
    file_processing_s + llm_s
}

/// Eq. 6, T_r: the total task duration. Seconds.
pub fn task_latency_s(tra_s: f64, mig_s: f64, ini_s: f64, pro_s: f64) -> f64 {
    tra_s + mig_s + ini_s + pro_s
}

/// Eq. 7, O_r^CPU: the part of the task's duration that keeps CPUs busy —
/// the total minus the file upload and the memory transfers, which only wait
/// on the network. Seconds.
pub fn cpu_cost_s(total_s: f64, file_transfer_s: f64, memory_transfer_s: f64) -> f64 {
    (total_s - (file_transfer_s + memory_transfer_s)).max(0.0)
}

/// Eq. 8, O_r^Stor: task files plus agent memories, GB.
pub fn storage_cost_gb(files_gb: f64, memories_gb: f64) -> f64 {
    files_gb + memories_gb
}

/// Eq. 9, O_r^Comm: the sum of the volumes of the communication events, MB.
pub fn communication_cost_mb(events_mb: impl IntoIterator<Item = f64>) -> f64 {
    events_mb.into_iter().sum()
}

/// Eq. 10, O_r: the sum of the three costs with the paper's unit weights
/// (a unitless score). It is reported, never optimised: the algorithms
/// minimise the EAD objective, so weights here would change no decision.
pub fn total_cost(cpu_s: f64, storage_gb: f64, comm_mb: f64) -> f64 {
    cpu_s + storage_gb + comm_mb
}

/// The EAM net gain of moving an agent, seconds: the delay benefit minus the
/// migration time and weighted overhead, minus the weighted damage to its
/// dependencies. `delta_latency_s` and `delta_dep_s` are already summed over
/// the expected requests.
pub fn eam_net_gain_s(
    delta_latency_s: f64,
    migration_s: f64,
    gamma: f64,
    overhead_mb: f64,
    theta_dep: f64,
    delta_dep_s: f64,
) -> f64 {
    delta_latency_s - (migration_s + gamma * overhead_mb) - theta_dep * delta_dep_s
}

/// The latency breakdown of eqs. 1-6, seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Transmit latency, eq. 1.
    pub tra: f64,
    /// Migration latency, eq. 3, summed over the agents that move.
    pub mig: f64,
    /// Initiation latency, eq. 4.
    pub ini: f64,
    /// Processing latency, eq. 5 (plus the hand-offs between dependent agents).
    pub pro: f64,
    /// Total, eq. 6.
    pub total: f64,
}

impl Latency {
    fn add(&mut self, other: &Self) {
        self.tra += other.tra;
        self.mig += other.mig;
        self.ini += other.ini;
        self.pro += other.pro;
        self.total += other.total;
    }
}

/// The resource-cost breakdown of eqs. 7-10.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ResourceCost {
    /// CPU cost, eq. 7, seconds.
    pub cpu: f64,
    /// Storage cost, eq. 8, GB.
    pub storage: f64,
    /// Communication cost, eq. 9, MB.
    pub comm: f64,
    /// Weighted total, eq. 10.
    pub total: f64,
}

impl ResourceCost {
    fn add(&mut self, other: &Self) {
        self.cpu += other.cpu;
        self.storage += other.storage;
        self.comm += other.comm;
        self.total += other.total;
    }
}

/// The three terms of the EAD objective, seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EadTerms {
    /// Deployment delay: state shipped to each agent's server over its
    /// remaining bandwidth plus T_init at the resulting agent count.
    pub deployment_s: f64,
    /// Compute load: per server, the compute placed on it over its remaining
    /// compute rate, weighted by `compute_weight`.
    pub compute_s: f64,
    /// theta times the communication time over every dependency.
    pub dependency_s: f64,
    /// The objective: the sum of the three.
    pub total: f64,
}

/// Latency and cost of one plan, per task and summed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PlanReport {
    /// The EAD objective the algorithms minimise.
    pub objective: EadTerms,
    /// Latency summed over tasks.
    pub latency: Latency,
    /// Resource cost summed over tasks.
    pub cost: ResourceCost,
    /// Per task, in [`Instance::tasks`] order.
    pub tasks: Vec<(Latency, ResourceCost)>,
}

/// Agents running on each server once `plan` is applied (the ones already
/// hosted plus the new ones).
pub fn agents_per_server(instance: &Instance, plan: &Plan) -> Vec<usize> {
    let mut counts: Vec<usize> = instance.servers.iter().map(|s| s.hosted).collect();
    for &e in &plan.assignment {
        counts[e] += 1;
    }
    counts
}

/// Time to bring agent `a`'s state to server `e` over `e`'s remaining
/// bandwidth; zero if the state already lives there. Seconds.
pub fn ship_time_s(instance: &Instance, a: usize, e: usize) -> f64 {
    let agent = &instance.agents[a];
    if agent.origin == Some(e) {
        0.0
    } else {
        memory_transfer_s(agent.state_mb, instance.servers[e].eta_remaining_mbps())
    }
}

/// The EAD objective of a plan (the problem's `min`, with the co-location
/// equality relaxed into the theta-weighted communication term; see the
/// crate docs). The plan must have the instance's shape.
pub fn ead_objective(instance: &Instance, plan: &Plan) -> EadTerms {
    let p = &instance.params;
    let n_servers = instance.servers.len();
    let mut new_agents = vec![0usize; n_servers];
    let mut compute = vec![0.0; n_servers];
    let mut ship = 0.0;
    for (a, &e) in plan.assignment.iter().enumerate() {
        new_agents[e] += 1;
        compute[e] += instance.agents[a].compute_gcyc;
        ship += ship_time_s(instance, a, e);
    }
    let mut init = 0.0;
    let mut compute_s = 0.0;
    for (e, server) in instance.servers.iter().enumerate() {
        let n = new_agents[e];
        if n > 0 {
            // Each of the n new agents starts among hosted + n agents (eq. 4).
            init += n as f64 * init_time_s(server.hosted + n, p);
            compute_s += compute[e] / server.compute_remaining_gcps();
        }
    }
    let mut dependency = 0.0;
    for (a, agent) in instance.agents.iter().enumerate() {
        let ea = plan.assignment[a];
        for d in &agent.depends_on {
            dependency += instance
                .topology
                .comm_time_s(ea, plan.assignment[d.agent], d.volume_mb);
        }
    }
    let deployment_s = ship + init;
    let compute_s = p.compute_weight * compute_s;
    let dependency_s = p.theta * dependency;
    EadTerms {
        deployment_s,
        compute_s,
        dependency_s,
        total: deployment_s + compute_s + dependency_s,
    }
}

/// Seconds agent `a` computes on server `e` when `agents_on_e` agents share
/// it: its gigacycles at the server's free rate (the rate a live host's
/// calibration measures a call against), stretched by `agents_on_e /
/// cores` when there are more agents than cores.
pub fn compute_time_s(instance: &Instance, a: usize, e: usize, agents_on_e: usize) -> f64 {
    let server = &instance.servers[e];
    let crowding = (agents_on_e as f64 / f64::from(server.cores.max(1))).max(1.0);
    instance.agents[a].compute_gcyc / server.compute_remaining_gcps() * crowding
}

/// The part of one run of task `t` that depends on where its agents are
/// and where its user is, besides the hand-offs between dependent agents:
/// the transmit latency to the entry agent's server from `user` (eq. 1)
/// plus every agent's compute time with the agent counts of `on_server`
/// (eq. 5 without the LLM's thinking time). Seconds; zero for a task
/// without agents.
pub fn user_delay_s(
    instance: &Instance,
    plan: &Plan,
    t: usize,
    user: usize,
    on_server: &[usize],
) -> f64 {
    let task = &instance.tasks[t];
    let Some(entry) = task.entry_agent() else {
        return 0.0;
    };
    let e_in = plan.assignment[entry];
    let eta = instance.servers[e_in].eta_remaining_mbps();
    let prompt_s = prompt_time_s(
        task.prompt.len(),
        eta,
        instance.params.access_rtt_s,
        instance.topology.rtt_s(user, e_in),
    );
    let compute: f64 = task
        .agents
        .iter()
        .map(|&a| {
            let e = plan.assignment[a];
            compute_time_s(instance, a, e, on_server[e])
        })
        .sum();
    transmit_latency_s(task.file_mb, eta, prompt_s) + compute
}

/// The latency (eqs. 1-6) and cost (eqs. 7-10) of every task under `plan`,
/// plus the EAD objective. The plan must have the instance's shape.
pub fn report(instance: &Instance, plan: &Plan) -> PlanReport {
    let p = &instance.params;
    let topo = &instance.topology;
    let on_server = agents_per_server(instance, plan);
    let mut out = PlanReport {
        objective: ead_objective(instance, plan),
        ..PlanReport::default()
    };
    for task in &instance.tasks {
        let Some(entry) = task.entry_agent() else {
            out.tasks
                .push((Latency::default(), ResourceCost::default()));
            continue;
        };
        let e_in = plan.assignment[entry];
        let eta = instance.servers[e_in].eta_remaining_mbps();
        let prompt_s = prompt_time_s(
            task.prompt.len(),
            eta,
            p.access_rtt_s,
            topo.rtt_s(task.user_server, e_in),
        );
        let file_transfer_s = transfer_time_s(task.file_mb, eta);
        let tra = transmit_latency_s(task.file_mb, eta, prompt_s);

        let mut mig = 0.0;
        let mut memory_transfer_total = 0.0;
        let mut file_processing = 0.0;
        let mut llm = 0.0;
        let mut handoff = 0.0;
        let mut comm_events = vec![task.file_mb, task.prompt.len() as f64 / 1e6];
        let mut memories_gb = 0.0;
        let mut servers_used: Vec<usize> = Vec::with_capacity(task.agents.len());
        for &a in &task.agents {
            let agent = &instance.agents[a];
            let e = plan.assignment[a];
            if let Some(origin) = agent.origin.filter(|&o| o != e) {
                let transfer = memory_transfer_s(agent.state_mb, topo.bandwidth_mbps(origin, e));
                memory_transfer_total += transfer;
                mig += migration_latency_s(
                    export_time_s(agent.state_mb, p),
                    transfer,
                    init_time_s(on_server[e], p),
                    load_time_s(agent.state_mb, p),
                );
                comm_events.push(agent.state_mb);
            }
            file_processing += compute_time_s(instance, a, e, on_server[e]);
            llm += agent.llm_s;
            for d in &agent.depends_on {
                let ed = plan.assignment[d.agent];
                handoff += topo.comm_time_s(e, ed, d.volume_mb);
                if ed != e {
                    comm_events.push(d.volume_mb);
                }
            }
            memories_gb += agent.demand.memory_gb;
            if !servers_used.contains(&e) {
                servers_used.push(e);
            }
        }
        let ini = initiation_latency_s(
            task.agents.iter().map(|&a| on_server[plan.assignment[a]]),
            p,
        );
        let pro = processing_latency_s(file_processing, llm) + handoff;
        let total = task_latency_s(tra, mig, ini, pro);
        let latency = Latency {
            tra,
            mig,
            ini,
            pro,
            total,
        };
        let cpu = cpu_cost_s(total, file_transfer_s, memory_transfer_total);
        // The file is stored once on every server that hosts one of the
        // task's agents.
        let storage = storage_cost_gb(
            task.file_mb / 1000.0 * servers_used.len() as f64,
            memories_gb,
        );
        let comm = communication_cost_mb(comm_events);
        let cost = ResourceCost {
            cpu,
            storage,
            comm,
            total: total_cost(cpu, storage, comm),
        };
        out.latency.add(&latency);
        out.cost.add(&cost);
        out.tasks.push((latency, cost));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equations_compose() {
        // 10 MB over 20 Mbit/s is 4 s, plus a 0.5 s prompt.
        assert!((transmit_latency_s(10.0, 20.0, 0.5) - 4.5).abs() < 1e-12);
        assert!((migration_latency_s(1.0, 2.0, 3.0, 4.0) - 10.0).abs() < 1e-12);
        let p = CostParams::default();
        // Two agents each among three on their server: 2 * (0.8 + 0.2 * 3).
        assert!((initiation_latency_s([3, 3], &p) - 2.8).abs() < 1e-12);
        assert!((cpu_cost_s(10.0, 4.0, 1.0) - 5.0).abs() < 1e-12);
        assert!(cpu_cost_s(1.0, 4.0, 1.0) >= 0.0);
        assert!((total_cost(1.0, 2.0, 3.0) - 6.0).abs() < 1e-12);
        assert!((eam_net_gain_s(10.0, 3.0, 0.5, 2.0, 2.0, 1.0) - 4.0).abs() < 1e-12);
    }

    #[test]
    fn params_reject_nonsense() {
        let bad = CostParams {
            export_mb_per_s: 0.0,
            ..CostParams::default()
        };
        assert!(bad.validate().is_err());
        assert!(CostParams::default().validate().is_ok());
    }
}
