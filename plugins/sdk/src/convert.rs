//! From the host's records to the engine's types and back. Everything coming
//! in is checked before a policy sees it: indices in range, sizes that fit,
//! numbers finite. A policy can therefore index freely.

use edgehost_placement::MigrationContext;
use edgehost_placement::cost::{CostParams, EadTerms, Latency, PlanReport, ResourceCost};
use edgehost_placement::model::{Agent, Dependency, Instance, Plan, Resources, Server, Site, Task};
use edgehost_placement::topology::Topology;

use crate::PolicyError;
use crate::bindings::edgehost::policy::types as wit;

fn invalid(message: impl Into<String>) -> PolicyError {
    PolicyError::InvalidInput(message.into())
}

fn index(value: u32) -> usize {
    // u32 always fits in usize on the targets plugins are built for.
    value as usize
}

fn resources(r: wit::Resources) -> Resources {
    Resources::new(r.memory_gb, r.storage_gb, r.bandwidth_mbps)
}

/// The whole instance, validated by the engine's own rules.
pub(crate) fn instance(i: wit::Instance) -> Result<Instance, PolicyError> {
    let n = index(i.topology.servers);
    if n != i.servers.len() {
        return Err(invalid(format!(
            "topology has {n} servers, the instance has {}",
            i.servers.len()
        )));
    }
    let cells = n
        .checked_mul(n)
        .ok_or_else(|| invalid("topology too large"))?;
    let t = &i.topology;
    if t.hops.len() != cells || t.rtt_s.len() != cells || t.bandwidth_mbps.len() != cells {
        return Err(invalid(format!(
            "topology matrices must have {n} x {n} entries"
        )));
    }
    let rows = |v: &[f64]| v.chunks(n.max(1)).map(<[f64]>::to_vec).collect::<Vec<_>>();
    let hops: Vec<Vec<u32>> = t.hops.chunks(n.max(1)).map(<[u32]>::to_vec).collect();
    let topology = Topology::from_measurements(&rows(&t.rtt_s), &rows(&t.bandwidth_mbps), &hops)
        .map_err(|e| invalid(e.to_string()))?;

    let agents = i
        .agents
        .into_iter()
        .map(|a| Agent {
            name: a.name,
            task: index(a.task),
            demand: resources(a.demand),
            compute_gcyc: a.compute_gcyc,
            state_mb: a.state_mb,
            llm_s: a.llm_s,
            depends_on: a
                .depends_on
                .into_iter()
                .map(|d| Dependency {
                    agent: index(d.agent),
                    volume_mb: d.volume_mb,
                })
                .collect(),
            origin: a.origin.map(index),
            // The policy contract does not carry it: the engine keeps an
            // agent off servers of another architecture by itself.
            requires_arch: None,
        })
        .collect();
    let servers = i
        .servers
        .into_iter()
        .map(|s| Server {
            name: s.name,
            arch: s.arch,
            site: Site {
                x_km: s.site.x_km,
                y_km: s.site.y_km,
            },
            capacity: resources(s.capacity),
            used: resources(s.used),
            cores: s.cores,
            compute_gcps: s.compute_gcps,
            cpu_busy: s.cpu_busy,
            eta_mbps: s.eta_mbps,
            max_agents: index(s.max_agents),
            hosted: index(s.hosted),
        })
        .collect();
    let mut tasks = Vec::with_capacity(i.tasks.len());
    for t in i.tasks {
        // The engine only ever looks at the prompt's length; a placeholder
        // of that length stands in for it. A length beyond what this
        // plugin's memory could hold is refused rather than allocated.
        let prompt_bytes = usize::try_from(t.prompt_bytes)
            .ok()
            .filter(|&b| b <= MAX_PROMPT_BYTES)
            .ok_or_else(|| {
                invalid(format!(
                    "task {} has a {}-byte prompt, over the {MAX_PROMPT_BYTES}-byte limit",
                    t.name, t.prompt_bytes
                ))
            })?;
        tasks.push(Task {
            name: t.name,
            prompt: " ".repeat(prompt_bytes),
            file_mb: t.file_mb,
            agents: t.agents.into_iter().map(index).collect(),
            user_server: index(t.user_server),
        });
    }
    let p = i.params;
    let params = CostParams {
        init_base_s: p.init_base_s,
        init_per_agent_s: p.init_per_agent_s,
        export_base_s: p.export_base_s,
        export_mb_per_s: p.export_mb_per_s,
        load_base_s: p.load_base_s,
        load_mb_per_s: p.load_mb_per_s,
        access_rtt_s: p.access_rtt_s,
        theta: p.theta,
        compute_weight: p.compute_weight,
    };
    let instance = Instance {
        agents,
        servers,
        tasks,
        topology,
        params,
    };
    instance.validate().map_err(|e| invalid(e.to_string()))?;
    Ok(instance)
}

/// Longest prompt the SDK stands a placeholder in for, bytes.
const MAX_PROMPT_BYTES: usize = 1 << 20;

/// A plan, checked against the instance's shape.
pub(crate) fn plan(instance: &Instance, plan: wit::Plan) -> Result<Plan, PolicyError> {
    let plan = Plan::new(plan.into_iter().map(index).collect());
    plan.check_shape(instance)
        .map_err(|e| invalid(e.to_string()))?;
    Ok(plan)
}

/// A migration context, checked against the instance.
pub(crate) fn context(
    instance: &Instance,
    c: wit::MigrationContext,
) -> Result<MigrationContext, PolicyError> {
    let n_e = instance.servers.len();
    let ok = c.user_servers.len() == instance.tasks.len()
        && c.user_servers.iter().all(|&e| index(e) < n_e)
        && c.safety_fraction.is_finite()
        && [c.horizon_requests, c.gamma_s_per_mb, c.theta_dep]
            .iter()
            .all(|v| v.is_finite() && *v >= 0.0);
    if !ok {
        return Err(invalid(
            "migration context: one user server per task, in range; finite, non-negative prices",
        ));
    }
    Ok(MigrationContext {
        user_servers: c.user_servers.into_iter().map(index).collect(),
        hop_threshold: c.hop_threshold,
        safety_fraction: c.safety_fraction,
        neighbourhood_hops: c.neighbourhood_hops,
        horizon_requests: c.horizon_requests,
        gamma_s_per_mb: c.gamma_s_per_mb,
        theta_dep: c.theta_dep,
        pressure_s_per_point: edgehost_placement::gain::PRESSURE_S_PER_POINT,
    })
}

fn latency(l: Latency) -> wit::Latency {
    wit::Latency {
        tra: l.tra,
        mig: l.mig,
        ini: l.ini,
        pro: l.pro,
        total: l.total,
    }
}

fn cost(c: ResourceCost) -> wit::ResourceCost {
    wit::ResourceCost {
        cpu: c.cpu,
        storage: c.storage,
        comm: c.comm,
        total: c.total,
    }
}

fn terms(t: EadTerms) -> wit::ObjectiveTerms {
    wit::ObjectiveTerms {
        deployment_s: t.deployment_s,
        compute_s: t.compute_s,
        dependency_s: t.dependency_s,
        total: t.total,
    }
}

/// A plan report as the host's record.
pub(crate) fn plan_cost(r: PlanReport) -> wit::PlanReport {
    wit::PlanReport {
        objective: terms(r.objective),
        latency: latency(r.latency),
        cost: cost(r.cost),
        tasks: r
            .tasks
            .into_iter()
            .map(|(l, c)| wit::TaskCost {
                latency: latency(l),
                cost: cost(c),
            })
            .collect(),
    }
}
