//! Decision speed: ALP with default parameters on large instances. Prints a
//! table of wall-clock times (median of several runs).
//!
//! `cargo bench -p edgehost-placement --bench speed`

use std::time::Instant;

use edgehost_placement::{Alp, Optimal, Policy, Scenario, ScenarioConfig, baseline};

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
    ];
    println!("| instance | ALP median ms | ALP min ms | runs | objective | greedy ms |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (label, agents, servers, scale, max_agents, runs) in cases {
        let inst = Scenario::new(ScenarioConfig {
            servers,
            tasks: 0,
            agents: Some(agents),
            max_agents_per_server: max_agents,
            capacity_scale: scale,
        })
        .generate(42)
        .expect("scenario");
        let policy = Policy::native();
        let alp = Alp::default();
        let mut times = Vec::new();
        let mut objective = 0.0;
        for run in 0..runs {
            let t = Instant::now();
            let out = alp.place(&inst, &policy, run).expect("alp");
            times.push(t.elapsed().as_secs_f64() * 1e3);
            objective = out.objective;
        }
        let min = times.iter().copied().fold(f64::INFINITY, f64::min);
        let t = Instant::now();
        let _ = baseline::greedy(&inst);
        let greedy_ms = t.elapsed().as_secs_f64() * 1e3;
        println!(
            "| {label} | {:.1} | {min:.1} | {runs} | {objective:.1} | {greedy_ms:.2} |",
            median(times)
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
