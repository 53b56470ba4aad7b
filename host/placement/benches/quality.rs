//! Decision quality: ALP against the exact optimum on small instances, and
//! ALP against the baselines on the default sweeps. Prints tables.
//!
//! `cargo bench -p edgehost-placement --bench quality`

use std::time::Instant;

use edgehost_placement::cost::ead_objective;
use edgehost_placement::{
    Alp, AlpParams, LocalSearch, Optimal, Policy, Scenario, ScenarioConfig, baseline,
};

const INSTANCES: u64 = 120;

fn gap_table(label: &str, tasks: usize, params: AlpParams) {
    let policy = Policy::native();
    let mut gaps = Vec::new();
    let mut optimal_hits = 0;
    let mut alp_ms = 0.0;
    let mut opt_ms = 0.0;
    let mut skipped = 0;
    for seed in 1..=INSTANCES {
        let inst = Scenario::new(ScenarioConfig {
            tasks,
            ..ScenarioConfig::default()
        })
        .generate(seed)
        .expect("scenario");
        let t = Instant::now();
        let exact = match Optimal::default().solve(&inst) {
            Ok(o) => o,
            Err(e) => {
                eprintln!("seed {seed}: optimal skipped: {e}");
                skipped += 1;
                continue;
            }
        };
        opt_ms += t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let alp = Alp::new(params).place(&inst, &policy, seed).expect("alp");
        alp_ms += t.elapsed().as_secs_f64() * 1e3;
        let gap = (alp.objective - exact.objective) / exact.objective;
        if gap <= 1e-9 {
            optimal_hits += 1;
        }
        gaps.push(gap.max(0.0));
    }
    let n = gaps.len() as f64;
    let mean = gaps.iter().sum::<f64>() / n;
    let worst = gaps.iter().copied().fold(0.0, f64::max);
    println!(
        "| {label} | {tasks} | {} | {:.3}% | {:.3}% | {}/{} | {:.1} | {:.1} | {skipped} |",
        gaps.len(),
        mean * 100.0,
        worst * 100.0,
        optimal_hits,
        gaps.len(),
        alp_ms / n,
        opt_ms / n,
    );
}

fn sweep(label: &str, points: &[(usize, usize)], repeats: u64) {
    let policy = Policy::native();
    println!("\n{label}: mean EAD objective (s) over {repeats} seeds\n");
    println!(
        "| servers | tasks | antllm | colony alone | local-search | greedy | polling | random | ALP best at point | ALP vs local-search |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|:---:|---:|");
    let colony = Alp::new(AlpParams {
        polish: false,
        ..AlpParams::default()
    });
    for &(servers, tasks) in points {
        let mut sums = [0.0f64; 6];
        let mut counts = [0usize; 6];
        for seed in 1..=repeats {
            let inst = Scenario::new(ScenarioConfig {
                servers,
                tasks,
                ..ScenarioConfig::default()
            })
            .generate(seed)
            .expect("scenario");
            let plans = [
                Alp::default().place(&inst, &policy, seed).map(|o| o.plan),
                colony.place(&inst, &policy, seed).map(|o| o.plan),
                LocalSearch::default().place(&inst),
                baseline::greedy(&inst),
                baseline::polling(&inst),
                baseline::random(&inst, seed),
            ];
            for (i, p) in plans.iter().enumerate() {
                if let Ok(p) = p {
                    sums[i] += ead_objective(&inst, p).total;
                    counts[i] += 1;
                }
            }
        }
        let mean: Vec<f64> = (0..6).map(|i| sums[i] / counts[i].max(1) as f64).collect();
        let wins = (2..6).all(|i| counts[i] == 0 || mean[0] < mean[i]);
        println!(
            "| {servers} | {tasks} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {:+.2}% |",
            mean[0],
            mean[1],
            mean[2],
            mean[3],
            mean[4],
            mean[5],
            if wins { "yes" } else { "NO" },
            (mean[0] - mean[2]) / mean[2] * 100.0
        );
    }
}

fn main() {
    println!("ALP gap to the optimum, 4 servers (the paper's sites), seeds 1..={INSTANCES}\n");
    println!(
        "| variant | tasks | instances | mean gap | worst gap | optimal | ALP ms | optimal ms | skipped |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let plain = AlpParams {
        dependency_affinity: false,
        ..AlpParams::default()
    };
    for tasks in [2, 3] {
        gap_table("ALP defaults", tasks, AlpParams::default());
        gap_table("ALP without dependency affinity", tasks, plain);
    }
    let servers: Vec<(usize, usize)> = (2..=8).map(|s| (s, 2)).collect();
    sweep("Server sweep", &servers, 10);
    let tasks: Vec<(usize, usize)> = (1..=5).map(|t| (4, t)).collect();
    sweep("Task sweep", &tasks, 10);
}
