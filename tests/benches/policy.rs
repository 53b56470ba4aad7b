//! Policy plugins: what the Wasm boundary costs a decision.
//!
//! Prints a table: scoring a 1,000 agents x 100 servers heuristic matrix
//! through the built-in plugin (records lowered into the sandbox, the call,
//! the answer lifted and checked) next to the native heuristic, one batch of
//! objectives, and a whole ALP decision on 200 agents x 4 servers with the
//! plugin as heuristic and cost model next to the native one. Then the same
//! for policies written in Python (`plugins/python`): the Python template
//! next to the Rust template, and the Python port of the reference policy
//! next to the built-in plugin.
//!
//! Run with `cargo bench -p edgehost-tests --bench policy`.

use std::path::Path;
use std::time::Instant;

use edgehost_placement::cost_model::{CostModel, NativeCostModel};
use edgehost_placement::heuristic::{Heuristic, NativeHeuristic};
use edgehost_placement::{Alp, Instance, Plan, Policy, Scenario, ScenarioConfig};
use edgehost_runtime::{PolicyRuntimeBuilder, plugin_policy};
use edgehost_tests::{
    BUILTIN_POLICY, PYTHON_BUILTIN_POLICY, PYTHON_TEMPLATE_POLICY, TEMPLATE_POLICY,
};

fn instance(agents: usize, servers: usize, scale: f64, max_agents: usize) -> Instance {
    Scenario::new(ScenarioConfig {
        servers,
        tasks: 0,
        agents: Some(agents),
        max_agents_per_server: max_agents,
        capacity_scale: scale,
        warm_fraction: 0.5,
    })
    .generate(11)
    .expect("scenario")
}

/// Runs `f` `runs` times after one warm-up run; returns sorted milliseconds.
fn time_ms(runs: usize, mut f: impl FnMut()) -> Vec<f64> {
    f();
    let mut v: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v
}

fn pct(v: &[f64], p: f64) -> f64 {
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

fn row(what: &str, v: &[f64], target: &str) {
    println!(
        "| {what} | {:.2} ms | {:.2} ms | {:.2} ms | {} | {target} |",
        pct(v, 0.5),
        pct(v, 0.9),
        v[0],
        v.len()
    );
}

fn main() {
    let cache = tempfile::tempdir().expect("temporary cache directory");
    let rt = PolicyRuntimeBuilder::new(cache.path())
        .build()
        .expect("policy runtime");
    let size = std::fs::metadata(BUILTIN_POLICY).map_or(0, |m| m.len());
    let t = Instant::now();
    let builtin = rt
        .load_file(Path::new(BUILTIN_POLICY))
        .expect("built-in plugin loads");
    let compile_ms = t.elapsed().as_secs_f64() * 1e3;
    println!(
        "built-in plugin: {size} bytes, compiled in {compile_ms:.0} ms (release host, Cranelift)\n"
    );

    let big = instance(1000, 100, 2.0, 20);
    let mut plugin = builtin.instantiate().expect("instance");
    let native = NativeHeuristic::default();
    let plans: Vec<Plan> = (0..20)
        .map(|k| {
            Plan::new(
                (0..big.agents.len())
                    .map(|a| (a * 7 + k * 13) % big.servers.len())
                    .collect(),
            )
        })
        .collect();

    println!("| what | p50 | p90 | min | runs | target |");
    println!("|---|---:|---:|---:|---:|---|");
    let plugin_score = time_ms(30, || {
        plugin.score(&big).expect("plugin scores");
    });
    row(
        "score 1,000 x 100 through the plugin (whole call)",
        &plugin_score,
        "≤ 50 ms",
    );
    let native_score = time_ms(30, || {
        native.matrix(&big).expect("native scores");
    });
    row("score 1,000 x 100, native heuristic", &native_score, "");
    let plugin_obj = time_ms(30, || {
        plugin.objectives(&big, &plans).expect("plugin objectives");
    });
    row(
        "objectives of 20 plans, 1,000 x 100, through the plugin",
        &plugin_obj,
        "",
    );
    let native_obj = time_ms(30, || {
        NativeCostModel
            .objectives(&big, &plans)
            .expect("native objectives");
    });
    row(
        "objectives of 20 plans, 1,000 x 100, native",
        &native_obj,
        "",
    );

    // The placement bench's setting: 10-agent machines cannot take 200
    // agents on 4 servers, so capacity is scaled up.
    let alp_instance = instance(200, 4, 25.0, 60);
    let alp = Alp::default();
    let native_policy = Policy::native();
    let plugged = plugin_policy(Some(&builtin), Some(&builtin));
    let mut objectives = (0.0, 0.0);
    let native_alp = time_ms(9, || {
        objectives.0 = alp
            .place(&alp_instance, &native_policy, 3)
            .expect("native ALP")
            .objective;
    });
    row("ALP 200 agents x 4 servers, native policy", &native_alp, "");
    let plugin_alp = time_ms(9, || {
        let out = alp.place(&alp_instance, &plugged, 3).expect("plugin ALP");
        assert!(out.fallbacks.is_empty(), "{:?}", out.fallbacks);
        objectives.1 = out.objective;
    });
    row(
        "ALP 200 agents x 4 servers, built-in plugin as heuristic and cost model",
        &plugin_alp,
        "≤ 3x native",
    );
    println!();
    println!(
        "plugin / native: scoring {:.2}x, ALP {:.2}x (medians); ALP objective native {:.4}, plugin {:.4}",
        pct(&plugin_score, 0.5) / pct(&native_score, 0.5),
        pct(&plugin_alp, 0.5) / pct(&native_alp, 0.5),
        objectives.0,
        objectives.1
    );

    // Policies in Python: CPython in the sandbox, against Rust.
    println!();
    let mut loaded = Vec::new();
    for (name, path) in [
        ("Rust template", TEMPLATE_POLICY),
        ("Python template", PYTHON_TEMPLATE_POLICY),
        ("Python reference", PYTHON_BUILTIN_POLICY),
    ] {
        let size = std::fs::metadata(path).map_or(0, |m| m.len());
        let t = Instant::now();
        let component = rt.load_file(Path::new(path)).expect("plugin loads");
        let t_compile = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let instance = component.instantiate().expect("instance");
        println!(
            "{name}: {size} bytes, compiled in {t_compile:.0} ms, instantiated in {:.1} ms",
            t.elapsed().as_secs_f64() * 1e3
        );
        loaded.push((name, component, instance));
    }
    println!();
    println!("| what | p50 | p90 | min | runs | target |");
    println!("|---|---:|---:|---:|---:|---|");
    let mut python_score = Vec::new();
    for (name, _, instance) in &mut loaded {
        let v = time_ms(9, || {
            instance.score(&big).expect("plugin scores");
        });
        row(
            &format!("score 1,000 x 100 through the {name}"),
            &v,
            "≤ 50 ms",
        );
        python_score.push(pct(&v, 0.5));
    }
    for (name, _, instance) in &mut loaded {
        let v = time_ms(9, || {
            instance
                .objectives(&big, &plans)
                .expect("plugin objectives");
        });
        row(
            &format!("objectives of 20 plans, 1,000 x 100, through the {name}"),
            &v,
            "",
        );
    }
    let python = &loaded[2].1;
    let plugged = plugin_policy(Some(python), Some(python));
    let mut python_objective = 0.0;
    let python_alp = time_ms(5, || {
        let out = alp.place(&alp_instance, &plugged, 3).expect("Python ALP");
        assert!(out.fallbacks.is_empty(), "{:?}", out.fallbacks);
        python_objective = out.objective;
    });
    row(
        "ALP 200 agents x 4 servers, Python reference as heuristic and cost model",
        &python_alp,
        "",
    );
    println!();
    println!(
        "Python / Rust template scoring: {:.1}x; Python ALP / native ALP: {:.1}x; ALP objective Python {:.4} (native {:.4})",
        python_score[1] / python_score[0],
        pct(&python_alp, 0.5) / pct(&native_alp, 0.5),
        python_objective,
        objectives.0
    );
}
