//! Properties every algorithm must have, and the cost model checked by hand
//! on the two-agent instance of `scenario::tiny_instance`.

use edgehost_placement::baseline;
use edgehost_placement::constraint::check;
use edgehost_placement::cost::{ead_objective, report};
use edgehost_placement::scenario::tiny_instance;
use edgehost_placement::{
    Alm, Alp, AlpParams, Bounder, Error, Instance, LocalSearch, MigrationContext, Optimal, Plan,
    Policy, Scenario, ScenarioConfig, bound,
};
use proptest::prelude::*;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9 * (1.0 + b.abs())
}

fn instance() -> impl Strategy<Value = Instance> {
    (1usize..6, 1usize..5, any::<u64>(), 2usize..11, 0.5f64..2.0).prop_map(
        |(servers, tasks, seed, max_agents, scale)| {
            Scenario::new(ScenarioConfig {
                servers,
                tasks,
                agents: None,
                max_agents_per_server: max_agents,
                capacity_scale: scale,
                warm_fraction: 0.5,
            })
            .generate(seed)
            .expect("valid configuration")
        },
    )
}

/// A small colony, so that many cases run quickly.
fn small_alp() -> Alp {
    Alp::new(AlpParams {
        ants: 6,
        iterations: 8,
        ..AlpParams::default()
    })
}

/// An algorithm either returns a plan within eq. 11 and the agent limit or
/// says it found none; nothing else.
fn assert_feasible_or_refused(inst: &Instance, name: &str, result: Result<Plan, Error>) {
    match result {
        Ok(plan) => {
            if let Err(e) = check(inst, &plan) {
                panic!("{name} returned an infeasible plan: {e}");
            }
        }
        Err(Error::NoFeasiblePlan(_) | Error::TooLarge { .. } | Error::SearchLimit { .. }) => {}
        Err(e) => panic!("{name} failed unexpectedly: {e}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_plan_is_feasible(inst in instance(), seed in any::<u64>()) {
        let policy = Policy::native();
        assert_feasible_or_refused(&inst, "alp", small_alp().place(&inst, &policy, seed).map(|o| o.plan));
        assert_feasible_or_refused(&inst, "greedy", baseline::greedy(&inst));
        assert_feasible_or_refused(&inst, "polling", baseline::polling(&inst));
        assert_feasible_or_refused(&inst, "random", baseline::random(&inst, seed));
        assert_feasible_or_refused(&inst, "local-search", LocalSearch::default().place(&inst));
        let exact = Optimal { max_agents: 12, node_limit: 2_000_000, ..Optimal::default() };
        assert_feasible_or_refused(&inst, "optimal", exact.solve(&inst).map(|o| o.plan));
    }

    #[test]
    fn alp_is_deterministic_and_never_worse_than_its_best_ant(inst in instance(), seed in any::<u64>()) {
        let policy = Policy::native();
        let alp = small_alp();
        let first = alp.place(&inst, &policy, seed);
        let second = alp.place(&inst, &policy, seed);
        match (first, second) {
            (Ok(a), Ok(b)) => {
                prop_assert_eq!(&a, &b);
                let best_ant = a.iteration_best.iter().copied().fold(f64::INFINITY, f64::min);
                prop_assert!(a.objective <= best_ant);
                prop_assert!(close(a.objective, ead_objective(&inst, &a.plan).total));
            }
            (Err(_), Err(_)) => {}
            (a, b) => prop_assert!(false, "runs disagree: {:?} vs {:?}", a.is_ok(), b.is_ok()),
        }
    }

    #[test]
    fn no_feasible_plan_beats_the_lower_bound(inst in instance(), seed in any::<u64>()) {
        let policy = Policy::native();
        let Ok(alp) = small_alp().place(&inst, &policy, seed) else { return Ok(()); };
        let mut plans = vec![alp.plan.clone()];
        plans.extend(LocalSearch::default().place(&inst).ok());
        plans.extend(baseline::greedy(&inst).ok());
        plans.extend(baseline::random(&inst, seed).ok());
        let lagrangian = bound::lagrangian(&inst, Some(alp.objective), 200).expect("bound");
        // A small search budget, so that debug builds stay quick: past it
        // the bound falls back to the Lagrangian one.
        let bounder = Bounder {
            optimal: Optimal { node_limit: 50_000, ..Optimal::default() },
            ..Bounder::default()
        };
        let seeded = bounder.bound(&inst, Some(&alp.plan)).expect("bound");
        for plan in &plans {
            let v = ead_objective(&inst, plan).total;
            prop_assert!(lagrangian <= v + 1e-9 * v, "lagrangian {} > {}", lagrangian, v);
            prop_assert!(seeded.value <= v + 1e-9 * v, "{:?} > {}", seeded, v);
        }
    }

    #[test]
    fn migrations_stay_feasible_and_pay(inst in instance(), seed in any::<u64>(), user_shift in 0usize..6) {
        let policy = Policy::native();
        let Ok(placed) = small_alp().place(&inst, &policy, seed) else { return Ok(()); };
        let n = inst.servers.len();
        let users = inst.tasks.iter().map(|t| (t.user_server + user_shift) % n).collect();
        let ctx = MigrationContext { hop_threshold: 1, ..MigrationContext::new(users) };
        let m = Alm::default().plan(&inst, &placed.plan, &ctx, &policy, seed).expect("alm runs");
        prop_assert!(check(&inst, &m.deployment).is_ok());
        prop_assert!(m.moves.iter().all(|mv| mv.net_gain_s > 0.0));
        prop_assert!(m.net_gain_s >= 0.0);
    }
}

#[test]
fn alp_matches_the_optimum_on_the_tiny_instance() {
    let inst = tiny_instance();
    let alp = Alp::default()
        .place(&inst, &Policy::native(), 5)
        .expect("placement");
    let exact = Optimal::default().solve(&inst).expect("optimum");
    assert_eq!(alp.plan, exact.plan);
    assert_eq!(exact.plan, Plan::new(vec![0, 0]));
}

/// The tiny instance (see `tiny_instance` for its numbers) priced by hand.
///
/// Shared facts: the servers are 1000 km apart, so H = 1 + floor(1000/800)
/// = 2 hops and RTT = 2 * 1000 * 1.5 / 200000 + 2 * 0.001 = 0.017 s; the
/// link runs at min(20, 30) = 20 Mbit/s. T_init(n) = 0.8 + 0.2 n. Server 0
/// has eta^rem = 20 Mbit/s and C^rem = 4 Gcyc/s over 2 cores; server 1 has
/// eta^rem = 30 Mbit/s, C^rem = 2 * (1 - 0.5) = 1 Gcyc/s on 1 core and
/// already hosts one agent. Both agents' state lives on server 0.
#[test]
fn hand_computed_costs_match() {
    let inst = tiny_instance();
    assert_eq!(inst.topology.hops(0, 1), 2);
    assert!(close(inst.topology.rtt_s(0, 1), 0.017));

    // Plan A: both agents on server 0.
    let a = Plan::new(vec![0, 0]);
    let obj = ead_objective(&inst, &a);
    // No state moves (origin is server 0). Two new agents among two:
    // 2 * T_init(2) = 2 * 1.2 = 2.4 s.
    assert!(close(obj.deployment_s, 2.4));
    // (4 + 6) Gcyc / 4 Gcyc/s = 2.5 s.
    assert!(close(obj.compute_s, 2.5));
    // Co-located: no dependency communication.
    assert!(close(obj.dependency_s, 0.0));
    assert!(close(obj.total, 4.9));

    let r = report(&inst, &a);
    // Prompt: 0.01 s access + 0 relay + 19 bytes * 8 / 20 Mbit/s = 7.6 us.
    // File: 50 MB * 8 / 20 Mbit/s = 20 s.
    let tra = 20.0 + 0.01 + 19e-6 * 8.0 / 20.0;
    assert!(close(r.latency.tra, tra));
    assert!(close(r.latency.mig, 0.0));
    // Each agent starts among 2 on server 0: 1.2 + 1.2.
    assert!(close(r.latency.ini, 2.4));
    // At the free 4 Gcyc/s, two agents on two cores are not crowded:
    // 4/4 + 6/4 = 2.5 s of compute, plus 2 s of LLM time, no hand-off.
    assert!(close(r.latency.pro, 4.5));
    let total = tra + 2.4 + 4.5;
    assert!(close(r.latency.total, total));
    // Eq. 7: total minus the 20 s upload (no memory transfer).
    assert!(close(r.cost.cpu, total - 20.0));
    // Eq. 8: the 50 MB file once (0.05 GB) plus 0.6 + 0.6 GB of memory.
    assert!(close(r.cost.storage, 1.25));
    // Eq. 9: the file and the prompt cross the network.
    assert!(close(r.cost.comm, 50.0 + 19e-6));
    assert!(close(r.cost.total, total - 20.0 + 1.25 + 50.0 + 19e-6));

    // Plan B: the planner on server 1, the worker on server 0.
    let b = Plan::new(vec![1, 0]);
    let obj = ead_objective(&inst, &b);
    // Planner ships 10 MB * 8 / 30 Mbit/s; T_init(1) on server 0 and
    // T_init(1 hosted + 1) on server 1.
    assert!(close(obj.deployment_s, 80.0 / 30.0 + 1.0 + 1.2));
    // 6 / 4 on server 0 plus 4 / 1 on server 1.
    assert!(close(obj.compute_s, 5.5));
    // The worker's 5 MB to the planner: 0.017 + 5 * 8 / 20.
    assert!(close(obj.dependency_s, 2.017));
    assert!(close(obj.total, 80.0 / 30.0 + 2.2 + 5.5 + 2.017));

    let r = report(&inst, &b);
    // Entry on server 1: the prompt also crosses the 0.017 s link; the file
    // uploads at 30 Mbit/s.
    let tra = 50.0 * 8.0 / 30.0 + 0.01 + 0.017 + 19e-6 * 8.0 / 30.0;
    assert!(close(r.latency.tra, tra));
    // The planner migrates: export 0.2 + 10/100, transfer 10 * 8 / 20 = 4,
    // T_init(2) = 1.2 on server 1, load 0.2 + 10/100.
    assert!(close(r.latency.mig, 0.3 + 4.0 + 1.2 + 0.3));
    assert!(close(r.latency.ini, 1.2 + 1.0));
    // Planner: 1 Gcyc/s free, two agents on one core take twice as long:
    // 4 / 1 * 2 = 8 s. Worker: 6 / 4 = 1.5 s. LLM 2 s. Hand-off 2.017 s.
    assert!(close(r.latency.pro, 8.0 + 1.5 + 2.0 + 2.017));
    let total = tra + 5.8 + 2.2 + 13.517;
    assert!(close(r.latency.total, total));
    assert!(close(r.cost.cpu, total - (50.0 * 8.0 / 30.0 + 4.0)));
    // The file is stored on both servers now.
    assert!(close(r.cost.storage, 0.1 + 1.2));
    // File, prompt, the planner's 10 MB state and the 5 MB hand-off.
    assert!(close(r.cost.comm, 50.0 + 19e-6 + 10.0 + 5.0));
}
