//! A fleet on the emulated four-city WAN, without root: it starts behind
//! the relay, its hosts measure the emulated links, and stopping it leaves
//! no process behind.

// Test helpers unwrap freely: a failure is the test failing.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::one_line_error;
use edgehost_tests::{CBIR_FEATURES_AGENT, CBIR_INDEX_AGENT};
use edgehost_wan::{Topology, WanFleet};
use serde_json::Value;

fn edgehost_json(client: &Path, args: &[&str]) -> Value {
    let out = common::edgehost_cmd()
        .env("EDGEHOST_CLIENT_CONFIG", client)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", one_line_error(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn start(runtime: &tokio::runtime::Runtime, dir: &Path) -> WanFleet {
    runtime
        .block_on(WanFleet::start(
            Path::new(env!("CARGO_BIN_EXE_edgehost")),
            Topology::paper(4).unwrap(),
            1,
            Some(dir.join("fleet")),
            &["--heartbeat-ms".to_owned(), "200".to_owned()],
        ))
        .unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn alive(pid: u32) -> bool {
    std::process::Command::new("kill")
        .args(["-0", &pid.to_string()])
        .status()
        .unwrap()
        .success()
}

#[test]
fn a_fleet_on_the_emulated_wan_measures_its_links_and_cleans_up() {
    let runtime = runtime();
    let dir = tempfile::tempdir().unwrap();
    let topology = Topology::paper(4).unwrap();
    let mut fleet = start(&runtime, dir.path());
    let client = fleet.client_config();

    // Every host knows every other, through the relay, and the links they
    // measure are the emulated ones.
    let deadline = Instant::now() + Duration::from_secs(60);
    let links = loop {
        let model = edgehost_json(&client, &["model", "--json"]);
        let beijing = model["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["name"] == "beijing")
            .cloned()
            .unwrap();
        let links = beijing["model"]["links"].as_array().unwrap().clone();
        if links.len() == 3 {
            break links;
        }
        assert!(Instant::now() < deadline, "{model:#}");
        std::thread::sleep(Duration::from_millis(200));
    };
    for link in &links {
        let peer = link["peer"].as_str().unwrap();
        let claimed = topology.rtt(0, topology.index(peer).unwrap()).as_secs_f64() * 1e3;
        let measured = link["rtt_ms"].as_f64().unwrap();
        assert!(
            (measured - claimed).abs() <= 0.25 * claimed,
            "beijing-{peer}: the host measures {measured:.1} ms over a {claimed} ms link"
        );
    }
    let counters = fleet.wan.counters();
    assert!(counters.delivered > 0 && counters.bytes > 0, "{counters:?}");

    let pids: Vec<u32> = ["beijing", "shanghai", "guiyang", "singapore"]
        .iter()
        .map(|h| {
            std::fs::read_to_string(dir.path().join("fleet").join(h).join("pid"))
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(pids.iter().all(|p| alive(*p)));
    fleet.stop();
    drop(fleet);
    assert!(pids.iter().all(|p| !alive(*p)), "a host outlived its fleet");
}

/// The median of `n` calls' round trips, in milliseconds, each entering
/// the fleet at `via`.
fn median_call_ms(client: &Path, via: &str, agent: &str, input: &str, n: usize) -> f64 {
    let mut samples: Vec<f64> = (0..n)
        .map(|_| {
            let out = edgehost_json(
                client,
                &["invoke", agent, "--input", input, "--via", via, "--json"],
            );
            out["ms"].as_f64().unwrap()
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[n / 2]
}

#[test]
fn agents_follow_their_user_to_singapore_and_answer_faster_there() {
    let runtime = runtime();
    let dir = tempfile::tempdir().unwrap();
    let fleet = start(&runtime, dir.path());
    let client = fleet.client_config();
    for (file, name) in [
        (CBIR_FEATURES_AGENT, "features"),
        (CBIR_INDEX_AGENT, "index"),
    ] {
        edgehost_json(
            &client,
            &["push", file, "--name", name, "--to", "beijing", "--json"],
        );
    }
    let ps = edgehost_json(&client, &["ps", "--json"]);
    let singapore = ps["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == "singapore")
        .unwrap()["addr"]
        .as_str()
        .unwrap()
        .to_owned();
    let stats = r#"{"op":"stats"}"#;
    // The user is at Singapore now; the agents still run at Beijing, a
    // 90 ms round trip away.
    let before = median_call_ms(&client, &singapore, "index", stats, 5);
    assert!(before >= 80.0, "{before:.1} ms across a 90 ms link");

    let decided = edgehost_json(
        &client,
        &[
            "client",
            "attach",
            "singapore",
            "--agent",
            "features",
            "--agent",
            "index",
            "--json",
        ],
    );
    let moves = decided.as_array().unwrap();
    assert!(
        moves
            .iter()
            .all(|e| e["decision"].as_str().unwrap().contains("singapore")),
        "{decided:#}"
    );
    let ps = edgehost_json(&client, &["ps", "--json"]);
    for agent in ps["agents"].as_array().unwrap() {
        assert_eq!(agent["host"], "singapore", "{ps:#}");
    }
    let after = median_call_ms(&client, &singapore, "index", stats, 5);
    assert!(
        after < before / 2.0,
        "{after:.1} ms after the move, {before:.1} ms before"
    );
}
