//! Decision speed: ALP with default parameters (local-search finish
//! included; the colony's own best is shown beside it) on large instances, the
//! Lagrangian lower bound and local search beside it. Prints a table of
//! wall-clock times (median of several runs).
//!
//! `cargo bench -p edgehost-placement --bench speed`

use std::time::Instant;

use edgehost_placement::bound::lagrangian;
use edgehost_placement::cost::ead_objective;
use edgehost_placement::{Alp, LocalSearch, Optimal, Policy, Scenario, ScenarioConfig, baseline};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // Servers big enough to hold the agents: the paper's 2-core, 2 GB,
    // 10-agent machines cannot take 200 agents on 4 servers.
    let cases = [
        ("200 agents x 4 servers", 200, 4, 25.0, 60, 9),
        ("1,000 agents x 100 servers", 1000, 100, 2.0, 20, 5),
        ("10,000 agents x 1,000 servers", 10_000, 1000, 2.0, 20, 3),
    ];
    println!(
        "| instance | ALP median ms | ALP min ms | runs | ALP objective | colony alone | bound ms | bound | ALP gap | colony gap | local search ms | local search objective | greedy ms |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (label, agents, servers, scale, max_agents, runs) in cases {
        let inst = Scenario::new(ScenarioConfig {
            servers,
            tasks: 0,
            agents: Some(agents),
            max_agents_per_server: max_agents,
            capacity_scale: scale,
            warm_fraction: 0.5,
        })
        .generate(42)
        .expect("scenario");
        let policy = Policy::native();
        let alp = Alp::default();
        let mut times = Vec::new();
        let mut objective = 0.0;
        let mut colony = 0.0;
        for run in 0..runs {
            let t = Instant::now();
            let out = alp.place(&inst, &policy, run).expect("alp");
            times.push(t.elapsed().as_secs_f64() * 1e3);
            objective = out.objective;
            // The colony's own best, before the local-search finish.
            colony = out.objective + out.polish_gain;
        }
        let min = times.iter().copied().fold(f64::INFINITY, f64::min);
        let t = Instant::now();
        let bound = lagrangian(&inst, Some(objective), 300).expect("bound");
        let bound_ms = t.elapsed().as_secs_f64() * 1e3;
        let (ls_ms, ls_objective) = if agents <= 1000 {
            let t = Instant::now();
            let plan = LocalSearch::default().place(&inst).expect("local search");
            (
                format!("{:.1}", t.elapsed().as_secs_f64() * 1e3),
                format!("{:.1}", ead_objective(&inst, &plan).total),
            )
        } else {
            ("-".into(), "-".into())
        };
        let t = Instant::now();
        let _ = baseline::greedy(&inst);
        let greedy_ms = t.elapsed().as_secs_f64() * 1e3;
        println!(
            "| {label} | {:.1} | {min:.1} | {runs} | {objective:.1} | {colony:.1} | {bound_ms:.1} | {bound:.1} | {:.2}% | {:.2}% | {ls_ms} | {ls_objective} | {greedy_ms:.2} |",
            median(times),
            (objective - bound) / objective * 100.0,
            (colony - bound) / colony * 100.0
        );
    }

    // The exact solver on the default setting with 2 and 3 tasks.
    println!("\n| exact solver | instances | mean ms | max ms | max nodes |");
    println!("|---|---:|---:|---:|---:|");
    for tasks in [2, 3] {
        let mut times = Vec::new();
        let mut nodes = 0;
        for seed in 1..=20 {
            let inst = Scenario::new(ScenarioConfig {
                tasks,
                ..ScenarioConfig::default()
            })
            .generate(seed)
            .expect("scenario");
            let t = Instant::now();
            if let Ok(o) = Optimal::default().solve(&inst) {
                times.push(t.elapsed().as_secs_f64() * 1e3);
                nodes = nodes.max(o.nodes);
            }
        }
        let n = times.len();
        let mean = times.iter().sum::<f64>() / n.max(1) as f64;
        let max = times.iter().copied().fold(0.0, f64::max);
        println!("| 4 servers, {tasks} tasks | {n} | {mean:.1} | {max:.1} | {nodes} |");
    }
}
