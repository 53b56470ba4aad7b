//! The CBIR pipeline on a real fleet: the feature extractor, the index and
//! the Python planner on three hosts, tasks planned and run across them,
//! and the index's memory carried by a migration.

// Test helpers unwrap freely: a failure is the test failing.
#![allow(clippy::unwrap_used)]

mod common;

use common::fleet::LocalFleet;
use common::one_line_error;
use edgehost_tests::{CBIR_FEATURES_AGENT, CBIR_INDEX_AGENT, PYTHON_PLANNER_AGENT};
use serde_json::Value;

fn task(fleet: &LocalFleet, args: &[&str]) -> Value {
    let mut all = vec!["task", "run"];
    all.extend_from_slice(args);
    all.push("--json");
    fleet.json(&all)
}

#[test]
fn tasks_run_across_hosts_and_the_index_survives_a_migration() {
    let fleet = LocalFleet::start(3);
    let images = fleet.dir.path().join("images");
    let images_arg = images.to_str().unwrap();
    let out = fleet.run(&[
        "task",
        "images",
        images_arg,
        "--count",
        "12",
        "--variants",
        "1",
        "--size",
        "96",
    ]);
    assert!(out.status.success(), "{}", one_line_error(&out));
    assert_eq!(std::fs::read_dir(&images).unwrap().count(), 24);

    for (file, name, host) in [
        (CBIR_FEATURES_AGENT, "features", "beijing"),
        (CBIR_INDEX_AGENT, "index", "shanghai"),
        (PYTHON_PLANNER_AGENT, "planner", "guiyang"),
    ] {
        let out = fleet.run(&["push", file, "--name", name, "--to", host]);
        assert!(out.status.success(), "{}", one_line_error(&out));
    }

    // Index every scene: planned by rules (no LLM here), described on
    // Beijing, kept on Shanghai.
    for seed in 1..=12 {
        let file = images.join(format!("scene-{seed}.png"));
        let report = task(
            &fleet,
            &[
                "--prompt",
                "add this photo to the index",
                "--file",
                file.to_str().unwrap(),
            ],
        );
        assert_eq!(report["planner"], "rules", "{report:#}");
        assert!(
            report["note"].as_str().unwrap().contains("no LLM"),
            "{report:#}"
        );
        let subtasks = report["subtasks"].as_array().unwrap();
        let ids: Vec<&str> = subtasks.iter().map(|s| s["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["plan", "describe", "add"]);
        assert_eq!(subtasks[0]["host"], "guiyang");
        assert_eq!(subtasks[1]["host"], "beijing");
        assert_eq!(subtasks[2]["host"], "shanghai");
        assert_eq!(subtasks[2]["reply"]["added"]["images"], seed);
        for s in subtasks {
            let total = s["total"]["measured_ms"].as_f64().unwrap();
            let processing = s["processing"]["measured_ms"].as_f64().unwrap();
            assert!(processing > 0.0 && processing <= total, "{s:#}");
        }
        assert!(report["cost"]["total"].as_f64().unwrap() > 0.0);
        // T_r is the sum of the parts the user waits for.
        let parts: f64 = subtasks
            .iter()
            .map(|s| s["total"]["measured_ms"].as_f64().unwrap())
            .sum();
        let t_r = report["t_r"]["measured_ms"].as_f64().unwrap();
        assert!((t_r - parts).abs() < 1e-6, "{report:#}");
    }

    // A variant of scene 7 finds scene 7 first. The user is at Guiyang:
    // the task enters the fleet there.
    let query = images.join("scene-7-v1.png");
    let query = query.to_str().unwrap();
    let found = task(
        &fleet,
        &[
            "--prompt",
            "find images similar to this",
            "--file",
            query,
            "--user",
            "guiyang",
        ],
    );
    assert_eq!(found["entered_at"], "guiyang");
    let hits = found["subtasks"][2]["reply"]["hits"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(hits.len(), 5, "{found:#}");
    assert_eq!(hits[0]["id"], "scene-7.png", "{found:#}");
    // The fleet measured the agents' processing by now: the model predicts
    // each part.
    let processing = &found["subtasks"][2]["processing"];
    assert!(processing["predicted_ms"].as_f64().is_some(), "{found:#}");

    // The index moves with its memory: the same query ranks the same.
    let out = fleet.run(&["migrate", "index", "--to", "guiyang"]);
    assert!(out.status.success(), "{}", one_line_error(&out));
    let again = task(
        &fleet,
        &["--prompt", "find images similar to this", "--file", query],
    );
    assert_eq!(again["subtasks"][2]["host"], "guiyang");
    assert_eq!(again["subtasks"][2]["reply"]["hits"], Value::Array(hits));

    // The planner kept every task with its figures.
    let history = fleet.json(&["task", "list", "--json"]);
    let history = history.as_array().unwrap();
    assert_eq!(history.len(), 14);
    assert!(
        history
            .iter()
            .all(|t| t["figures"]["total_ms"].as_f64().is_some())
    );

    // Bad input: a garbage image is refused by the extractor with one line
    // and nothing is indexed; a task that needs a file without one is
    // refused before anything runs.
    let garbage = fleet.dir.path().join("garbage.png");
    std::fs::write(&garbage, b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let out = fleet.run(&[
        "task",
        "run",
        "--prompt",
        "add this",
        "--file",
        garbage.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        one_line_error(&out).contains("corrupt image"),
        "{}",
        one_line_error(&out)
    );
    let stats = task(&fleet, &["--prompt", "how many images are indexed?"]);
    assert_eq!(stats["subtasks"][1]["reply"]["images"], 12, "{stats:#}");

    // An agent released right after it moved is found where it went, even
    // before the fleet's reports say so.
    let ps = fleet.ps();
    let at = common::fleet::named(&ps, "agents", "features").unwrap()["host"]
        .as_str()
        .unwrap()
        .to_owned();
    let to = if at == "shanghai" {
        "beijing"
    } else {
        "shanghai"
    };
    let out = fleet.run(&["migrate", "features", "--to", to]);
    assert!(out.status.success(), "{}", one_line_error(&out));
    let out = fleet.run(&["release", "features"]);
    assert!(out.status.success(), "{}", one_line_error(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("released features from {to}")
    );
    let out = fleet.run(&["release", "features"]);
    assert_eq!(out.status.code(), Some(1), "{}", one_line_error(&out));
    assert!(one_line_error(&out).contains("no host runs an agent named"));
}
