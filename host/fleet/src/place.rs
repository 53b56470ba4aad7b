//! Turning the live fleet into a placement instance and asking ALP.

use edgehost_placement::cost::CostParams;
use edgehost_placement::migration::{MigrationContext, MigrationPlan};
use edgehost_placement::model::{Agent, Instance, Plan, Resources, Server, Task};
use edgehost_placement::refine::{Refiner, Verdict, refine_placement};
use edgehost_placement::topology::{GeoParams, Topology};
use edgehost_placement::{Alm, AlmParams, Alp, AlpParams, Policy};
use edgehost_runtime::Descriptor;

use crate::protocol::{AgentName, CostParts, HostReport, LatencyParts, Placement, site_of};
use crate::{Error, Result};

const MIB_PER_GB: f64 = 1024.0;
const BYTES_PER_GB: f64 = 1024.0 * 1024.0 * 1024.0;
/// Clock rate assumed per core when turning cores into cycles per second.
const GHZ_PER_CORE: f64 = 2.0;

/// The seed of placement decisions: fixed, so the same fleet state and the
/// same agent give the same placement.
pub const PLACEMENT_SEED: u64 = 0x5eed_ed6e;

/// One server of the instance per reachable host, with what its agents
/// already use taken off.
fn server_of(report: &HostReport) -> Server {
    let used = report.agents.iter().fold(Resources::default(), |acc, a| {
        acc.plus(demand_of(&a.descriptor))
    });
    let s = &report.status;
    Server {
        name: report.name.to_string(),
        site: site_of(report.location),
        capacity: Resources {
            memory_gb: s.memory_total_bytes as f64 / BYTES_PER_GB,
            // What is free on disk now plus what our own agents reserved.
            storage_gb: s.disk_free_bytes as f64 / BYTES_PER_GB + used.storage_gb,
            bandwidth_mbps: report.bandwidth_mbps,
        },
        used,
        cores: s.cpu_cores.max(1),
        compute_gcps: f64::from(s.cpu_cores.max(1)) * GHZ_PER_CORE,
        cpu_busy: f64::from(s.cpu_usage_percent / 100.0).clamp(0.0, 0.95),
        eta_mbps: report.bandwidth_mbps,
        max_agents: report.max_agents as usize,
        hosted: report.agents.len(),
    }
}

fn demand_of(d: &Descriptor) -> Resources {
    Resources {
        memory_gb: f64::from(d.demand.memory_mib) / MIB_PER_GB,
        storage_gb: f64::from(d.demand.storage_mib) / MIB_PER_GB,
        bandwidth_mbps: f64::from(d.demand.bandwidth_mbps),
    }
}

/// Chooses a host for an agent declaring `descriptor` among `hosts` (the
/// reachable ones; `hosts[0]` is the host the client came through and counts
/// as where the user is).
pub fn place(
    hosts: &[HostReport],
    descriptor: &Descriptor,
    component_bytes: u64,
    policy: &Policy,
    policy_name: &str,
    refiner: Option<&dyn Refiner>,
) -> Result<Placement> {
    if hosts.is_empty() {
        return Err(Error::Placement("no reachable host".into()));
    }
    let servers: Vec<Server> = hosts.iter().map(server_of).collect();
    let sites: Vec<_> = servers.iter().map(|s| s.site).collect();
    let eta: Vec<f64> = servers.iter().map(|s| s.eta_mbps).collect();
    let topology = Topology::from_sites(&sites, &eta, GeoParams::default())
        .map_err(|e| Error::Placement(e.to_string()))?;
    let agent = Agent {
        name: "new".into(),
        task: 0,
        demand: demand_of(descriptor),
        compute_gcyc: f64::from(descriptor.demand.cpu_millicores) / 1000.0,
        // What a first deployment ships: the component, when the chosen host
        // does not have it yet.
        state_mb: component_bytes as f64 / (1024.0 * 1024.0),
        llm_s: 0.0,
        depends_on: Vec::new(),
        origin: None,
    };
    let instance = Instance {
        agents: vec![agent],
        servers,
        tasks: vec![Task {
            name: "push".into(),
            prompt: String::new(),
            file_mb: 0.0,
            agents: vec![0],
            user_server: 0,
        }],
        topology,
        params: CostParams::default(),
    };
    instance
        .validate()
        .map_err(|e| Error::Placement(e.to_string()))?;
    let outcome = Alp::new(AlpParams::default())
        .place(&instance, policy, PLACEMENT_SEED)
        .map_err(|e| Error::Placement(e.to_string()))?;
    // The LLM may propose a better plan; it stands only if it is feasible
    // and not worse under the active cost model.
    let (plan, objective, refinement) = match refiner {
        Some(refiner) => {
            let refined =
                refine_placement(&instance, &outcome.plan, outcome.objective, refiner, policy);
            let note = match &refined.verdict {
                Verdict::Accepted { colony, refined } => {
                    format!(
                        "accepted the LLM's plan ({refined:.4} against the colony's {colony:.4})"
                    )
                }
                Verdict::Kept(reason) => format!("kept the colony's plan: {reason}"),
            };
            (refined.plan, refined.objective, Some(note))
        }
        None => (outcome.plan.clone(), outcome.objective, None),
    };
    let chosen = plan.server_of(0);
    let mut fallbacks = outcome.fallbacks.clone();
    let report = policy
        .report(
            &instance,
            &Plan::new(plan.assignment.clone()),
            &mut fallbacks,
        )
        .map_err(|e| Error::Placement(e.to_string()))?;
    Ok(Placement {
        host: hosts[chosen].name.clone(),
        addr: hosts[chosen].addr,
        algorithm: "antllm".into(),
        policy: policy_name.to_owned(),
        fallbacks,
        latency_s: LatencyParts {
            transmit_s: report.latency.tra,
            migration_s: report.latency.mig,
            initiation_s: report.latency.ini,
            processing_s: report.latency.pro,
        },
        cost: CostParts {
            cpu: report.cost.cpu,
            storage: report.cost.storage,
            communication: report.cost.comm,
        },
        objective,
        candidates: hosts.iter().map(|h| h.name.clone()).collect(),
        refinement,
    })
}

/// One of this host's agents, as ALM sees it.
pub struct Resident {
    /// Its name.
    pub name: AgentName,
    /// What it declared.
    pub descriptor: Descriptor,
    /// Size of its state, bytes.
    pub state_bytes: u64,
    /// Index into `hosts` of the host its user is attached to.
    pub user: usize,
}

/// Runs ALM for the agents of `hosts[0]` (this host): which of them should
/// move, and where. Only moves with a positive net gain come back.
pub fn plan_migrations(
    hosts: &[HostReport],
    residents: &[Resident],
    settings: &crate::config::AlmSettings,
    policy: &Policy,
) -> Result<MigrationPlan> {
    let servers: Vec<Server> = hosts.iter().map(server_of).collect();
    let sites: Vec<_> = servers.iter().map(|s| s.site).collect();
    let eta: Vec<f64> = servers.iter().map(|s| s.eta_mbps).collect();
    let topology = Topology::from_sites(&sites, &eta, GeoParams::default())
        .map_err(|e| Error::Placement(e.to_string()))?;
    let agents = residents
        .iter()
        .enumerate()
        .map(|(i, r)| Agent {
            name: r.name.to_string(),
            task: i,
            demand: demand_of(&r.descriptor),
            compute_gcyc: f64::from(r.descriptor.demand.cpu_millicores) / 1000.0,
            state_mb: r.state_bytes as f64 / (1024.0 * 1024.0),
            llm_s: 0.0,
            depends_on: Vec::new(),
            origin: Some(0),
        })
        .collect();
    let tasks = residents
        .iter()
        .enumerate()
        .map(|(i, r)| Task {
            name: r.name.to_string(),
            prompt: String::new(),
            file_mb: 0.0,
            agents: vec![i],
            user_server: r.user,
        })
        .collect();
    // The agents of hosts[0] are counted in its `used` already; the instance
    // holds them as agents, so take them off to avoid counting them twice.
    let mut servers = servers;
    let ours = residents.iter().fold(Resources::default(), |acc, r| {
        acc.plus(demand_of(&r.descriptor))
    });
    servers[0].used = servers[0].used.minus(ours);
    servers[0].hosted = servers[0].hosted.saturating_sub(residents.len());
    let instance = Instance {
        agents,
        servers,
        tasks,
        topology,
        params: CostParams::default(),
    };
    let mut context = MigrationContext::new(residents.iter().map(|r| r.user).collect());
    context.hop_threshold = settings.hop_threshold;
    context.safety_fraction = settings.safety_fraction;
    context.horizon_requests = settings.horizon_requests;
    let deployment = Plan::new(vec![0; residents.len()]);
    Alm::new(AlmParams::default())
        .plan(&instance, &deployment, &context, policy, PLACEMENT_SEED)
        .map_err(|e| Error::Placement(e.to_string()))
}
