//! Turning the live fleet into a placement instance and asking ALP.

pub use edgehost_placement::cost::CostParams;
use edgehost_placement::cost::ead_objective;
use edgehost_placement::cost::{agents_per_server, user_delay_s};
use edgehost_placement::gain::{MigrationContext, move_time_s};
use edgehost_placement::migration::MigrationPlan;
use edgehost_placement::model::{Agent, Instance, Plan, Resources, Server, Task};
use edgehost_placement::refine::{Refiner, Verdict, refine_migration, refine_placement};
use edgehost_placement::topology::{GeoParams, Topology};
use edgehost_placement::{Algorithm, Alm, AlmParams, Alp, AlpParams, Bounder, Policy};
use edgehost_runtime::Descriptor;

use crate::protocol::{AgentName, CostParts, HostReport, LatencyParts, Placement, site_of};
use crate::{Error, Result};
use edgehost_proto::ServerStatus;

const MIB_PER_GB: f64 = 1024.0;
const BYTES_PER_GB: f64 = 1024.0 * 1024.0 * 1024.0;
/// Speed assumed per core, gigacycles per second, for a host that reports
/// no measurement of its own.
const GHZ_PER_CORE: f64 = 2.0;

/// The seed of placement decisions: fixed, so the same fleet state and the
/// same agent give the same placement.
pub const PLACEMENT_SEED: u64 = 0x5eed_ed6e;

/// The speed of one of a host's cores: what it measured, or the nominal
/// [`GHZ_PER_CORE`] when it reports none.
fn core_gcps(s: &ServerStatus) -> f64 {
    if s.core_gcps.is_finite() && s.core_gcps > 0.0 {
        s.core_gcps
    } else {
        GHZ_PER_CORE
    }
}

/// One server of the instance per reachable host, with what its agents
/// already use taken off.
fn server_of(report: &HostReport) -> Server {
    let used = report.agents.iter().fold(Resources::default(), |acc, a| {
        acc.plus(demand_of(&a.descriptor))
    });
    let s = &report.status;
    Server {
        name: report.name.to_string(),
        arch: s.arch.clone(),
        site: site_of(report.location),
        capacity: Resources {
            memory_gb: s.memory_total_bytes as f64 / BYTES_PER_GB,
            // What is free on disk now plus what our own agents reserved.
            storage_gb: s.disk_free_bytes as f64 / BYTES_PER_GB + used.storage_gb,
            bandwidth_mbps: report.bandwidth_mbps,
        },
        used,
        cores: s.cpu_cores.max(1),
        compute_gcps: f64::from(s.cpu_cores.max(1)) * core_gcps(s),
        cpu_busy: compute_busy(report),
        eta_mbps: report.bandwidth_mbps,
        max_agents: report.max_agents as usize,
        hosted: report.agents.len(),
    }
}

/// The fraction of a host's cores its agents take, in one unit
/// (millicores): what they declared, or what the host process was measured
/// to use, whichever is more. The measured figure is the lesser of the
/// process's load over half a minute and over the last seconds: a load
/// counts once it has lasted and only while it lasts, so neither a burst
/// nor the tail of work that has ended reads as a busy host. The machine's
/// whole CPU figure is not used: a neighbour's burst on a shared box is
/// not this host's load.
pub fn compute_busy(report: &HostReport) -> f64 {
    let declared: f64 = report
        .agents
        .iter()
        .map(|a| f64::from(a.descriptor.demand.cpu_millicores))
        .sum();
    let status = &report.status;
    let measured = f64::from(
        status
            .process_cpu_percent
            .min(status.process_cpu_recent_percent),
    ) * 10.0;
    let capacity = f64::from(report.status.cpu_cores.max(1)) * 1000.0;
    (declared.max(measured) / capacity).clamp(0.0, 0.95)
}

fn demand_of(d: &Descriptor) -> Resources {
    Resources {
        memory_gb: f64::from(d.demand.memory_mib) / MIB_PER_GB,
        storage_gb: f64::from(d.demand.storage_mib) / MIB_PER_GB,
        bandwidth_mbps: f64::from(d.demand.bandwidth_mbps),
    }
}

/// The servers, links and cost constants of `hosts` as measured: each
/// link's round-trip time and bandwidth from what either end measured
/// (the site labels' geography where neither has), and the cost model's
/// constants from the hosts' own fits (see [`fleet_params`]). Hop counts
/// stay those of the sites: they are the operator's word for "near".
fn measured_fleet(hosts: &[HostReport]) -> Result<(Vec<Server>, Topology, CostParams)> {
    let servers: Vec<Server> = hosts.iter().map(server_of).collect();
    let geo = geo_topology(hosts)?;
    let n = hosts.len();
    let mut rtt_s = vec![vec![0.0; n]; n];
    let mut bandwidth = vec![vec![0.0; n]; n];
    let mut hops = vec![vec![0; n]; n];
    for i in 0..n {
        for j in 0..n {
            if i == j {
                continue;
            }
            let there = hosts[i].model.link(&hosts[j].name);
            let back = hosts[j].model.link(&hosts[i].name);
            let rtt_ms = [there, back]
                .into_iter()
                .flatten()
                .map(|l| l.rtt_ms)
                .filter(|r| *r > 0.0)
                .reduce(f64::max);
            rtt_s[i][j] = rtt_ms.map_or(geo.rtt_s(i, j), |ms| ms / 1e3);
            bandwidth[i][j] = there
                .and_then(|l| l.send)
                .and_then(|e| mbps_of(&e))
                .unwrap_or(geo.bandwidth_mbps(i, j));
            hops[i][j] = geo.hops(i, j);
        }
    }
    let topology = Topology::from_measurements(&rtt_s, &bandwidth, &hops)
        .map_err(|e| Error::Placement(e.to_string()))?;
    Ok((servers, topology, fleet_params(hosts)))
}

/// The links of `hosts` as their site labels describe them: the fallback
/// for pairs nobody measured, and the hop counts.
fn geo_topology(hosts: &[HostReport]) -> Result<Topology> {
    let sites: Vec<_> = hosts.iter().map(|h| site_of(h.location)).collect();
    let eta: Vec<f64> = hosts.iter().map(|h| h.bandwidth_mbps).collect();
    Topology::from_sites(&sites, &eta, GeoParams::default())
        .map_err(|e| Error::Placement(e.to_string()))
}

/// Mbit/s implied by a send fit's slope, when it has one.
fn mbps_of(e: &edgehost_proto::Estimate) -> Option<f64> {
    // ms per byte -> bits per second / 1e6.
    (e.ms_per_unit > 0.0).then(|| 8.0 * 1e3 / e.ms_per_unit / 1e6)
}

/// The cost model's constants for a decision over `hosts`: one set for the
/// whole instance, so each measured figure is the mean of the hosts that
/// measured it (exports priced at `hosts[0]`'s, the deciding host, whose
/// agents are the ones that move), and the default where none did.
pub fn fleet_params(hosts: &[HostReport]) -> CostParams {
    let mut params = CostParams::default();
    let Some(own) = hosts.first() else {
        return params;
    };
    let mean = |pick: fn(&edgehost_proto::HostModel) -> Option<edgehost_proto::Estimate>,
                at: f64|
     -> Option<(f64, f64)> {
        let figures: Vec<_> = hosts.iter().filter_map(|h| pick(&h.model)).collect();
        (!figures.is_empty()).then(|| {
            let k = figures.len() as f64;
            let base = figures.iter().map(|e| e.base_ms()).sum::<f64>() / k;
            let at_size = figures.iter().map(|e| e.predict_ms(at)).sum::<f64>() / k;
            (base, at_size)
        })
    };
    const MIB: f64 = 1024.0 * 1024.0;
    let rate = |base_ms: f64, at_ms: f64| {
        let per_mib = at_ms - base_ms;
        if per_mib > 0.0 { 1e3 / per_mib } else { 1e12 }
    };
    if let Some(e) = own.model.export {
        params.export_base_s = e.base_ms() / 1e3;
        params.export_mb_per_s = rate(e.base_ms(), e.predict_ms(MIB));
    }
    if let Some((base, at)) = mean(|m| m.import, MIB) {
        params.load_base_s = base / 1e3;
        params.load_mb_per_s = rate(base, at);
    }
    // Starts are priced for the components the hosts run; a host's fit is
    // taken at its own mean component size.
    let starts: Vec<f64> = hosts
        .iter()
        .filter_map(|h| h.model.start)
        .map(|e| e.mean_ms)
        .collect();
    if !starts.is_empty() {
        params.init_base_s = starts.iter().sum::<f64>() / starts.len() as f64 / 1e3;
        params.init_per_agent_s = 0.0;
    }
    params
}

/// Where a new agent's user is.
#[derive(Debug, Clone, Copy)]
pub struct User {
    /// Index into the hosts of the host the user is attached to; `None`
    /// when not given, and the host asked (`hosts[0]`) stands for it.
    pub at: Option<usize>,
    /// Hops from the user's host within which candidates are taken (ALM's
    /// H_th, so that a fresh placement does not draw a migration at once).
    pub neighbourhood: u32,
}

/// The agent to place: what it declared and what its component says.
#[derive(Debug, Clone, Copy)]
pub struct Newcomer<'a> {
    /// What the agent declared.
    pub descriptor: &'a Descriptor,
    /// Size of its component, bytes (what a first deployment ships).
    pub component_bytes: u64,
    /// The CPU architecture its component declares it needs, if any.
    pub requires_arch: Option<&'a str>,
}

/// Chooses a host for `newcomer` among `hosts` (the
/// reachable ones; `hosts[0]` is the host the client came through). With a
/// user given, the candidates are the hosts within `user.neighbourhood`
/// hops of the user's host and the user's latency is priced from it;
/// without, every host is a candidate and `hosts[0]` counts as the user's.
pub fn place(
    hosts: &[HostReport],
    newcomer: Newcomer<'_>,
    user: User,
    policy: &Policy,
    policy_name: &str,
    refiner: Option<&dyn Refiner>,
    algorithm: Algorithm,
) -> Result<Placement> {
    let Newcomer {
        descriptor,
        component_bytes,
        requires_arch,
    } = newcomer;
    if hosts.is_empty() {
        return Err(Error::Placement("no reachable host".into()));
    }
    let near: Vec<HostReport>;
    let (hosts, user_server) = match user.at {
        None => (hosts, 0),
        Some(u) => {
            let geo = geo_topology(hosts)?;
            near = (0..hosts.len())
                .filter(|&e| geo.hops(u, e) <= user.neighbourhood)
                .map(|e| hosts[e].clone())
                .collect();
            let at = near
                .iter()
                .position(|h| h.name == hosts[u].name)
                .unwrap_or(0);
            (near.as_slice(), at)
        }
    };
    // The engine keeps the agent off hosts of another architecture (those
    // whose architecture is not known may take it); say so plainly when
    // no candidate is left.
    if let Some(arch) = requires_arch
        && !hosts
            .iter()
            .any(|h| h.status.arch.is_empty() || h.status.arch == arch)
    {
        return Err(Error::Placement(format!(
            "the agent requires {arch}, and no candidate host is {arch}"
        )));
    }
    let (servers, topology, params) = measured_fleet(hosts)?;
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
        requires_arch: requires_arch.map(str::to_owned),
    };
    let instance = Instance {
        agents: vec![agent],
        servers,
        tasks: vec![Task {
            name: "push".into(),
            prompt: String::new(),
            file_mb: 0.0,
            agents: vec![0],
            user_server,
        }],
        topology,
        params,
    };
    instance
        .validate()
        .map_err(|e| Error::Placement(e.to_string()))?;
    let (plan, objective, refinement, mut fallbacks) = match algorithm {
        Algorithm::AntLlm => {
            let outcome = Alp::new(AlpParams::default())
                .place(&instance, policy, PLACEMENT_SEED)
                .map_err(|e| Error::Placement(e.to_string()))?;
            // The LLM may propose a better plan; it stands only if it is
            // feasible and not worse under the active cost model.
            let (plan, objective, refinement) = match refiner {
                Some(refiner) => {
                    let refined = refine_placement(
                        &instance,
                        &outcome.plan,
                        outcome.objective,
                        refiner,
                        policy,
                    );
                    let note = match &refined.verdict {
                        Verdict::Accepted { colony, refined } => format!(
                            "accepted the LLM's plan ({refined:.4} against the colony's {colony:.4})"
                        ),
                        Verdict::Kept(reason) => format!("kept the colony's plan: {reason}"),
                    };
                    (refined.plan, refined.objective, Some(note))
                }
                None => (outcome.plan.clone(), outcome.objective, None),
            };
            (plan, objective, refinement, outcome.fallbacks)
        }
        baseline => {
            // The baselines decide on the fleet's agents as they stand: a
            // seed of their number keeps Random reproducible and lets
            // successive placements differ.
            let agents: u64 = hosts.iter().map(|h| h.agents.len() as u64).sum();
            let plan = match baseline {
                Algorithm::Greedy => edgehost_placement::baseline::greedy(&instance),
                Algorithm::Polling => edgehost_placement::baseline::polling(&instance),
                Algorithm::Random => {
                    edgehost_placement::baseline::random(&instance, PLACEMENT_SEED ^ agents)
                }
                Algorithm::LocalSearch => {
                    edgehost_placement::local::LocalSearch::default().place(&instance)
                }
                _ => edgehost_placement::exact::Optimal::default()
                    .solve(&instance)
                    .map(|o| o.plan),
            }
            .map_err(|e| Error::Placement(format!("{baseline}: {e}")))?;
            let mut fallbacks = Vec::new();
            let objective = policy
                .objective(&instance, &plan, &mut fallbacks)
                .map_err(|e| Error::Placement(e.to_string()))?;
            (plan, objective, None, fallbacks)
        }
    };
    let chosen = plan.server_of(0);
    // How far from optimal the plan may be, on the native objective (a
    // plugged-in cost model may price it otherwise).
    let bound = Bounder::default()
        .bound(&instance, Some(&plan))
        .map_err(|e| Error::Placement(e.to_string()))?;
    let gap = bound.gap(ead_objective(&instance, &plan).total);
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
        algorithm: algorithm.name().into(),
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
        lower_bound: bound.value,
        gap,
    })
}

/// One of this host's agents, as ALM sees it.
#[derive(Clone)]
pub struct Resident {
    /// Its name.
    pub name: AgentName,
    /// What it declared.
    pub descriptor: Descriptor,
    /// Size of its state, bytes.
    pub state_bytes: u64,
    /// Index into `hosts` of the host its user is attached to.
    pub user: usize,
    /// Its measured processing time per call here, seconds, if measured,
    /// the LLM's time included.
    pub processing_s: Option<f64>,
    /// The part of that spent waiting for the LLM (T_LLM), seconds, if it
    /// has called the LLM here.
    pub llm_s: Option<f64>,
    /// The CPU architecture it needs, if its component declares one.
    pub requires_arch: Option<String>,
}

/// What a move of one agent is worth, as the model prices it from the
/// fleet's measurements.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Priced {
    /// Index into `hosts` of the target.
    pub to: usize,
    /// The latency saved over the horizon's requests, seconds.
    pub saving_s: f64,
    /// The move's own time (eq. 3, round trips included), seconds.
    pub move_s: f64,
}

/// ALM's plan, with each resident's move priced: the move made, or, for
/// an agent that stays, the move to its user's host.
pub struct Planned {
    /// The plan.
    pub plan: MigrationPlan,
    /// By resident, in order; `None` for an agent already at its user's host
    /// and not moved.
    pub priced: Vec<Option<Priced>>,
    /// What the LLM made of the colony's plan, when one is configured and
    /// some agent was triggered.
    pub refinement: Option<String>,
}

/// Runs ALM for the agents of `hosts[0]` (this host): which of them should
/// move, and where. With a `refiner`, the LLM is shown the colony's plan
/// when some agent was triggered; its proposal stands only if it is
/// feasible, every move in it pays for itself and its total gain is not
/// lower. Only moves with a positive net gain come back.
pub fn plan_migrations(
    hosts: &[HostReport],
    residents: &[Resident],
    settings: &crate::config::AlmSettings,
    policy: &Policy,
    refiner: Option<&dyn Refiner>,
) -> Result<Planned> {
    let (servers, topology, params) = measured_fleet(hosts)?;
    // A measured call time, less its time waiting for the LLM, is turned
    // into the work it took at this host's free rate, so other hosts price
    // it at theirs. The LLM's time (T_LLM) is the same wherever the agent
    // runs.
    let here_gcps = servers[0].compute_remaining_gcps();
    let agents = residents
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let llm_s = r.llm_s.unwrap_or(0.0);
            Agent {
                name: r.name.to_string(),
                task: i,
                demand: demand_of(&r.descriptor),
                compute_gcyc: r.processing_s.map_or(
                    f64::from(r.descriptor.demand.cpu_millicores) / 1000.0,
                    |s| (s - llm_s).max(0.0) * here_gcps,
                ),
                state_mb: r.state_bytes as f64 / (1024.0 * 1024.0),
                llm_s,
                depends_on: Vec::new(),
                origin: Some(0),
                requires_arch: r.requires_arch.clone(),
            }
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
        params,
    };
    let mut context = MigrationContext::new(residents.iter().map(|r| r.user).collect());
    context.hop_threshold = settings.hop_threshold;
    context.safety_fraction = settings.safety_fraction;
    context.horizon_requests = settings.horizon_requests;
    let deployment = Plan::new(vec![0; residents.len()]);
    let plan = Alm::new(AlmParams::default())
        .plan(&instance, &deployment, &context, policy, PLACEMENT_SEED)
        .map_err(|e| Error::Placement(e.to_string()))?;
    let (plan, refinement) = match refiner {
        Some(refiner) if !plan.triggers.is_empty() => {
            let (decided, verdict) =
                refine_migration(&instance, &deployment, &context, &plan, refiner, policy);
            let note = match verdict {
                Verdict::Accepted { colony, refined } => format!(
                    "accepted the LLM's plan (net gain {refined:.3} s against the colony's {colony:.3} s)"
                ),
                Verdict::Kept(reason) => format!("kept the colony's plan: {reason}"),
            };
            (decided, Some(note))
        }
        _ => (plan, None),
    };
    // Each move priced on its own, as ALM's gain prices it: the user's
    // delay (each resident is a task of its own) with the agent counts of
    // the deployment before and after.
    let priced = residents
        .iter()
        .enumerate()
        .map(|(a, r)| {
            let to = plan
                .moves
                .iter()
                .find(|m| m.agent == a)
                .map_or(r.user, |m| m.to);
            (to != 0).then(|| {
                let mut after = deployment.clone();
                after.assignment[a] = to;
                let on_before = agents_per_server(&instance, &deployment);
                let on_after = agents_per_server(&instance, &after);
                Priced {
                    to,
                    saving_s: context.horizon_requests
                        * (user_delay_s(&instance, &deployment, a, r.user, &on_before)
                            - user_delay_s(&instance, &after, a, r.user, &on_after)),
                    move_s: move_time_s(&instance, a, 0, to, on_after[to]),
                }
            })
        })
        .collect();
    Ok(Planned {
        plan,
        priced,
        refinement,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgehost_proto::{HostModel, Location, PolicyPlugins};

    /// A 2-core host with no agents whose process used `long` percent of a
    /// core over half a minute and `recent` over the last seconds.
    fn host(long: f32, recent: f32) -> HostReport {
        HostReport {
            name: "h".parse().expect("a host name"),
            addr: "127.0.0.1:4433".parse().expect("an address"),
            site: "edge".into(),
            location: Location { lat: 0.0, lon: 0.0 },
            bandwidth_mbps: 20.0,
            max_agents: 10,
            status: ServerStatus {
                arch: "x86_64".into(),
                os: "linux".into(),
                cpu_features: Vec::new(),
                core_gcps: 2.0,
                cpu_cores: 2,
                cpu_usage_percent: 50.0,
                process_cpu_percent: long,
                process_cpu_recent_percent: recent,
                load_1m: 0.0,
                memory_total_bytes: 1 << 31,
                memory_free_bytes: 1 << 30,
                disk_total_bytes: 1 << 34,
                disk_free_bytes: 1 << 33,
                net_rx_bytes_per_sec: 0.0,
                net_tx_bytes_per_sec: 0.0,
                sample_ms: 1000,
            },
            agents: Vec::new(),
            compiling: Vec::new(),
            uptime_s: 60.0,
            policy: "builtin".into(),
            policy_generation: 0,
            policy_plugins: PolicyPlugins::default(),
            model: Box::new(HostModel::default()),
        }
    }

    #[test]
    fn a_load_counts_once_it_has_lasted_and_only_while_it_lasts() {
        // Work that ended seconds ago: the half-minute figure still shows
        // it, the recent one does not. This read as "5% free" before.
        let tail = compute_busy(&host(190.0, 4.0));
        assert!((tail - 0.02).abs() < 1e-6, "{tail}");
        // A burst that has just begun.
        let burst = compute_busy(&host(6.0, 150.0));
        assert!((burst - 0.03).abs() < 1e-6, "{burst}");
        // A load that has lasted and still does.
        assert_eq!(compute_busy(&host(190.0, 196.0)), 0.95);
        let steady = compute_busy(&host(100.0, 120.0));
        assert!((steady - 0.5).abs() < 1e-6, "{steady}");
    }
}
