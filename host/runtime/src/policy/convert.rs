//! The engine's types as the policy world's records, and back.

use edgehost_placement::cost::{EadTerms, Latency, PlanReport, ResourceCost};
use edgehost_placement::model::Resources;
use edgehost_placement::{Instance, MigrationContext, Plan};

use super::PluginFault;
use super::bindings::edgehost::policy::types as wit;
use crate::sandbox::one_line;

/// Indices and counts cross the boundary as u32; an instance with more
/// than four billion of anything cannot be built in a host's memory, so
/// saturating never changes a real value.
fn u32_of(value: usize) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

fn resources(r: Resources) -> wit::Resources {
    wit::Resources {
        memory_gb: r.memory_gb,
        storage_gb: r.storage_gb,
        bandwidth_mbps: r.bandwidth_mbps,
    }
}

/// The whole instance as the record plugins see.
pub(super) fn instance(i: &Instance) -> wit::Instance {
    let n = i.topology.len();
    let mut hops = Vec::with_capacity(n * n);
    let mut rtt_s = Vec::with_capacity(n * n);
    let mut bandwidth_mbps = Vec::with_capacity(n * n);
    for from in 0..n {
        for to in 0..n {
            hops.push(i.topology.hops(from, to));
            rtt_s.push(i.topology.rtt_s(from, to));
            bandwidth_mbps.push(i.topology.bandwidth_mbps(from, to));
        }
    }
    let p = &i.params;
    wit::Instance {
        agents: i
            .agents
            .iter()
            .map(|a| wit::Agent {
                name: a.name.clone(),
                task: u32_of(a.task),
                demand: resources(a.demand),
                compute_gcyc: a.compute_gcyc,
                state_mb: a.state_mb,
                llm_s: a.llm_s,
                depends_on: a
                    .depends_on
                    .iter()
                    .map(|d| wit::Dependency {
                        agent: u32_of(d.agent),
                        volume_mb: d.volume_mb,
                    })
                    .collect(),
                origin: a.origin.map(u32_of),
            })
            .collect(),
        servers: i
            .servers
            .iter()
            .map(|s| wit::Server {
                name: s.name.clone(),
                arch: s.arch.clone(),
                site: wit::Site {
                    x_km: s.site.x_km,
                    y_km: s.site.y_km,
                },
                capacity: resources(s.capacity),
                used: resources(s.used),
                cores: s.cores,
                compute_gcps: s.compute_gcps,
                cpu_busy: s.cpu_busy,
                eta_mbps: s.eta_mbps,
                max_agents: u32_of(s.max_agents),
                hosted: u32_of(s.hosted),
            })
            .collect(),
        tasks: i
            .tasks
            .iter()
            .map(|t| wit::Task {
                name: t.name.clone(),
                prompt_bytes: u64::try_from(t.prompt.len()).unwrap_or(u64::MAX),
                file_mb: t.file_mb,
                agents: t.agents.iter().copied().map(u32_of).collect(),
                user_server: u32_of(t.user_server),
            })
            .collect(),
        topology: wit::Topology {
            servers: u32_of(n),
            hops,
            rtt_s,
            bandwidth_mbps,
        },
        params: wit::CostParams {
            init_base_s: p.init_base_s,
            init_per_agent_s: p.init_per_agent_s,
            export_base_s: p.export_base_s,
            export_mb_per_s: p.export_mb_per_s,
            load_base_s: p.load_base_s,
            load_mb_per_s: p.load_mb_per_s,
            access_rtt_s: p.access_rtt_s,
            theta: p.theta,
            compute_weight: p.compute_weight,
            // Eq. 10's weights are the paper's ones; the contract keeps
            // the field, and the host always sends 1.
            cost_weights: wit::CostWeights {
                cpu: 1.0,
                storage: 1.0,
                comm: 1.0,
            },
        },
    }
}

/// A plan as a list of server indices.
pub(super) fn plan(p: &Plan) -> wit::Plan {
    p.assignment.iter().copied().map(u32_of).collect()
}

/// A migration context as its record.
pub(super) fn context(c: &MigrationContext) -> wit::MigrationContext {
    wit::MigrationContext {
        user_servers: c.user_servers.iter().copied().map(u32_of).collect(),
        hop_threshold: c.hop_threshold,
        safety_fraction: c.safety_fraction,
        neighbourhood_hops: c.neighbourhood_hops,
        horizon_requests: c.horizon_requests,
        gamma_s_per_mb: c.gamma_s_per_mb,
        theta_dep: c.theta_dep,
    }
}

/// The text of a `policy-error`, made safe to print.
pub(super) fn refusal(e: wit::PolicyError) -> String {
    match e {
        wit::PolicyError::Unsupported(m) => format!("unsupported: {}", one_line(&m)),
        wit::PolicyError::InvalidInput(m) => format!("invalid input: {}", one_line(&m)),
    }
}

fn latency_values(l: &wit::Latency) -> [(&'static str, f64); 5] {
    [
        ("tra", l.tra),
        ("mig", l.mig),
        ("ini", l.ini),
        ("pro", l.pro),
        ("total", l.total),
    ]
}

fn cost_values(c: &wit::ResourceCost) -> [(&'static str, f64); 4] {
    [
        ("cpu", c.cpu),
        ("storage", c.storage),
        ("comm", c.comm),
        ("total", c.total),
    ]
}

/// Checks a plan report: one entry per task, every number finite and not
/// negative.
pub(super) fn check_report(r: &wit::PlanReport, tasks: usize) -> Result<(), PluginFault> {
    if r.tasks.len() != tasks {
        return Err(PluginFault::WrongLength {
            what: "task entries",
            expected: tasks,
            got: r.tasks.len(),
        });
    }
    let o = &r.objective;
    let mut values: Vec<(String, f64)> = [
        ("deployment-s", o.deployment_s),
        ("compute-s", o.compute_s),
        ("dependency-s", o.dependency_s),
        ("total", o.total),
    ]
    .iter()
    .map(|(k, v)| (format!("objective.{k}"), *v))
    .collect();
    values.extend(
        latency_values(&r.latency)
            .iter()
            .map(|(k, v)| (format!("latency.{k}"), *v)),
    );
    values.extend(
        cost_values(&r.cost)
            .iter()
            .map(|(k, v)| (format!("cost.{k}"), *v)),
    );
    for (t, task) in r.tasks.iter().enumerate() {
        values.extend(
            latency_values(&task.latency)
                .iter()
                .map(|(k, v)| (format!("tasks[{t}].latency.{k}"), *v)),
        );
        values.extend(
            cost_values(&task.cost)
                .iter()
                .map(|(k, v)| (format!("tasks[{t}].cost.{k}"), *v)),
        );
    }
    for (what, value) in values {
        if !value.is_finite() {
            return Err(PluginFault::NotFinite { what, value });
        }
        if value < 0.0 {
            return Err(PluginFault::Negative { what, value });
        }
    }
    Ok(())
}

fn latency(l: wit::Latency) -> Latency {
    Latency {
        tra: l.tra,
        mig: l.mig,
        ini: l.ini,
        pro: l.pro,
        total: l.total,
    }
}

fn cost(c: wit::ResourceCost) -> ResourceCost {
    ResourceCost {
        cpu: c.cpu,
        storage: c.storage,
        comm: c.comm,
        total: c.total,
    }
}

/// A checked plan report as the engine's type.
pub(super) fn report(r: wit::PlanReport) -> PlanReport {
    PlanReport {
        objective: EadTerms {
            deployment_s: r.objective.deployment_s,
            compute_s: r.objective.compute_s,
            dependency_s: r.objective.dependency_s,
            total: r.objective.total,
        },
        latency: latency(r.latency),
        cost: cost(r.cost),
        tasks: r
            .tasks
            .into_iter()
            .map(|t| (latency(t.latency), cost(t.cost)))
            .collect(),
    }
}
