//! Scenario tests with real `edgehost serve` processes on loopback, started
//! by `edgehost up` and driven through the command line, as an operator would.

// Test helpers unwrap freely: a failure is the test failing.
#![allow(clippy::unwrap_used)]

use std::ops::Range;

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::fleet::{LocalFleet, named};
use common::{edgehost_cmd, one_line_error};
use edgehost_tests::{
    HOSTILE_AGENT, HOSTILE_POLICY, LATENCY_FIRST_POLICY, MEMORY_AGENT, PYTHON_DIALOG_AGENT,
};
use serde_json::Value;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim_end().to_owned()
}

#[test]
fn push_auto_places_agents_and_each_answers() {
    let fleet = LocalFleet::start(3);
    let hosts = ["beijing", "shanghai", "guiyang"];
    for i in 0..4 {
        let name = format!("memory-{i}");
        let pushed = fleet.json(&["push", MEMORY_AGENT, "--name", &name, "--auto", "--json"]);
        let host = pushed["host"].as_str().unwrap();
        assert!(hosts.contains(&host), "{pushed:#}");
        let placement = &pushed["placement"];
        assert_eq!(placement["algorithm"], "antllm");
        assert_eq!(placement["candidates"].as_array().unwrap().len(), 3);
        assert!(placement["objective"].as_f64().unwrap() > 0.0);
        // One agent over three hosts: the bound is the proven optimum, and
        // the colony finds it.
        let bound = placement["lower_bound"].as_f64().unwrap();
        assert!(bound > 0.0, "{placement:#}");
        assert!(placement["gap"].as_f64().unwrap() < 1e-9, "{placement:#}");
        assert!(pushed["digest"].as_str().unwrap().starts_with("sha256:"));
    }
    for i in 0..4 {
        let name = format!("memory-{i}");
        let out = fleet.invoke(&name, &format!("remember I am {i}"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(stdout(&out), "noted #1");
        let out = fleet.invoke(&name, "notes");
        assert_eq!(stdout(&out), format!("I am {i}"));
    }
    let ps = fleet.wait_for(|ps| ps["agents"].as_array().unwrap().len() == 4);
    for agent in ps["agents"].as_array().unwrap() {
        assert!(hosts.contains(&agent["host"].as_str().unwrap()));
        assert_eq!(agent["kind"], "memory");
    }

    // With the user at Guiyang, only the hosts within ALM's threshold of
    // Guiyang (1 hop; Beijing and Shanghai are farther) are candidates, and
    // ALM is told where the user is.
    let pushed = fleet.json(&[
        "push",
        MEMORY_AGENT,
        "--name",
        "near-user",
        "--auto",
        "--user",
        "guiyang",
        "--json",
    ]);
    assert_eq!(pushed["host"], "guiyang", "{pushed:#}");
    assert_eq!(pushed["user"], "guiyang");
    assert_eq!(
        pushed["placement"]["candidates"],
        serde_json::json!(["guiyang"])
    );
    assert!(fleet.has_event(|e| e["agent"] == "near-user"
        && e["trigger"] == "user-moved"
        && e["decision"] == "stay"));
    let out = fleet.run(&["push", MEMORY_AGENT, "--name", "lost", "--user", "atlantis"]);
    assert!(one_line_error(&out).contains("no host or site named \"atlantis\""));
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn pushing_the_same_component_again_uploads_nothing() {
    let fleet = LocalFleet::start(2);
    let first = fleet.json(&[
        "push",
        MEMORY_AGENT,
        "--name",
        "a",
        "--to",
        "shanghai",
        "--json",
    ]);
    assert_eq!(first["host"], "shanghai");
    assert_eq!(first["uploaded_bytes"], first["component_bytes"]);
    let second = fleet.json(&[
        "push",
        MEMORY_AGENT,
        "--name",
        "b",
        "--to",
        "shanghai",
        "--json",
    ]);
    assert_eq!(second["uploaded_bytes"], 0);
    assert_eq!(second["cache_hit"], true);
    // A taken name is refused on one line.
    let out = fleet.run(&["push", MEMORY_AGENT, "--name", "a", "--to", "beijing"]);
    assert!(one_line_error(&out).contains("already runs"));
}

#[test]
fn an_agent_calls_its_dependency_on_another_host() {
    let fleet = LocalFleet::start(3);
    fleet.json(&[
        "push",
        MEMORY_AGENT,
        "--name",
        "memory",
        "--to",
        "beijing",
        "--json",
    ]);
    fleet.json(&[
        "push",
        HOSTILE_AGENT,
        "--name",
        "caller",
        "--to",
        "guiyang",
        "--json",
    ]);
    // Wait until guiyang knows where "memory" runs.
    fleet.wait_for(|ps| ps["agents"].as_array().unwrap().len() == 2);
    std::thread::sleep(Duration::from_millis(500));
    let out = fleet.invoke("caller", "call memory remember across the fleet");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout(&out), "noted #1");
    assert_eq!(stdout(&fleet.invoke("memory", "notes")), "across the fleet");
    // A call to an undeclared agent is refused by the host.
    let out = fleet.invoke("caller", "call elsewhere hi");
    assert!(one_line_error(&out).contains("not among the dependencies"));
}

#[test]
fn a_killed_host_is_marked_unreachable_and_the_others_keep_serving() {
    let fleet = LocalFleet::start(3);
    fleet.json(&[
        "push",
        MEMORY_AGENT,
        "--name",
        "survivor",
        "--to",
        "shanghai",
        "--json",
    ]);
    fleet.json(&[
        "push",
        MEMORY_AGENT,
        "--name",
        "victim",
        "--to",
        "guiyang",
        "--json",
    ]);
    // Every host knows where both agents run before one of them dies.
    assert_eq!(fleet.host_of("victim").as_deref(), Some("guiyang"));
    assert_eq!(fleet.host_of("survivor").as_deref(), Some("shanghai"));
    let status = Command::new("kill")
        .arg("-9")
        .arg(fleet.pid("guiyang").to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let ps = fleet.wait_for_host("guiyang", false);
    let victim = named(&ps, "agents", "victim").unwrap();
    assert_eq!(victim["reachable"], false);
    let out = fleet.invoke("survivor", "remember still here");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout(&out), "noted #1");
    let out = fleet.invoke("victim", "notes");
    assert!(one_line_error(&out).contains("no reachable host runs"));
}

#[test]
fn clients_and_hosts_of_another_fleet_are_refused() {
    let fleet = LocalFleet::start(2);
    let other = tempfile::tempdir().unwrap();
    let ca_dir = other.path().join("ca");
    assert!(
        edgehost_cmd()
            .args(["fleet", "init"])
            .arg(&ca_dir)
            .output()
            .unwrap()
            .status
            .success()
    );
    let issued = edgehost_cmd()
        .args(["fleet", "issue", "intruder", "--role", "client", "--ca-dir"])
        .arg(&ca_dir)
        .output()
        .unwrap();
    assert!(issued.status.success());
    let hosts = std::fs::read_to_string(fleet.client_config()).unwrap();
    let hosts_line = hosts.lines().find(|l| l.starts_with("hosts")).unwrap();
    let config = other.path().join("client.toml");
    std::fs::write(
        &config,
        format!("ca = \"ca/ca.pem\"\ncert = \"ca/intruder.pem\"\nkey = \"ca/intruder.key\"\n{hosts_line}\n"),
    )
    .unwrap();
    let out = edgehost_cmd()
        .args(["ps", "--client-config"])
        .arg(&config)
        .output()
        .unwrap();
    let err = one_line_error(&out);
    assert!(err.contains("cannot reach"), "{err}");

    // A host of the other fleet pointed at ours never joins it.
    let issued = edgehost_cmd()
        .args(["fleet", "issue", "rogue", "--ca-dir"])
        .arg(&ca_dir)
        .output()
        .unwrap();
    assert!(issued.status.success());
    let seed = hosts_line.split('"').nth(1).unwrap().to_owned();
    let mut rogue = edgehost_cmd()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--heartbeat-ms",
            "100",
            "--peer",
            &seed,
            "--data-dir",
        ])
        .arg(other.path().join("data"))
        .arg("--ca")
        .arg(ca_dir.join("ca.pem"))
        .arg("--cert")
        .arg(ca_dir.join("rogue.pem"))
        .arg("--key")
        .arg(ca_dir.join("rogue.key"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let ps = fleet.ps();
    let _ = rogue.kill();
    let _ = rogue.wait();
    let names: Vec<&str> = ps["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(!names.contains(&"rogue"));
}

#[test]
fn serve_refuses_bad_configuration_on_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = edgehost_cmd().args(["serve"]).output().unwrap();
    assert!(one_line_error(&out).contains("--config"));
    let config = dir.path().join("host.toml");
    std::fs::write(&config, "listen = \"127.0.0.1:0\"\nbogus = 1\n").unwrap();
    let out = edgehost_cmd()
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(one_line_error(&out).contains("host.toml"));
    std::fs::write(
        &config,
        "data_dir = \"d\"\nca = \"missing.pem\"\ncert = \"c.pem\"\nkey = \"k.pem\"\n",
    )
    .unwrap();
    let out = edgehost_cmd()
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(one_line_error(&out).contains("missing.pem"));
}

#[test]
fn policy_set_swaps_the_placement_policy_of_a_running_fleet() {
    let fleet = LocalFleet::start(2);
    let out = fleet.run(&[
        "policy",
        "set",
        "--heuristic",
        LATENCY_FIRST_POLICY,
        "--cost-model",
        LATENCY_FIRST_POLICY,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = stdout(&out);
    assert!(
        lines
            .lines()
            .next()
            .is_some_and(|l| l.contains(": passed the conformance check (sha256:")),
        "{lines}"
    );
    let swapped: Vec<&str> = lines.lines().skip(1).collect();
    assert_eq!(swapped.len(), 2, "{lines}");
    assert!(
        swapped.iter().all(|l| l.ends_with("(generation 1)")),
        "{lines}"
    );
    // Peers' reports reach the answering host with the next heartbeat.
    fleet.wait_for(|ps| {
        ps["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["policy"].as_str().unwrap().starts_with("heuristic "))
    });
    let pushed = fleet.json(&["push", MEMORY_AGENT, "--name", "m", "--json"]);
    assert!(
        pushed["placement"]["policy"]
            .as_str()
            .unwrap()
            .starts_with("heuristic "),
        "{pushed:#}"
    );

    // An agent is not a policy: refused locally, on one line.
    let out = fleet.run(&["policy", "set", "--heuristic", MEMORY_AGENT]);
    assert!(
        one_line_error(&out).contains("not an edgehost policy plugin: it is an agent"),
        "{out:?}"
    );

    let out = fleet.run(&["policy", "set", "--builtin"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    fleet.wait_for(|ps| {
        ps["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["policy"] == "built-in")
    });
}

#[test]
fn a_policy_one_host_cannot_run_is_rolled_back_on_every_host() {
    let fleet = LocalFleet::start(2);
    // Shanghai gives policy plugins less memory than any Rust plugin starts
    // with.
    fleet.kill("shanghai", "KILL");
    fleet.wait_for_host("shanghai", false);
    let config = fleet.dir.path().join("shanghai").join("host.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("[limits]\n", "[limits]\npolicy_memory_mib = 1\n"),
    )
    .unwrap();
    let _shanghai = Reaped(fleet.restart("shanghai"));

    // The plugin passes the conformance check...
    let out = fleet.run(&["policy", "check", LATENCY_FIRST_POLICY]);
    assert!(out.status.success(), "{}", stdout(&out));
    // ...but Shanghai cannot run it: it refuses and says why, Beijing,
    // which had swapped, is rolled back, and the command fails.
    let out = fleet.run(&[
        "policy",
        "set",
        "--heuristic",
        LATENCY_FIRST_POLICY,
        "--cost-model",
        LATENCY_FIRST_POLICY,
    ]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(
        one_line_error(&out)
            .contains("1 of 2 host(s) refused the policy; every host keeps its previous one"),
        "{out:?}"
    );
    assert!(
        text.contains("shanghai: refused: ") && text.contains("cannot run on this host"),
        "{text}"
    );
    assert!(
        text.contains("beijing: rolled back to built-in (generation 2)"),
        "{text}"
    );
    let ps = fleet
        .wait_for(|ps| named(ps, "hosts", "beijing").is_some_and(|h| h["policy_generation"] == 2));
    for host in ps["hosts"].as_array().unwrap() {
        assert_eq!(host["policy"], "built-in", "{ps:#}");
    }
    assert_eq!(
        named(&ps, "hosts", "shanghai").unwrap()["policy_generation"],
        0,
        "{ps:#}"
    );
    // Decisions keep working, with the built-in policy.
    let pushed = fleet.json(&["push", MEMORY_AGENT, "--name", "m", "--json"]);
    assert_eq!(pushed["placement"]["policy"], "built-in", "{pushed:#}");

    // A plugin that fails the conformance check never reaches a host.
    let out = fleet.run(&["policy", "set", "--heuristic", HOSTILE_POLICY]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(
        one_line_error(&out).contains("fails the conformance check")
            && one_line_error(&out).contains("; no host changed"),
        "{out:?}"
    );
    // The check's speed budget is the command's: one no plugin meets
    // refuses even a good plugin, before any host is asked.
    let out = fleet.run(&[
        "policy",
        "set",
        "--heuristic",
        LATENCY_FIRST_POLICY,
        "--max-score-ms",
        "0.000001",
    ]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(one_line_error(&out).contains("speed ("), "{out:?}");
    let ps = fleet.ps();
    assert_eq!(
        named(&ps, "hosts", "beijing").unwrap()["policy_generation"],
        2,
        "{ps:#}"
    );
}

/// A `GET` of `path` from an HTTP server on loopback: the status line and
/// the body.
fn http_get(addr: &str, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

#[test]
fn the_dashboard_serves_the_fleet_and_streams_a_migration_as_it_happens() {
    use std::io::{BufRead, BufReader, Write};
    let fleet = LocalFleet::start(2);
    let pushed = fleet.json(&[
        "push",
        MEMORY_AGENT,
        "--name",
        "m",
        "--to",
        "beijing",
        "--json",
    ]);
    assert_eq!(pushed["host"], "beijing", "{pushed:#}");

    // The dashboard needs only the read-only viewer certificate.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut dashboard = Reaped(
        edgehost_cmd()
            .args(["dashboard", "--listen", &addr, "--interval-ms", "200"])
            .env(
                "EDGEHOST_CLIENT_CONFIG",
                fleet.dir.path().join("viewer.toml"),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut first = String::new();
    BufReader::new(dashboard.0.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(
        first.starts_with(&format!("dashboard on http://{addr}/")),
        "{first}"
    );

    // The JSON the page reads: both hosts, with their map positions and
    // policy, and the agent on Beijing.
    let deadline = Instant::now() + Duration::from_secs(15);
    let snapshot = loop {
        let (status, body) = http_get(&addr, "/api/fleet");
        assert!(status.contains("200"), "{status}");
        let snapshot: Value = serde_json::from_str(&body).unwrap();
        if snapshot["hosts"].as_array().is_some_and(|h| h.len() == 2) {
            break snapshot;
        }
        assert!(Instant::now() < deadline, "{body}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let hosts = snapshot["hosts"].as_array().unwrap();
    for h in hosts {
        assert_eq!(h["reachable"], true, "{h:#}");
        assert!(h["report"]["location"]["lat"].is_number(), "{h:#}");
        assert_eq!(h["report"]["policy"], "built-in", "{h:#}");
        assert_eq!(h["report"]["policy_generation"], 0, "{h:#}");
    }
    let beijing = hosts
        .iter()
        .find(|h| h["report"]["name"] == "beijing")
        .unwrap();
    assert_eq!(beijing["report"]["agents"][0]["name"], "m", "{beijing:#}");

    // The page itself, with the snapshot inside, so it draws at once.
    let (status, page) = http_get(&addr, "/");
    assert!(status.contains("200"), "{status}");
    assert!(page.contains("<title>edgehost fleet</title>"), "{page}");
    assert!(
        !page.contains("/*SNAPSHOT*/"),
        "the snapshot was not put in"
    );
    assert!(page.contains("\"name\":\"shanghai\""), "{page}");
    // Offline: no script, style sheet or font from elsewhere.
    for outside in ["<script src", "<link", "@import", "url(http"] {
        assert!(!page.contains(outside), "the page loads {outside}");
    }
    assert!(http_get(&addr, "/nothing-here").0.contains("404"));

    // The event stream: a snapshot arrives at once, and the migration shows
    // up in one, with the agent on its new host.
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET /api/stream HTTP/1.1\r\nhost: {addr}\r\naccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut lines = BufReader::new(stream);
    let mut line = String::new();
    lines.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    let mut next_snapshot = || -> Value {
        loop {
            line.clear();
            assert!(lines.read_line(&mut line).unwrap() > 0, "the stream ended");
            if let Some(data) = line.trim_end().strip_prefix("data: ") {
                return serde_json::from_str(data).unwrap();
            }
        }
    };
    assert!(next_snapshot()["hosts"].is_array());
    let migrated = fleet.json(&["migrate", "m", "--to", "shanghai", "--json"]);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let snapshot = next_snapshot();
        let on_shanghai = snapshot["hosts"].as_array().unwrap().iter().any(|h| {
            h["report"]["name"] == "shanghai"
                && h["report"]["agents"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|a| a["name"] == "m")
        });
        let migration = snapshot["migrations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["agent"] == "m")
            .cloned();
        if let (true, Some(m)) = (on_shanghai, migration) {
            assert_eq!(m["from"], "beijing", "{m:#}");
            assert_eq!(m["to"], "shanghai", "{m:#}");
            assert_eq!(m["downtime_ms"], migrated["downtime_ms"], "{m:#}");
            assert_eq!(m["state_bytes"], migrated["state_bytes"], "{m:#}");
            assert!(m["committed_ms"].as_u64().unwrap() > 0, "{m:#}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the migration never reached the stream: {snapshot:#}"
        );
    }
}

impl LocalFleet {
    /// Migrates `agent` (holding notes `0..notes.start`) to `to` while
    /// another thread invokes it with `remember note I` for each I in
    /// `notes`, one CLI process after another; checks that every call was
    /// answered once and in order (nothing lost, nothing served twice) and
    /// returns the migration's JSON report.
    fn migrate_under_a_stream_of_notes(&self, agent: &str, to: &str, notes: Range<usize>) -> Value {
        let client_config = self.client_config();
        let first = notes.start;
        let caller = agent.to_owned();
        let stream = std::thread::spawn(move || {
            notes
                .map(|i| {
                    let out = edgehost_cmd()
                        .args(["invoke", &caller, "--input", &format!("remember note {i}")])
                        .env("EDGEHOST_CLIENT_CONFIG", &client_config)
                        .output()
                        .unwrap();
                    (
                        out.status.success(),
                        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
                        String::from_utf8_lossy(&out.stderr).trim().to_owned(),
                    )
                })
                .collect::<Vec<_>>()
        });
        std::thread::sleep(Duration::from_millis(100));
        let report = self.json(&["migrate", agent, "--to", to, "--json"]);
        for (k, (ok, answer, error)) in stream.join().unwrap().into_iter().enumerate() {
            assert!(ok, "call {k} failed: {error}");
            assert_eq!(answer, format!("noted #{}", first + k + 1));
        }
        report
    }

    /// Restarts a host of the fleet (after it was killed) as its own process.
    fn restart(&self, host: &str) -> Child {
        let config = self.dir.path().join(host).join("host.toml");
        let child = edgehost_cmd()
            .args(["serve", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.wait_for_host(host, true);
        child
    }

    fn kill(&self, host: &str, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid(host).to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// The host that serves `agent`, as soon as the fleet's reports say so
    /// (polled, 15 s at most: peers' reports arrive with their heartbeats).
    fn host_of(&self, agent: &str) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let ps = self.ps();
            let found = named(&ps, "agents", agent)
                .filter(|a| a["reachable"] == true)
                .map(|a| a["host"].as_str().unwrap().to_owned());
            if found.is_some() || Instant::now() > deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn migrate_prints_the_measured_breakdown_and_ships_only_state() {
    let fleet = LocalFleet::start(3);
    fleet.json(&[
        "push",
        MEMORY_AGENT,
        "--name",
        "mover",
        "--to",
        "beijing",
        "--json",
    ]);
    for i in 0..5 {
        assert!(
            fleet
                .invoke("mover", &format!("remember note {i}"))
                .status
                .success()
        );
    }
    // A steady stream of calls from another process while the agent moves.
    let report = fleet.migrate_under_a_stream_of_notes("mover", "shanghai", 5..45);
    assert_eq!(
        (report["from"].as_str(), report["to"].as_str()),
        (Some("beijing"), Some("shanghai"))
    );
    assert_eq!(report["epoch"], 2);
    // Shanghai lacked the component, so it went once; the state is what moves.
    assert_eq!(
        report["component_bytes_sent"],
        std::fs::metadata(MEMORY_AGENT).unwrap().len()
    );
    // Each part of eq. 3 by name, measured and predicted.
    let parts = ["export_ms", "transfer_ms", "initiation_ms", "load_ms"];
    let measured: Vec<f64> = parts
        .iter()
        .map(|p| report["measured_ms"][p].as_f64().unwrap())
        .collect();
    let predicted: Vec<f64> = parts
        .iter()
        .map(|p| report["predicted_ms"][p].as_f64().unwrap())
        .collect();
    assert!(measured.iter().all(|m| *m >= 0.0));
    assert!(predicted.iter().all(|p| *p > 0.0));
    let state = report["state_bytes"].as_u64().unwrap();
    assert!(report["wire_bytes"].as_u64().unwrap() as f64 <= 1.05 * state as f64 + 16384.0);
    let expected: Vec<String> = (0..45).map(|i| format!("note {i}")).collect();
    assert_eq!(stdout(&fleet.invoke("mover", "notes")), expected.join("\n"));
    assert_eq!(fleet.host_of("mover").as_deref(), Some("shanghai"));

    // Back again: now the component is cached on both, only the state moves.
    let back = fleet.json(&["migrate", "mover", "--to", "beijing", "--json"]);
    assert_eq!(back["component_bytes_sent"], 0);
    assert_eq!(back["epoch"], 3);
    let text = fleet.run(&["migrate", "mover", "--to", "shanghai"]);
    assert!(text.status.success());
    let out = stdout(&text);
    for part in ["export", "transfer", "initiation", "load", "downtime"] {
        assert!(out.contains(part), "{out}");
    }
    // Moving to where it is, or to nowhere, is refused on one line.
    assert!(
        one_line_error(&fleet.run(&["migrate", "mover", "--to", "shanghai"]))
            .contains("already runs")
    );
    assert!(
        one_line_error(&fleet.run(&["migrate", "mover", "--to", "atlantis"]))
            .contains("no host named")
    );
}

#[test]
fn a_python_agent_is_pushed_invoked_and_migrated_under_load() {
    let fleet = LocalFleet::start_cold(3);
    let component_bytes = std::fs::metadata(PYTHON_DIALOG_AGENT).unwrap().len();
    // Shanghai runs one already, so it holds (and has compiled) the
    // component. Compiling 18 MB takes seconds: `ps` shows it, and the push
    // reports success only once it is done.
    let push = edgehost_cmd()
        .args([
            "push",
            PYTHON_DIALOG_AGENT,
            "--name",
            "py-anchor",
            "--to",
            "shanghai",
            "--json",
        ])
        .env("EDGEHOST_CLIENT_CONFIG", fleet.client_config())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let compiling = |ps: &Value| {
        named(ps, "hosts", "shanghai")
            .is_some_and(|h| !h["compiling"].as_array().unwrap().is_empty())
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !compiling(&fleet.ps()) {
        assert!(
            Instant::now() < deadline,
            "ps never showed shanghai compiling"
        );
    }
    let pushed = push.wait_with_output().unwrap();
    assert!(
        pushed.status.success(),
        "{}",
        String::from_utf8_lossy(&pushed.stderr)
    );
    let pushed: Value = serde_json::from_slice(&pushed.stdout).unwrap();
    assert_eq!(pushed["cache_hit"], false);
    assert!(pushed["load_ms"].as_f64().unwrap() > 0.0);
    // Peers hear it with the next heartbeat.
    fleet.wait_for(|ps| !compiling(ps));

    let pushed = fleet.json(&[
        "push",
        PYTHON_DIALOG_AGENT,
        "--name",
        "talker",
        "--to",
        "beijing",
        "--json",
    ]);
    assert_eq!(pushed["host"], "beijing");
    for i in 0..3 {
        assert_eq!(
            stdout(&fleet.invoke("talker", &format!("remember note {i}"))),
            format!("noted #{}", i + 1)
        );
    }
    // No LLM in this fleet: the agent says so and answers from its notes.
    assert!(stdout(&fleet.invoke("talker", "hello?")).contains("no LLM configured"));

    let report = fleet.migrate_under_a_stream_of_notes("talker", "shanghai", 3..33);
    assert_eq!(report["to"], "shanghai");
    // The component stayed put: what crossed is the state blob.
    assert_eq!(report["component_bytes_sent"], 0);
    let state = report["state_bytes"].as_u64().unwrap();
    let wire = report["wire_bytes"].as_u64().unwrap();
    assert!(wire as f64 <= 1.05 * state as f64 + 16384.0, "{report:#}");
    assert!(
        wire * 1000 < component_bytes,
        "{wire} bytes vs an {component_bytes}-byte component"
    );

    let expected: Vec<String> = (0..33).map(|i| format!("note {i}")).collect();
    assert_eq!(
        stdout(&fleet.invoke("talker", "notes")),
        expected.join("\n")
    );
    assert!(stdout(&fleet.invoke("talker", "stats")).starts_with("notes=33 turns=2 "));
    assert_eq!(fleet.host_of("talker").as_deref(), Some("shanghai"));
}

#[test]
fn a_stalled_target_aborts_the_migration_and_a_retry_succeeds() {
    let fleet = LocalFleet::start(3);
    fleet.json(&[
        "push",
        MEMORY_AGENT,
        "--name",
        "steady",
        "--to",
        "beijing",
        "--json",
    ]);
    assert!(
        fleet
            .invoke("steady", "remember kept safe")
            .status
            .success()
    );
    // The target stops answering in the middle of things (SIGSTOP: its
    // sockets stay open, nothing comes back).
    fleet.kill("shanghai", "STOP");
    let out = fleet.run(&["migrate", "steady", "--to", "shanghai"]);
    fleet.kill("shanghai", "CONT");
    let err = one_line_error(&out);
    assert!(
        err.contains("no answer within") || err.contains("unreachable"),
        "{err}"
    );
    // Still on beijing, memory unchanged.
    assert_eq!(stdout(&fleet.invoke("steady", "notes")), "kept safe");
    assert_eq!(fleet.host_of("steady").as_deref(), Some("beijing"));
    // Once shanghai is back, the same migration goes through.
    fleet.wait_for(|ps| {
        ps["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["reachable"] == true)
    });
    let report = fleet.json(&["migrate", "steady", "--to", "shanghai", "--json"]);
    assert_eq!(report["to"], "shanghai");
    assert_eq!(stdout(&fleet.invoke("steady", "notes")), "kept safe");
}

#[test]
fn a_target_killed_in_the_middle_of_the_transfer_leaves_the_agent_serving() {
    let fleet = LocalFleet::start(3);
    // Shanghai already holds the component, so the handoff goes straight
    // to the state.
    fleet.json(&[
        "push",
        MEMORY_AGENT,
        "--name",
        "anchor",
        "--to",
        "shanghai",
        "--json",
    ]);
    fleet.json(&[
        "push",
        MEMORY_AGENT,
        "--name",
        "heavy",
        "--to",
        "beijing",
        "--json",
    ]);
    // 14 MiB of notes: a state that takes a while to cross.
    let note = fleet.dir.path().join("note.txt");
    std::fs::write(&note, format!("remember {}", "m".repeat(1 << 20))).unwrap();
    for _ in 0..14 {
        let out = fleet.run(&["invoke", "heavy", "--input-file", note.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let before = stdout(&fleet.invoke("heavy", "stats"));
    assert!(before.starts_with("notes=14 "), "{before}");

    let beijing = host_addr(&fleet, "beijing");
    let migrate = edgehost_cmd()
        .args(["migrate", "heavy", "--to", "shanghai"])
        .env("EDGEHOST_CLIENT_CONFIG", fleet.client_config())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The owner says the handoff started; the state is in flight soon after.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let ps = fleet.json(&["ps", "--json", "--via", &beijing]);
        if named(&ps, "agents", "heavy").is_some_and(|a| a["status"] == "migrating") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the migration never started: {ps:#}"
        );
    }
    std::thread::sleep(Duration::from_millis(100));
    fleet.kill("shanghai", "9");
    let out = migrate.wait_with_output().unwrap();
    let err = one_line_error(&out);
    // The kill landed in the pre-copy, with the state blob on its way.
    assert!(err.contains("pre-copy of the state failed"), "{err}");
    assert!(err.contains("still serves here"), "{err}");
    // Still on beijing, every note intact, serving.
    assert_eq!(stdout(&fleet.invoke("heavy", "stats")), before);
    assert_eq!(fleet.host_of("heavy").as_deref(), Some("beijing"));
    // Shanghai comes back with nothing of the aborted handoff, and the
    // same migration goes through.
    let _shanghai = Reaped(fleet.restart("shanghai"));
    let report = fleet.json(&["migrate", "heavy", "--to", "shanghai", "--json"]);
    assert_eq!(report["to"], "shanghai");
    assert_eq!(stdout(&fleet.invoke("heavy", "stats")), before);
    assert_eq!(fleet.host_of("heavy").as_deref(), Some("shanghai"));
}

#[test]
fn a_source_killed_after_the_commit_never_serves_the_agent_again() {
    let fleet = LocalFleet::start(3);
    fleet.json(&[
        "push",
        MEMORY_AGENT,
        "--name",
        "nomad",
        "--to",
        "beijing",
        "--json",
    ]);
    assert!(
        fleet
            .invoke("nomad", "remember first home")
            .status
            .success()
    );
    fleet.json(&["migrate", "nomad", "--to", "shanghai", "--json"]);
    fleet.kill("beijing", "9");
    assert_eq!(stdout(&fleet.invoke("nomad", "notes")), "first home");
    let _beijing = Reaped(fleet.restart("beijing"));
    // The restarted source lists no agent and routes calls to the new owner.
    let ps = fleet.ps();
    let nomads: Vec<&Value> = ps["agents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["name"] == "nomad")
        .collect();
    assert_eq!(nomads.len(), 1, "{ps:#}");
    assert_eq!(nomads[0]["host"], "shanghai");
    let out = fleet.run(&[
        "invoke",
        "nomad",
        "--input",
        "notes",
        "--json",
        "--via",
        &host_addr(&fleet, "beijing"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["host"].as_str(), v["response"].as_str()),
        (Some("shanghai"), Some("first home"))
    );
}

#[test]
fn fifty_acknowledged_writes_survive_a_kill_9_at_once() {
    let fleet = LocalFleet::start(2);
    fleet.json(&[
        "push",
        MEMORY_AGENT,
        "--name",
        "phoenix",
        "--to",
        "shanghai",
        "--json",
    ]);
    for i in 0..50 {
        let out = fleet.invoke("phoenix", &format!("remember life {i}"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(stdout(&out), format!("noted #{}", i + 1));
    }
    // No pause: the last answer came back, so its write is on disk.
    fleet.kill("shanghai", "9");
    fleet.wait_for_host("shanghai", false);
    let _shanghai = Reaped(fleet.restart("shanghai"));
    let ps =
        fleet.wait_for(|ps| named(ps, "agents", "phoenix").is_some_and(|a| a["reachable"] == true));
    assert_eq!(named(&ps, "agents", "phoenix").unwrap()["host"], "shanghai");
    let expected: Vec<String> = (0..50).map(|i| format!("life {i}")).collect();
    assert_eq!(
        stdout(&fleet.invoke("phoenix", "notes")),
        expected.join("\n")
    );
}

#[test]
fn a_source_killed_in_the_middle_of_a_migration_loses_no_acknowledged_write() {
    let fleet = LocalFleet::start(2);
    fleet.json(&[
        "push",
        MEMORY_AGENT,
        "--name",
        "anchor",
        "--to",
        "shanghai",
        "--json",
    ]);
    fleet.json(&[
        "push",
        MEMORY_AGENT,
        "--name",
        "runner",
        "--to",
        "beijing",
        "--json",
    ]);
    // 8 MiB of notes, so the pre-copy takes a while, then a stream of
    // small writes, one CLI process after another, through shanghai.
    let note = fleet.dir.path().join("note.txt");
    std::fs::write(&note, format!("remember {}", "m".repeat(1 << 20))).unwrap();
    for _ in 0..8 {
        let out = fleet.run(&["invoke", "runner", "--input-file", note.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let shanghai = host_addr(&fleet, "shanghai");
    let client_config = fleet.client_config();
    let via = shanghai.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = stop.clone();
    let stream = std::thread::spawn(move || {
        let mut acknowledged = Vec::new();
        for i in 0..400 {
            if stopped.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            let out = edgehost_cmd()
                .args(["invoke", "runner", "--input", &format!("remember w{i}")])
                .args(["--via", &via])
                .env("EDGEHOST_CLIENT_CONFIG", &client_config)
                .output()
                .unwrap();
            if out.status.success() {
                acknowledged.push(format!("w{i}"));
            }
        }
        acknowledged
    });
    std::thread::sleep(Duration::from_millis(300));
    let beijing = host_addr(&fleet, "beijing");
    let migrate = edgehost_cmd()
        .args(["migrate", "runner", "--to", "shanghai", "--via", &beijing])
        .env("EDGEHOST_CLIENT_CONFIG", fleet.client_config())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let ps = fleet.json(&["ps", "--json", "--via", &beijing]);
        if named(&ps, "agents", "runner").is_some_and(|a| a["status"] != "serving") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the migration never started: {ps:#}"
        );
    }
    std::thread::sleep(Duration::from_millis(50));
    fleet.kill("beijing", "9");
    let _ = migrate.wait_with_output().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acknowledged = stream.join().unwrap();
    assert!(!acknowledged.is_empty(), "no write was acknowledged");

    // Wherever the kill landed, beijing comes back, and exactly one host
    // serves the agent with every acknowledged write.
    let _beijing = Reaped(fleet.restart("beijing"));
    let deadline = Instant::now() + Duration::from_secs(20);
    let ps = loop {
        let ps = fleet.ps();
        let serving: Vec<&Value> = ps["agents"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["name"] == "runner")
            .collect();
        if serving.len() == 1 && serving[0]["reachable"] == true {
            break ps;
        }
        assert!(Instant::now() < deadline, "not exactly one owner: {ps:#}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let owners = ps["agents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["name"] == "runner")
        .count();
    assert_eq!(owners, 1, "{ps:#}");
    let notes = stdout(&fleet.invoke("runner", "notes"));
    for w in &acknowledged {
        assert!(
            notes.lines().any(|l| l == w),
            "acknowledged {w} is lost ({} acknowledged)",
            acknowledged.len()
        );
    }
}

fn host_addr(fleet: &LocalFleet, host: &str) -> String {
    let ps = fleet.ps();
    named(&ps, "hosts", host).unwrap()["addr"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn a_client_moving_past_the_hop_threshold_draws_its_agent_when_it_pays() {
    // A long horizon: the latency saved over many requests pays for a move.
    let fleet = LocalFleet::start_with(4, &["--alm-horizon", "1000"]);
    fleet.json(&[
        "push",
        MEMORY_AGENT,
        "--name",
        "companion",
        "--to",
        "beijing",
        "--json",
    ]);
    assert!(
        fleet
            .invoke("companion", "remember packed for the trip")
            .status
            .success()
    );
    let decided = fleet.json(&[
        "client",
        "attach",
        "singapore",
        "--agent",
        "companion",
        "--json",
    ]);
    let event = &decided.as_array().unwrap()[0];
    // ALM weighs live telemetry too, so the target is whichever host nearer
    // the user pays best (Singapore itself, or Guiyang or Shanghai on the way).
    let decision = event["decision"].as_str().unwrap();
    let target = decision
        .strip_prefix("moved to ")
        .unwrap_or_else(|| panic!("{decided:#}"));
    assert!(
        ["singapore", "guiyang", "shanghai"].contains(&target),
        "{decided:#}"
    );
    assert!(event["net_gain_s"].as_f64().unwrap() > 0.0);
    assert_eq!(fleet.host_of("companion").as_deref(), Some(target));
    assert_eq!(
        stdout(&fleet.invoke("companion", "notes")),
        "packed for the trip"
    );
    assert!(fleet.has_event(|e| e["agent"] == "companion" && e["trigger"] == "user-moved"));
}

#[test]
fn a_client_move_that_does_not_pay_moves_nothing() {
    // No requests expected before the next decision: nothing a move saves
    // can pay for its cost.
    let fleet = LocalFleet::start_with(4, &["--alm-horizon", "0"]);
    fleet.json(&[
        "push",
        MEMORY_AGENT,
        "--name",
        "homebody",
        "--to",
        "beijing",
        "--json",
    ]);
    let decided = fleet.json(&[
        "client",
        "attach",
        "singapore",
        "--agent",
        "homebody",
        "--json",
    ]);
    let event = &decided.as_array().unwrap()[0];
    assert_eq!(event["decision"], "stay", "{decided:#}");
    let reasons = event["reasons"].to_string();
    assert!(reasons.contains("user moved"), "{reasons}");
    assert!(
        reasons.contains("no target with a positive net gain"),
        "{reasons}"
    );
    assert_eq!(fleet.host_of("homebody").as_deref(), Some("beijing"));
}

#[test]
fn fleet_revoke_and_fleet_rotate_work_on_a_running_fleet() {
    let fleet = LocalFleet::start(2);
    let dir = fleet.dir.path();
    let ca = dir.join("ca");
    let ca_arg = ca.to_str().unwrap();
    let laptop = dir.join("laptop");
    let issued = edgehost_cmd()
        .args(["fleet", "issue", "laptop", "--role", "operator", "--ca-dir"])
        .arg(&ca)
        .arg("--out")
        .arg(&laptop)
        .output()
        .unwrap();
    assert!(issued.status.success());
    let ours = std::fs::read_to_string(fleet.client_config()).unwrap();
    let hosts_line = ours.lines().find(|l| l.starts_with("hosts")).unwrap();
    let laptop_config = dir.join("laptop.toml");
    std::fs::write(
        &laptop_config,
        format!(
            "ca = \"ca/ca.pem\"\ncert = \"laptop/laptop.pem\"\nkey = \"laptop/laptop.key\"\n{hosts_line}\n"
        ),
    )
    .unwrap();
    let ps_as_laptop = || {
        edgehost_cmd()
            .args(["ps", "--client-config"])
            .arg(&laptop_config)
            .output()
            .unwrap()
    };
    assert!(ps_as_laptop().status.success());

    // A name the CA never issued: one line, nothing written.
    let err = one_line_error(&fleet.run(&["fleet", "revoke", "nobody", "--ca-dir", ca_arg]));
    assert!(err.contains("nobody"), "{err}");
    assert!(!ca.join("crl.pem").exists());

    let out = fleet.run(&["fleet", "revoke", "laptop", "--ca-dir", ca_arg]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = stdout(&out);
    assert!(printed.contains("revocation list #1"), "{printed}");
    assert_eq!(
        printed.matches("holds revocation list #1").count(),
        2,
        "{printed}"
    );
    assert!(!ps_as_laptop().status.success());
    // The operator who revoked is still welcome.
    assert_eq!(fleet.ps()["hosts"].as_array().unwrap().len(), 2);

    // Rotating a host's certificate: new files, the host keeps serving and
    // its peer keeps reaching it.
    let ps = fleet.ps();
    let name = ps["hosts"][0]["name"].as_str().unwrap().to_owned();
    let config = dir.join(&name).join("host.toml");
    let cert = dir.join(&name).join(format!("{name}.pem"));
    let before = std::fs::read(&cert).unwrap();
    let out = fleet.run(&[
        "fleet",
        "rotate",
        "--config",
        config.to_str().unwrap(),
        "--ca-dir",
        ca_arg,
        "--days",
        "120",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout(&out).contains("valid for 120 days"),
        "{}",
        stdout(&out)
    );
    assert_ne!(std::fs::read(&cert).unwrap(), before);
    std::thread::sleep(Duration::from_secs(1));
    fleet.wait_for(|ps| {
        ps["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h["reachable"] == true)
            .count()
            == 2
    });
}

/// `edgehost model --json` writes what a live fleet measured; `sim --model`
/// prices its plans with that fleet's constants, and says so in the
/// instance it writes.
#[test]
fn the_simulator_prices_plans_with_a_live_fleets_model() {
    let fleet = LocalFleet::start(2);
    let export_source = |model: &Value, host: &str| -> String {
        model["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["name"] == host)
            .and_then(|h| {
                h["figures"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|f| f["name"] == "export")
            })
            .map(|f| f["source"].as_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    // Nothing has been exported yet: the figure is marked as the default.
    let fresh = fleet.json(&["model", "--json"]);
    assert_eq!(export_source(&fresh, "beijing"), "default", "{fresh:#}");
    let defaults = fresh["cost_params"].clone();

    fleet.json(&[
        "push",
        MEMORY_AGENT,
        "--name",
        "m",
        "--to",
        "beijing",
        "--json",
    ]);
    for i in 0..3 {
        assert!(fleet.invoke("m", &format!("remember {i}")).status.success());
    }
    fleet.json(&["migrate", "m", "--to", "shanghai", "--json"]);
    fleet.json(&["migrate", "m", "--to", "beijing", "--json"]);
    // The model is asked through beijing, whose exports price the moves.
    let deadline = Instant::now() + Duration::from_secs(15);
    let model = loop {
        let model = fleet.json(&["model", "--json"]);
        if export_source(&model, "beijing") == "measured" {
            break model;
        }
        assert!(Instant::now() < deadline, "never measured: {model:#}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let measured = model["cost_params"].clone();
    assert_ne!(measured["export_base_s"], defaults["export_base_s"]);
    let snapshot = fleet.dir.path().join("fleet.json");
    std::fs::write(&snapshot, serde_json::to_vec(&model).unwrap()).unwrap();

    let sim = |extra: &[&str], out: &str| -> Value {
        let out_dir = fleet.dir.path().join(out);
        let mut args = vec!["sim", "--servers", "4", "--tasks", "3", "--json", "--out"];
        args.push(out_dir.to_str().unwrap());
        args.extend_from_slice(extra);
        let run = fleet.run(&args);
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let instance = std::fs::read(out_dir.join("instance.json")).unwrap();
        serde_json::from_slice(&instance).unwrap()
    };
    let priced = sim(&["--model", snapshot.to_str().unwrap()], "with-model");
    assert_eq!(priced["params"], measured);
    let plain = sim(&[], "without");
    assert_eq!(plain["params"], defaults);

    // A file that is not a snapshot is refused with one line.
    let broken = fleet.dir.path().join("broken.json");
    std::fs::write(&broken, br#"{"via":"beijing"}"#).unwrap();
    let out = fleet.run(&["sim", "--model", broken.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(one_line_error(&out).contains("has no cost_params"));
}
