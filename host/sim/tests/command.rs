//! `SimCommand` end to end, in-process: argument parsing, a sweep writing
//! its CSV and charts, a single run writing its JSON files.

use clap::Parser;
use edgehost_sim::SimCommand;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    sim: SimCommand,
}

fn parse(args: &[&str]) -> Result<SimCommand, clap::Error> {
    Cli::try_parse_from(std::iter::once("sim").chain(args.iter().copied())).map(|c| c.sim)
}

#[test]
fn defaults_match_the_paper_setting() {
    let c = parse(&[]).expect("defaults parse");
    assert_eq!((c.servers, c.tasks, c.seed), (4, 2, 1));
    assert_eq!(c.algorithms.len(), 6);
    assert!(parse(&["--algorithms", "local-search,antllm"]).is_ok());
    assert!(parse(&["--algorithms", "antllm,ants"]).is_err());
    assert!(parse(&["--sweep", "nodes"]).is_err());
}

#[test]
fn sweep_writes_csv_and_figures() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().to_str().expect("utf-8 path");
    parse(&[
        "--sweep",
        "servers",
        "--points",
        "2,4",
        "--repeats",
        "2",
        "--algorithms",
        "antllm,greedy,polling,random",
        "--out",
        out,
        "--json",
    ])
    .expect("parse")
    .execute()
    .expect("sweep runs");
    let csv = std::fs::read_to_string(dir.path().join("sweep-servers.csv")).expect("csv");
    // Header plus two points times four algorithms.
    assert_eq!(csv.lines().count(), 9);
    for fig in ["fig2-delay-vs-servers.svg", "fig3-cost-vs-servers.svg"] {
        let svg = std::fs::read_to_string(dir.path().join(fig)).expect("figure");
        assert!(svg.contains("<svg"), "{fig}");
        assert!(
            svg.contains("antllm") && svg.contains("random"),
            "{fig} has a legend"
        );
    }
}

#[test]
fn single_run_writes_results() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().to_str().expect("utf-8 path");
    parse(&["--seed", "3", "--out", out, "--json"])
        .expect("parse")
        .execute()
        .expect("run");
    let text = std::fs::read_to_string(dir.path().join("results.json")).expect("results");
    let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let rows = v.as_array().expect("array");
    assert_eq!(rows.len(), 6);
    for row in rows {
        for key in [
            "algorithm",
            "objective",
            "feasible",
            "solve_ms",
            "lower_bound",
            "gap",
        ] {
            assert!(row.get(key).is_some(), "{key} missing in {row}");
        }
        for key in ["tra", "mig", "ini", "pro", "total"] {
            assert!(row["latency"][key].is_number(), "latency.{key}");
        }
        for key in ["cpu", "storage", "comm", "total"] {
            assert!(row["cost"][key].is_number(), "cost.{key}");
        }
    }
    // The optimum is a lower bound for everything else on the objective.
    let objective = |name: &str| {
        rows.iter()
            .find(|r| r["algorithm"] == name)
            .and_then(|r| r["objective"].as_f64())
            .expect("objective")
    };
    for name in ["antllm", "local-search", "greedy", "polling", "random"] {
        assert!(objective("optimal") <= objective(name) + 1e-9, "{name}");
    }
    // Four servers fit the exact solver: the bound is the optimum, and each
    // gap is measured against it.
    for row in rows {
        let bound = row["lower_bound"].as_f64().expect("bound");
        assert!((bound - objective("optimal")).abs() < 1e-9, "{row}");
        assert_eq!(row["bound_method"], "optimum");
        let gap = row["gap"].as_f64().expect("gap");
        let v = row["objective"].as_f64().expect("objective");
        assert!((gap - (v - bound) / v).abs() < 1e-9, "{row}");
    }
}

#[test]
fn large_runs_get_a_lagrangian_bound() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().to_str().expect("utf-8 path");
    parse(&[
        "--servers",
        "12",
        "--tasks",
        "6",
        "--algorithms",
        "antllm,local-search,greedy",
        "--out",
        out,
        "--json",
    ])
    .expect("parse")
    .execute()
    .expect("run");
    let text = std::fs::read_to_string(dir.path().join("results.json")).expect("results");
    let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    for row in v.as_array().expect("array") {
        assert_eq!(row["bound_method"], "lagrangian", "{row}");
        let bound = row["lower_bound"].as_f64().expect("bound");
        let objective = row["objective"].as_f64().expect("objective");
        assert!(bound > 0.0 && bound <= objective, "{row}");
    }
}
