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

/// The fleets of these tests run one at a time: two fleets on a small
/// machine slow each other's hosts, and the round trips they measure with.
static ONE_FLEET: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_fleet() -> std::sync::MutexGuard<'static, ()> {
    ONE_FLEET
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The process ids of `hosts` of the fleet in `dir`.
fn host_pids(dir: &Path, hosts: &[&str]) -> Vec<u32> {
    hosts
        .iter()
        .map(|h| {
            std::fs::read_to_string(dir.join("fleet").join(h).join("pid"))
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        })
        .collect()
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
    let _one = one_fleet();
    let runtime = runtime();
    let dir = tempfile::tempdir().unwrap();
    let topology = Topology::paper(4).unwrap();
    let mut fleet = start(&runtime, dir.path());
    let client = fleet.client_config();

    // Every host knows every other, through the relay, and the round trips
    // they measure settle on the emulated ones once the start-up's
    // handshakes and compiles are over.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let model = edgehost_json(&client, &["model", "--json"]);
        let beijing = model["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["name"] == "beijing")
            .cloned()
            .unwrap();
        let links = beijing["model"]["links"].as_array().unwrap().clone();
        let off: Vec<String> = links
            .iter()
            .filter_map(|link| {
                let peer = link["peer"].as_str().unwrap();
                let claimed = topology.rtt(0, topology.index(peer).unwrap()).as_secs_f64() * 1e3;
                let measured = link["rtt_ms"].as_f64().unwrap();
                ((measured - claimed).abs() > 0.25 * claimed)
                    .then(|| format!("beijing-{peer}: {measured:.1} ms over a {claimed} ms link"))
            })
            .collect();
        if links.len() == 3 && off.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} link(s) known; {off:?}",
            links.len()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let counters = fleet.wan.counters();
    assert!(counters.delivered > 0 && counters.bytes > 0, "{counters:?}");

    let pids = host_pids(dir.path(), &["beijing", "shanghai", "guiyang", "singapore"]);
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
    let _one = one_fleet();
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

/// With root, each host lives in a network namespace of its own behind a
/// veth pair whose `tbf` queue is its uplink: the hosts measure the
/// emulated round trips, the queues carry the sites' rates, and stopping
/// the fleet leaves no process, namespace or veth behind. Without root
/// (not so in CI, which runs as root) there is nothing to check.
#[test]
fn a_fleet_in_network_namespaces_has_its_links_and_leaves_nothing_behind() {
    if !edgehost_wan::netns::is_root() {
        eprintln!("not root: network namespaces cannot be made here");
        return;
    }
    let _one = one_fleet();
    let runtime = runtime();
    let dir = tempfile::tempdir().unwrap();
    let topology = Topology::paper(2).unwrap();
    let mut fleet = runtime
        .block_on(WanFleet::start_isolated(
            Path::new(env!("CARGO_BIN_EXE_edgehost")),
            topology.clone(),
            1,
            Some(dir.path().join("fleet")),
            200,
        ))
        .unwrap();
    let client = fleet.client_config();
    let namespaces: Vec<String> = (0..2)
        .map(|i| fleet.namespaces().unwrap().name(i).to_owned())
        .collect();
    for ns in &namespaces {
        assert!(edgehost_wan::netns::list().contains(ns), "{ns}");
        let out = std::process::Command::new("tc")
            .args(["-n", ns, "qdisc", "show"])
            .output()
            .unwrap();
        let qdiscs = String::from_utf8_lossy(&out.stdout);
        assert!(
            qdiscs.contains("tbf") && qdiscs.contains("rate 20Mbit"),
            "{qdiscs}"
        );
    }

    // The round trip a host measures settles on the emulated one once the
    // start-up's handshakes and compiles are over.
    let claimed = topology.rtt(0, 1).as_secs_f64() * 1e3;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    loop {
        let model = edgehost_json(&client, &["model", "--json"]);
        let measured = model["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["name"] == "beijing")
            .and_then(|b| {
                b["model"]["links"].as_array().and_then(|l| {
                    l.iter()
                        .find(|l| l["peer"] == "shanghai")
                        .and_then(|l| l["rtt_ms"].as_f64())
                })
            })
            .filter(|rtt| *rtt > 0.0);
        if let Some(rtt) = measured {
            if (rtt - claimed).abs() <= 0.25 * claimed {
                break;
            }
            seen.push(rtt);
        }
        assert!(
            Instant::now() < deadline,
            "beijing-shanghai: the host measured {seen:.1?} ms over a {claimed} ms link"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    let pids = host_pids(dir.path(), &["beijing", "shanghai"]);
    assert!(pids.iter().all(|p| alive(*p)));
    fleet.stop();
    drop(fleet);
    assert!(pids.iter().all(|p| !alive(*p)), "a host outlived its fleet");
    let left = edgehost_wan::netns::list();
    assert!(
        namespaces.iter().all(|ns| !left.contains(ns)),
        "namespaces left: {left:?}"
    );
    let links = std::process::Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    let prefix = format!("ew{}x", std::process::id() % 100_000);
    assert!(
        !String::from_utf8_lossy(&links.stdout).contains(&prefix),
        "a veth of the fleet is left"
    );
}
