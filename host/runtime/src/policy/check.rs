//! The conformance run behind `edgehost policy check`: is a file a policy
//! plugin this host can use, and does it behave?
//!
//! Checks, in order (the first three stop the run when they fail):
//!
//! 1. **component** — a valid WebAssembly component;
//! 2. **world** — the `edgehost:policy/policy` world at this host's contract
//!    version, both interfaces exported;
//! 3. **loads** — it compiles and links against a sandbox that grants
//!    nothing, and instantiates;
//! 4. **answers** — on seeded instances of several sizes, every function
//!    answers with the right number of values, all finite, and not negative
//!    where the contract says so (a refusal of a valid instance fails too);
//! 5. **determinism** — the same inputs give bit-for-bit the same outputs,
//!    again in the same instance and in a fresh one;
//! 6. **speed** — scoring a 1,000 agents x 100 servers matrix, including the
//!    Wasm boundary, within a budget;
//! 7. **hostile inputs** — empty, huge and inconsistent instances are
//!    answered or refused, never met with a trap, a hang or a memory bomb.

use std::time::Instant;

use edgehost_placement::model::Dependency;
use edgehost_placement::topology::Topology;
use edgehost_placement::{Instance, MigrationContext, Plan, Scenario, ScenarioConfig};
use serde::Serialize;

use super::{PluginFault, PolicyComponent, PolicyInstance, PolicyRuntime};
use crate::{ComponentInfo, Error, Result};

/// What the run may take.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// Budget for scoring a 1,000 x 100 matrix (median of several runs), ms.
    pub max_score_ms: f64,
    /// Seeded instances the answers and determinism checks use.
    pub instances: u64,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            max_score_ms: 50.0,
            instances: 12,
        }
    }
}

/// One check and how it went.
#[derive(Debug, Clone, Serialize)]
pub struct CheckItem {
    /// The check's name.
    pub name: &'static str,
    /// Whether it passed.
    pub passed: bool,
    /// What was seen.
    pub detail: String,
}

/// The outcome of a conformance run.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// The plugin's name.
    pub plugin: String,
    /// What the component is, when it could be read.
    pub info: Option<ComponentInfo>,
    /// The checks run, in order.
    pub items: Vec<CheckItem>,
}

impl CheckReport {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        !self.items.is_empty() && self.items.iter().all(|i| i.passed)
    }

    fn push(&mut self, name: &'static str, outcome: std::result::Result<String, String>) -> bool {
        let passed = outcome.is_ok();
        let detail = outcome.unwrap_or_else(|e| e);
        self.items.push(CheckItem {
            name,
            passed,
            detail,
        });
        passed
    }
}

/// Runs every check on the component in `bytes`, named `name`.
pub fn run(
    runtime: &PolicyRuntime,
    bytes: &[u8],
    name: &str,
    options: &CheckOptions,
) -> CheckReport {
    let mut report = CheckReport {
        plugin: name.to_owned(),
        info: None,
        items: Vec::new(),
    };
    let info = match ComponentInfo::read(bytes) {
        Ok(info) => info,
        Err(e) => {
            report.push("component", Err(e.to_string()));
            return report;
        }
    };
    report.push(
        "component",
        Ok(format!("valid WebAssembly component, {} bytes", info.size)),
    );
    report.info = Some(info.clone());
    let world = info.expect_policy().map(|()| {
        format!(
            "{}@{}; imports: {}",
            info.world.as_deref().unwrap_or("?"),
            info.version.as_deref().unwrap_or("?"),
            if info.imports.is_empty() {
                "none".to_owned()
            } else {
                format!("{} (linked, granting nothing)", info.imports.join(", "))
            }
        )
    });
    if !report.push("world", world.map_err(|e| e.to_string())) {
        return report;
    }
    let start = Instant::now();
    let loaded = runtime.load(bytes, name).and_then(|c| {
        let instance = c.instantiate()?;
        Ok((c, instance))
    });
    let (component, mut plugin) = match loaded {
        Ok(ok) => ok,
        Err(e) => {
            report.push("loads", Err(e.to_string()));
            return report;
        }
    };
    report.push(
        "loads",
        Ok(format!(
            "compiled or loaded from the cache and instantiated in {:.0} ms",
            start.elapsed().as_secs_f64() * 1e3
        )),
    );

    let instances: Vec<Instance> = (0..options.instances)
        .filter_map(|seed| {
            let n = usize::try_from(seed).unwrap_or(0);
            scenario(2 + n % 15, 1 + n % 6, seed).ok()
        })
        .collect();
    let answers = answers(&mut plugin, &instances);
    let answered = answers.is_ok();
    report.push("answers", answers);
    if answered {
        report.push("determinism", determinism(&component, &instances));
    } else {
        report.push(
            "determinism",
            Err("not run: the plugin does not answer valid instances".to_owned()),
        );
    }
    report.push("speed", speed(&component, options.max_score_ms));
    report.push("hostile inputs", hostile_inputs(&component));
    report
}

fn scenario(servers: usize, tasks: usize, seed: u64) -> edgehost_placement::Result<Instance> {
    Scenario::new(ScenarioConfig {
        servers,
        tasks,
        ..ScenarioConfig::default()
    })
    .generate(seed)
}

/// Deterministic plans (splitmix64), so every run checks the same ones.
fn plans(instance: &Instance, seed: u64, count: usize) -> Vec<Plan> {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let n = instance.servers.len().max(1) as u64;
    (0..count)
        .map(|_| {
            Plan::new(
                (0..instance.agents.len())
                    .map(|_| usize::try_from(next() % n).unwrap_or(0))
                    .collect(),
            )
        })
        .collect()
}

fn moved_users(instance: &Instance) -> MigrationContext {
    let n = instance.servers.len().max(1);
    MigrationContext::new(
        instance
            .tasks
            .iter()
            .map(|t| (t.user_server + n / 2 + 1) % n)
            .collect(),
    )
}

/// Every output of every function on one instance, as raw bits.
fn outputs(plugin: &mut PolicyInstance, instance: &Instance, seed: u64) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    out.extend(plugin.score(instance)?.iter().map(|v| v.to_bits()));
    let batch = plans(instance, seed, 8);
    out.extend(
        plugin
            .objectives(instance, &batch)?
            .iter()
            .map(|v| v.to_bits()),
    );
    for plan in batch.iter().take(2) {
        let r = plugin.plan_cost(instance, plan)?;
        out.extend(
            [
                r.objective.total,
                r.latency.total,
                r.cost.total,
                r.objective.deployment_s,
            ]
            .iter()
            .map(|v| v.to_bits()),
        );
        for (l, c) in &r.tasks {
            out.extend([l.total.to_bits(), c.total.to_bits()]);
        }
    }
    if let Some(before) = batch.first() {
        let after = plans(instance, seed ^ 0x5555, 5);
        out.extend(
            plugin
                .migration_fitness(instance, before, &moved_users(instance), &after)?
                .iter()
                .map(|v| v.to_bits()),
        );
    }
    Ok(out)
}

fn answers(
    plugin: &mut PolicyInstance,
    instances: &[Instance],
) -> std::result::Result<String, String> {
    let mut calls = 0;
    for (seed, instance) in instances.iter().enumerate() {
        outputs(plugin, instance, seed as u64).map_err(|e| {
            format!(
                "on seeded instance {seed} ({} agents x {} servers): {e}",
                instance.agents.len(),
                instance.servers.len()
            )
        })?;
        calls += 5;
    }
    Ok(format!(
        "{calls} calls on {} seeded instances (up to {} agents x {} servers): right lengths, finite, not negative where required",
        instances.len(),
        instances.iter().map(|i| i.agents.len()).max().unwrap_or(0),
        instances.iter().map(|i| i.servers.len()).max().unwrap_or(0),
    ))
}

fn determinism(
    component: &PolicyComponent,
    instances: &[Instance],
) -> std::result::Result<String, String> {
    let run = || component.instantiate().map_err(|e| e.to_string());
    let mut warm = run()?;
    for (seed, instance) in instances.iter().enumerate() {
        let seed = seed as u64;
        let first = outputs(&mut warm, instance, seed).map_err(|e| e.to_string())?;
        let again = outputs(&mut warm, instance, seed).map_err(|e| e.to_string())?;
        let fresh = outputs(&mut run()?, instance, seed).map_err(|e| e.to_string())?;
        if first != again {
            return Err(format!(
                "seeded instance {seed}: a second call in the same instance answered differently"
            ));
        }
        if first != fresh {
            return Err(format!(
                "seeded instance {seed}: a fresh instance answered differently"
            ));
        }
    }
    Ok(format!(
        "{} instances, each three times (same instance, fresh instance): identical to the bit",
        instances.len()
    ))
}

fn speed(component: &PolicyComponent, budget_ms: f64) -> std::result::Result<String, String> {
    let instance = Scenario::new(ScenarioConfig {
        servers: 100,
        tasks: 0,
        agents: Some(1000),
        max_agents_per_server: 20,
        capacity_scale: 2.0,
        warm_fraction: 0.5,
    })
    .generate(1)
    .map_err(|e| format!("could not build the test instance: {e}"))?;
    let mut plugin = component.instantiate().map_err(|e| e.to_string())?;
    let mut times = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        plugin
            .score(&instance)
            .map_err(|e| format!("scoring 1,000 x 100: {e}"))?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let detail = format!(
        "scoring 1,000 agents x 100 servers: median {median:.1} ms of 5 (budget {budget_ms} ms)"
    );
    if median <= budget_ms {
        Ok(detail)
    } else {
        Err(detail)
    }
}

/// A hostile input and what to send with it.
struct Case {
    name: &'static str,
    instance: Instance,
    /// A plan to send instead of a well-formed one.
    plan: Option<Plan>,
}

fn hostile_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let Ok(base) = scenario(4, 2, 99) else {
        return cases;
    };
    let with = |name, f: &dyn Fn(&mut Instance)| {
        let mut instance = base.clone();
        f(&mut instance);
        Case {
            name,
            instance,
            plan: None,
        }
    };
    cases.push(with("no agents", &|i| {
        i.agents.clear();
        for t in &mut i.tasks {
            t.agents.clear();
        }
    }));
    cases.push(with("no servers", &|i| {
        i.servers.clear();
        if let Ok(t) = Topology::from_measurements(&[], &[], &[]) {
            i.topology = t;
        }
    }));
    cases.push(with("dependency out of range", &|i| {
        if let Some(a) = i.agents.first_mut() {
            a.depends_on.push(Dependency {
                agent: 1_000_000,
                volume_mb: 1.0,
            });
        }
    }));
    cases.push(with("origin out of range", &|i| {
        if let Some(a) = i.agents.first_mut() {
            a.origin = Some(u32::MAX as usize);
        }
    }));
    cases.push(with("user server out of range", &|i| {
        if let Some(t) = i.tasks.first_mut() {
            t.user_server = 77;
        }
    }));
    cases.push(with("topology of the wrong size", &|i| {
        if let Ok(t) = Topology::from_measurements(
            &[vec![0.0, 0.1], vec![0.1, 0.0]],
            &[vec![10.0, 10.0], vec![10.0, 10.0]],
            &[vec![0, 1], vec![1, 0]],
        ) {
            i.topology = t;
        }
    }));
    cases.push(with("NaN and negative numbers", &|i| {
        if let Some(a) = i.agents.first_mut() {
            a.demand.memory_gb = f64::NAN;
            a.compute_gcyc = -5.0;
        }
        if let Some(s) = i.servers.first_mut() {
            s.eta_mbps = f64::INFINITY;
        }
    }));
    cases.push(with("a 1 MiB agent name", &|i| {
        if let Some(a) = i.agents.first_mut() {
            a.name = "x".repeat(1 << 20);
        }
    }));
    let mut bad_plan = with("plan index out of range", &|_| {});
    bad_plan.plan = Some(Plan::new(vec![9_999; base.agents.len()]));
    cases.push(bad_plan);
    let mut short_plan = with("plan of the wrong length", &|_| {});
    short_plan.plan = Some(Plan::new(vec![0]));
    cases.push(short_plan);
    if let Ok(instance) = Scenario::new(ScenarioConfig {
        servers: 200,
        tasks: 0,
        agents: Some(5000),
        max_agents_per_server: 40,
        capacity_scale: 2.0,
        warm_fraction: 0.5,
    })
    .generate(3)
    {
        cases.push(Case {
            name: "5,000 agents x 200 servers",
            instance,
            plan: None,
        });
    }
    cases
}

/// Whether a failure is an acceptable answer to a hostile input: a
/// refusal or a checked-out bad answer is, a trap or broken limit is not.
fn tolerable(e: &Error) -> bool {
    match e {
        Error::Plugin { fault, .. } => {
            !fault.poisons() && !matches!(fault, PluginFault::Instantiate(_))
        }
        _ => false,
    }
}

fn hostile_inputs(component: &PolicyComponent) -> std::result::Result<String, String> {
    let cases = hostile_cases();
    let mut refused = 0;
    let mut answered = 0;
    for case in &cases {
        // A fresh instance per case: one case's trap must not hide the next.
        let mut plugin = component
            .instantiate()
            .map_err(|e| format!("{}: {e}", case.name))?;
        let plan = case
            .plan
            .clone()
            .unwrap_or_else(|| Plan::new(vec![0; case.instance.agents.len()]));
        let context =
            MigrationContext::new(case.instance.tasks.iter().map(|t| t.user_server).collect());
        let results = [
            plugin.score(&case.instance).map(|_| ()),
            plugin
                .objectives(&case.instance, std::slice::from_ref(&plan))
                .map(|_| ()),
            plugin.plan_cost(&case.instance, &plan).map(|_| ()),
            plugin
                .migration_fitness(&case.instance, &plan, &context, std::slice::from_ref(&plan))
                .map(|_| ()),
        ];
        for result in results {
            match result {
                Ok(()) => answered += 1,
                Err(e) if tolerable(&e) => refused += 1,
                Err(e) => return Err(format!("{}: {e}", case.name)),
            }
        }
    }
    Ok(format!(
        "{} inputs (empty, inconsistent, huge), 4 calls each: {answered} answered, {refused} refused, no trap",
        cases.len()
    ))
}
