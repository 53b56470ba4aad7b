//! Policy plugins against the native policy: the built-in plugin gives the
//! native numbers on many seeded instances, a different plugin changes
//! decisions, every hostile behaviour is caught, named and replaced by the
//! native policy for that decision, and swapping the policy of a running
//! host is atomic.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use edgehost_placement::cost::PlanReport;
use edgehost_placement::cost_model::{CostModel, NativeCostModel};
use edgehost_placement::heuristic::{Heuristic, NativeHeuristic};
use edgehost_placement::{
    Alm, Alp, Instance, MigrationContext, Plan, Policy, Scenario, ScenarioConfig,
};
use edgehost_runtime::{
    Error, Fault, PluginFault, PolicyComponent, PolicyLimits, PolicyRuntime, PolicyRuntimeBuilder,
    PolicySlot, plugin_policy,
};
use edgehost_tests::{
    BUILTIN_POLICY, HOSTILE_POLICY, LATENCY_FIRST_POLICY, MEMORY_AGENT, PYTHON_BUILTIN_POLICY,
    PYTHON_TEMPLATE_POLICY, TEMPLATE_POLICY,
};

/// A runtime whose cache is shared by the tests of this binary.
fn runtime_with(limits: PolicyLimits) -> PolicyRuntime {
    PolicyRuntimeBuilder::new(Path::new(env!("CARGO_TARGET_TMPDIR")).join("policy-cache"))
        .limits(limits)
        .build()
        .expect("policy runtime starts")
}

fn runtime() -> PolicyRuntime {
    runtime_with(PolicyLimits::default())
}

/// A small memory cap and a short deadline, so hostile plugins are stopped
/// quickly. The deadline leaves the memory bomb room to reach the cap on a
/// loaded machine (other tests compile 18 MB Python components beside it).
fn strict() -> PolicyRuntime {
    runtime_with(PolicyLimits {
        memory_mib: 64,
        call_timeout: Duration::from_millis(1000),
        ..PolicyLimits::default()
    })
}

fn load(rt: &PolicyRuntime, path: &str) -> PolicyComponent {
    rt.load_file(Path::new(path))
        .unwrap_or_else(|e| panic!("loading {path}: {e}"))
}

fn scenario(servers: usize, tasks: usize, seed: u64) -> Instance {
    Scenario::new(ScenarioConfig {
        servers,
        tasks,
        ..ScenarioConfig::default()
    })
    .generate(seed)
    .expect("scenario")
}

/// A small deterministic generator for plans (splitmix64).
struct Plans(u64);

impl Plans {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn plan(&mut self, instance: &Instance) -> Plan {
        let n = instance.servers.len() as u64;
        Plan::new(
            (0..instance.agents.len())
                .map(|_| (self.next() % n) as usize)
                .collect(),
        )
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

fn assert_close(what: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(close(*g, *w), "{what}[{i}]: plugin {g}, native {w}");
    }
}

fn report_numbers(r: &PlanReport) -> Vec<f64> {
    let mut v = vec![
        r.objective.deployment_s,
        r.objective.compute_s,
        r.objective.dependency_s,
        r.objective.total,
    ];
    let mut push = |l: &edgehost_placement::cost::Latency,
                    c: &edgehost_placement::cost::ResourceCost| {
        v.extend([
            l.tra, l.mig, l.ini, l.pro, l.total, c.cpu, c.storage, c.comm, c.total,
        ]);
    };
    push(&r.latency, &r.cost);
    for (l, c) in &r.tasks {
        push(l, c);
    }
    v
}

/// Holds every answer of the plugin at `path` against the native policy's
/// on `seeds` seeded instances of 2 to 12 servers.
fn agrees_with_native(path: &str, seeds: u64) {
    let rt = runtime();
    let builtin = load(&rt, path);
    let mut plugin = builtin.instantiate().expect("an instance");
    let mut checked = 0;
    for seed in 0..seeds {
        let servers = 2 + (seed as usize % 11);
        let tasks = 1 + (seed as usize % 5);
        let inst = scenario(servers, tasks, seed);
        let mut rng = Plans(seed);

        let native = NativeHeuristic::default()
            .matrix(&inst)
            .expect("native scores");
        let scores = plugin.score(&inst).expect("plugin scores");
        let want: Vec<f64> = (0..native.agents())
            .flat_map(|a| native.row(a).to_vec())
            .collect();
        assert_close(&format!("seed {seed} scores"), &scores, &want);

        let plans: Vec<Plan> = (0..8).map(|_| rng.plan(&inst)).collect();
        assert_close(
            &format!("seed {seed} objectives"),
            &plugin.objectives(&inst, &plans).expect("plugin objectives"),
            &NativeCostModel
                .objectives(&inst, &plans)
                .expect("native objectives"),
        );
        for plan in &plans[..3] {
            assert_close(
                &format!("seed {seed} plan cost"),
                &report_numbers(&plugin.plan_cost(&inst, plan).expect("plugin plan cost")),
                &report_numbers(
                    &NativeCostModel
                        .report(&inst, plan)
                        .expect("native plan cost"),
                ),
            );
        }

        // Users move: every task's user goes to another server.
        let before = plans[0].clone();
        let users = inst
            .tasks
            .iter()
            .map(|t| (t.user_server + 1 + (rng.next() as usize % servers.max(2))) % servers)
            .collect();
        let context = MigrationContext::new(users);
        let after: Vec<Plan> = (0..6).map(|_| rng.plan(&inst)).collect();
        assert_close(
            &format!("seed {seed} migration fitness"),
            &plugin
                .migration_fitness(&inst, &before, &context, &after)
                .expect("migration fitness"),
            &NativeCostModel
                .migration_gains(&inst, &before, &context, &after)
                .expect("migration fitness"),
        );
        checked += 1;
    }
    assert_eq!(checked, seeds);
}

#[test]
fn builtin_plugin_agrees_with_native_on_seeded_instances() {
    agrees_with_native(BUILTIN_POLICY, 60);
}

/// The Python kit's reference policy is a port of the native one: the same
/// numbers, to the last bits the tolerance allows.
#[test]
fn python_reference_policy_agrees_with_native_on_seeded_instances() {
    agrees_with_native(PYTHON_BUILTIN_POLICY, 60);
}

/// Runs ALP and ALM with the plugin at `path` as heuristic and cost model,
/// and with the native policy: the plans and deployments must be the same.
fn decides_as_native(path: &str) {
    let rt = runtime();
    let builtin = load(&rt, path);
    let plugged = plugin_policy(Some(&builtin), Some(&builtin));
    let native = Policy::native();
    for seed in 0..8u64 {
        let inst = scenario(4 + seed as usize % 3, 2 + seed as usize % 2, seed);
        let a = Alp::default()
            .place(&inst, &native, seed)
            .expect("native ALP");
        let b = Alp::default()
            .place(&inst, &plugged, seed)
            .expect("plugin ALP");
        assert!(b.fallbacks.is_empty(), "{:?}", b.fallbacks);
        assert_eq!(a.plan, b.plan, "seed {seed}");
        assert!(close(a.objective, b.objective));

        let context = MigrationContext::new(
            inst.tasks
                .iter()
                .map(|t| (t.user_server + 2) % inst.servers.len())
                .collect(),
        );
        let m1 = Alm::default()
            .plan(&inst, &a.plan, &context, &native, seed)
            .expect("ALM plans");
        let m2 = Alm::default()
            .plan(&inst, &a.plan, &context, &plugged, seed)
            .expect("ALM plans");
        assert!(m2.fallbacks.is_empty(), "{:?}", m2.fallbacks);
        assert_eq!(m1.deployment, m2.deployment, "seed {seed}");
    }
}

#[test]
fn builtin_plugin_makes_the_same_decisions_as_native() {
    decides_as_native(BUILTIN_POLICY);
}

#[test]
fn python_reference_policy_makes_the_same_decisions_as_native() {
    decides_as_native(PYTHON_BUILTIN_POLICY);
}

#[test]
fn a_different_plugin_changes_decisions() {
    let rt = runtime();
    let latency = load(&rt, LATENCY_FIRST_POLICY);
    let plugged = plugin_policy(Some(&latency), Some(&latency));
    let native = Policy::native();
    let mut differing = 0;
    for seed in 0..6u64 {
        let inst = scenario(6, 3, seed);
        let a = Alp::default().place(&inst, &native, seed).unwrap();
        let b = Alp::default().place(&inst, &plugged, seed).unwrap();
        assert!(b.fallbacks.is_empty(), "{:?}", b.fallbacks);
        if a.plan != b.plan {
            differing += 1;
        }
    }
    assert!(differing >= 3, "only {differing} of 6 decisions changed");

    // So do the templates a plugin author starts from, in Rust and Python.
    for path in [TEMPLATE_POLICY, PYTHON_TEMPLATE_POLICY] {
        let template = load(&rt, path);
        let plugged = plugin_policy(Some(&template), Some(&template));
        let changed = (0..6u64).any(|seed| {
            let inst = scenario(6, 3, seed);
            let theirs = Alp::default().place(&inst, &plugged, seed).unwrap();
            assert!(
                theirs.fallbacks.is_empty(),
                "{path}: {:?}",
                theirs.fallbacks
            );
            Alp::default().place(&inst, &native, seed).unwrap().plan != theirs.plan
        });
        assert!(changed, "{path} changed no decision");
    }
}

/// A Python policy refuses what it cannot do in time, and inputs the
/// engine's rules reject, as policy errors with the kit's message: never a
/// trap, and the instance stays usable.
#[test]
fn python_policies_refuse_with_a_message_and_stay_usable() {
    let rt = runtime();
    let template = load(&rt, PYTHON_TEMPLATE_POLICY);
    let mut plugin = template.instantiate().unwrap();

    let huge = Scenario::new(ScenarioConfig {
        servers: 300,
        tasks: 0,
        agents: Some(1000),
        max_agents_per_server: 40,
        capacity_scale: 2.0,
        warm_fraction: 0.5,
    })
    .generate(5)
    .unwrap();
    let e = plugin.score(&huge).unwrap_err().to_string();
    assert!(
        e.contains("unsupported: 1000 agents x 300 servers is more than this policy scores")
            && e.contains("max_pairs = 250000"),
        "{e}"
    );

    let mut broken = scenario(4, 2, 1);
    broken.agents[0]
        .depends_on
        .push(edgehost_placement::model::Dependency {
            agent: 99,
            volume_mb: 1.0,
        });
    let name = broken.agents[0].name.clone();
    let e = plugin.score(&broken).unwrap_err().to_string();
    assert!(
        e.contains(&format!("invalid input: agent 0 ({name}) is invalid")),
        "{e}"
    );

    let fine = scenario(4, 2, 1);
    let short = Plan::new(vec![0]);
    let e = plugin
        .objectives(&fine, std::slice::from_ref(&short))
        .unwrap_err()
        .to_string();
    assert!(e.contains("plan assigns 1 agents, instance has"), "{e}");
    assert_eq!(
        plugin.score(&fine).unwrap().len(),
        fine.agents.len() * fine.servers.len()
    );
}

/// An instance whose first task is named `behaviour`, which is how the
/// hostile plugin is told what to do.
fn hostile_instance(behaviour: &str) -> Instance {
    let mut inst = scenario(4, 2, 7);
    inst.tasks[0].name = behaviour.to_owned();
    inst
}

#[test]
fn every_hostile_behaviour_is_caught_named_and_replaced() {
    let rt = strict();
    let hostile = load(&rt, HOSTILE_POLICY);
    let cases: &[(&str, &str)] = &[
        ("trap", "trapped"),
        ("loop", "ran past its 1000 ms deadline"),
        ("oom", "above its 64 MiB cap"),
        ("recurse", "exhausted its stack"),
        ("short", "expected"),
        ("nan", "NaN"),
        ("inf", "inf"),
        ("negative", "may not be negative"),
        (
            "refuse",
            "refused the call: unsupported: hostile policy refuses",
        ),
    ];
    for &(behaviour, fault) in cases {
        let inst = hostile_instance(behaviour);
        let policy = plugin_policy(Some(&hostile), Some(&hostile));
        let mut notes = Vec::new();

        let m = policy.heuristic_matrix(&inst, &mut notes).unwrap();
        assert_eq!(m, NativeHeuristic::default().matrix(&inst).unwrap());
        let plan = Plan::new(vec![0; inst.agents.len()]);
        let v = policy.objective(&inst, &plan, &mut notes).unwrap();
        assert_eq!(
            v,
            NativeCostModel
                .objectives(&inst, std::slice::from_ref(&plan))
                .unwrap()[0]
        );
        assert_eq!(notes.len(), 2, "{behaviour}: {notes:?}");
        for note in &notes {
            assert!(
                note.contains("hostile_policy") && note.contains(fault) && note.contains("native"),
                "{behaviour}: {note}"
            );
        }

        // A whole decision completes, on the native policy, and says so:
        // once for the heuristic and once for the cost model, which is not
        // asked again in the same decision.
        let native = Alp::default().place(&inst, &Policy::native(), 3).unwrap();
        let outcome = Alp::default().place(&inst, &policy, 3).unwrap();
        assert_eq!(outcome.plan, native.plan, "{behaviour}");
        assert_eq!(
            outcome.fallbacks.len(),
            2,
            "{behaviour}: {:?}",
            outcome.fallbacks
        );
    }
}

#[test]
fn hostile_faults_are_precise_errors_and_traps_poison_only_that_instance() {
    let rt = strict();
    let hostile = load(&rt, HOSTILE_POLICY);
    let mut plugin = hostile.instantiate().unwrap();

    let inst = hostile_instance("short");
    let cells = inst.agents.len() * inst.servers.len();
    let err = plugin.score(&inst).unwrap_err();
    let Error::Plugin {
        plugin: name,
        call,
        fault,
    } = &err
    else {
        panic!("{err}");
    };
    assert_eq!((name.as_str(), *call), ("hostile_policy", "score"));
    assert_eq!(
        *fault,
        PluginFault::WrongLength {
            what: "scores",
            expected: cells,
            got: cells - 1
        }
    );
    // A bad answer does not poison: the same instance answers honestly next.
    assert!(plugin.score(&hostile_instance("honest")).is_ok());

    let err = plugin.score(&hostile_instance("nan")).unwrap_err();
    assert!(err.to_string().contains("score 0"), "{err}");
    let err = plugin
        .plan_cost(
            &hostile_instance("inf"),
            &Plan::new(vec![0; inst.agents.len()]),
        )
        .unwrap_err();
    assert!(err.to_string().contains("latency.total"), "{err}");

    let err = plugin.score(&hostile_instance("loop")).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Plugin {
                fault: PluginFault::Sandbox(Fault::Deadline { timeout_ms: 1000 }),
                ..
            }
        ),
        "{err}"
    );
    // After a trap the instance is unusable, and says why.
    let err = plugin.score(&hostile_instance("honest")).unwrap_err();
    assert!(
        matches!(&err, Error::Plugin { fault: PluginFault::Sandbox(Fault::Poisoned(why)), .. } if why.contains("deadline")),
        "{err}"
    );
    // A fresh instance of the same component is fine.
    let mut fresh = hostile.instantiate().unwrap();
    assert!(fresh.score(&hostile_instance("honest")).is_ok());

    // Through the engine adapter, the next call after a trap starts a fresh
    // instance by itself.
    let heuristic = hostile.heuristic();
    assert!(heuristic.matrix(&hostile_instance("trap")).is_err());
    assert!(heuristic.matrix(&hostile_instance("honest")).is_ok());

    let err = plugin_fault(&hostile, "oom");
    assert!(
        matches!(err, PluginFault::Sandbox(Fault::MemoryLimit { cap_mib: 64, requested_mib }) if requested_mib > 64),
        "{err}"
    );
}

fn plugin_fault(component: &PolicyComponent, behaviour: &str) -> PluginFault {
    match component
        .instantiate()
        .expect("instantiate")
        .score(&hostile_instance(behaviour))
    {
        Err(Error::Plugin { fault, .. }) => fault,
        other => panic!("{behaviour}: {:?}", other.map(|v| v.len())),
    }
}

#[test]
fn components_of_another_world_are_refused() {
    let rt = runtime();
    let err = rt.load_file(Path::new(MEMORY_AGENT)).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("not an edgehost policy plugin: it is an agent"),
        "{err}"
    );
    let err = rt.load(b"not wasm", "junk").unwrap_err();
    assert!(matches!(err, Error::Malformed(_)), "{err}");
}

/// A cost model that flags when it starts being called and then waits
/// until released, so a test can swap the slot mid-decision.
struct Gate {
    name: &'static str,
    started: Arc<AtomicBool>,
    release: Arc<AtomicBool>,
}

impl CostModel for Gate {
    fn name(&self) -> &str {
        self.name
    }
    fn objectives(
        &self,
        instance: &Instance,
        plans: &[Plan],
    ) -> edgehost_placement::Result<Vec<f64>> {
        self.started.store(true, Ordering::SeqCst);
        while !self.release.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        NativeCostModel.objectives(instance, plans)
    }
    fn report(&self, instance: &Instance, plan: &Plan) -> edgehost_placement::Result<PlanReport> {
        NativeCostModel.report(instance, plan)
    }
    fn migration_gains(
        &self,
        instance: &Instance,
        before: &Plan,
        context: &MigrationContext,
        after: &[Plan],
    ) -> edgehost_placement::Result<Vec<f64>> {
        NativeCostModel.migration_gains(instance, before, context, after)
    }
}

#[test]
fn hot_swap_takes_effect_on_the_next_decision_never_half_way() {
    let rt = runtime();
    let builtin = load(&rt, BUILTIN_POLICY);
    let latency = load(&rt, LATENCY_FIRST_POLICY);
    let inst = scenario(6, 3, 2);
    let expect_builtin = Alp::default()
        .place(&inst, &plugin_policy(Some(&builtin), Some(&builtin)), 5)
        .unwrap();
    let expect_latency = Alp::default()
        .place(&inst, &plugin_policy(Some(&latency), Some(&latency)), 5)
        .unwrap();
    assert_ne!(expect_builtin.plan, expect_latency.plan);

    let started = Arc::new(AtomicBool::new(false));
    let release = Arc::new(AtomicBool::new(false));
    let gated = Policy::new(
        Box::new(builtin.heuristic()),
        Box::new(Gate {
            name: "gated",
            started: started.clone(),
            release: release.clone(),
        }),
    );
    let slot = Arc::new(PolicySlot::new(gated));
    let running = {
        let slot = slot.clone();
        let inst = inst.clone();
        std::thread::spawn(move || {
            slot.decide(|policy, generation| {
                (generation, Alp::default().place(&inst, policy, 5).unwrap())
            })
        })
    };
    // The decision is under way (it has asked for its first objectives):
    // swap now, then let it finish.
    while !started.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let (generation, _old) = slot.swap(plugin_policy(Some(&latency), Some(&latency)));
    assert_eq!(generation, 1);
    release.store(true, Ordering::SeqCst);
    let (ran_with, outcome) = running.join().unwrap();
    // The running decision finished entirely on the policy it started with.
    assert_eq!(ran_with, 0);
    assert_eq!(outcome.plan, expect_builtin.plan);
    assert!(outcome.fallbacks.is_empty());
    // The next decision uses the new one.
    let (next_gen, next) =
        slot.decide(|policy, g| (g, Alp::default().place(&inst, policy, 5).unwrap()));
    assert_eq!(next_gen, 1);
    assert_eq!(next.plan, expect_latency.plan);
}

#[test]
fn hot_swap_under_load_every_decision_sees_one_policy() {
    let rt = runtime();
    let builtin = load(&rt, BUILTIN_POLICY);
    let latency = load(&rt, LATENCY_FIRST_POLICY);
    let inst = scenario(5, 2, 4);
    let outcomes = [
        Alp::default()
            .place(&inst, &plugin_policy(Some(&builtin), Some(&builtin)), 1)
            .unwrap(),
        Alp::default()
            .place(&inst, &plugin_policy(Some(&latency), Some(&latency)), 1)
            .unwrap(),
    ];
    let slot = Arc::new(PolicySlot::new(plugin_policy(
        Some(&builtin),
        Some(&builtin),
    )));
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (slot, stop) = (slot.clone(), stop.clone());
        let (builtin, latency) = (builtin.clone(), latency.clone());
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let next = if swaps.is_multiple_of(2) {
                    &latency
                } else {
                    &builtin
                };
                slot.swap(plugin_policy(Some(next), Some(next)));
                swaps += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            swaps
        })
    };
    let mut seen = [0usize; 2];
    for _ in 0..30 {
        let (generation, outcome) =
            slot.decide(|policy, g| (g, Alp::default().place(&inst, policy, 1).unwrap()));
        // Generation 0 and every even one hold the built-in policy.
        let which = (generation % 2) as usize;
        assert_eq!(
            outcome.plan, outcomes[which].plan,
            "generation {generation}"
        );
        assert_eq!(outcome.objective, outcomes[which].objective);
        seen[which] += 1;
    }
    stop.store(true, Ordering::SeqCst);
    let swaps = swapper.join().unwrap();
    assert!(swaps > 0);
    assert_eq!(seen.iter().sum::<usize>(), 30);
}
