//! A fleet of real `edgehost serve` processes on loopback, started by
//! `edgehost up` and driven through the command line, as an operator would.

// Test helpers unwrap freely: a failure is the test failing.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::edgehost_cmd;

/// A fleet started by `edgehost up`, stopped (SIGTERM) when dropped.
pub struct LocalFleet {
    pub dir: tempfile::TempDir,
    pub up: Child,
}

impl LocalFleet {
    pub fn start(hosts: u16) -> Self {
        Self::start_with(hosts, &[])
    }

    pub fn start_with(hosts: u16, extra: &[&str]) -> Self {
        Self::launch(hosts, extra, false)
    }

    /// A fleet whose hosts share an artifact cache of their own, empty at
    /// the start (the others share one across tests).
    pub fn start_cold(hosts: u16) -> Self {
        Self::launch(hosts, &[], true)
    }

    pub fn launch(hosts: u16, extra: &[&str], own_cache: bool) -> Self {
        Self::launch_within(hosts, extra, own_cache, Duration::from_secs(60))
    }

    /// `launch`, allowing `startup` for every host to serve (emulated
    /// hosts start several times slower).
    pub fn launch_within(hosts: u16, extra: &[&str], own_cache: bool, startup: Duration) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut up = edgehost_cmd();
        if own_cache {
            up.env("EDGEHOST_CACHE_DIR", dir.path().join("cache"));
        }
        let up = up
            .args(["up", &hosts.to_string(), "--heartbeat-ms", "200"])
            .args(extra)
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let fleet = LocalFleet { dir, up };
        let deadline = Instant::now() + startup;
        while !fleet.dir.path().join("ready").exists() {
            assert!(Instant::now() < deadline, "the fleet did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        // Let a few heartbeats pass so every host knows every other.
        fleet.wait_for(|ps| {
            ps["hosts"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|h| h["reachable"] == true)
                .count()
                == hosts as usize
        });
        fleet
    }

    pub fn client_config(&self) -> PathBuf {
        self.dir.path().join("client.toml")
    }

    pub fn run(&self, args: &[&str]) -> Output {
        edgehost_cmd()
            .args(args)
            .env("EDGEHOST_CLIENT_CONFIG", self.client_config())
            .output()
            .unwrap()
    }

    /// Whether `edgehost events` lists a decision `matches` accepts.
    pub fn has_event(&self, matches: impl Fn(&Value) -> bool) -> bool {
        let events = self.json(&["events", "--json"]);
        events.as_array().unwrap().iter().any(matches)
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    pub fn ps(&self) -> Value {
        self.json(&["ps", "--json"])
    }

    /// Polls `ps` until `pred` holds (bounded: 15 s).
    pub fn wait_for(&self, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let ps = self.ps();
            if pred(&ps) {
                return ps;
            }
            assert!(
                Instant::now() < deadline,
                "condition never held; last ps: {ps:#}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Polls `ps` until `host` is reported reachable (or not).
    pub fn wait_for_host(&self, host: &str, reachable: bool) -> Value {
        self.wait_for(|ps| named(ps, "hosts", host).is_some_and(|h| h["reachable"] == reachable))
    }

    pub fn pid(&self, host: &str) -> u32 {
        std::fs::read_to_string(self.dir.path().join(host).join("pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    pub fn invoke(&self, agent: &str, input: &str) -> Output {
        self.run(&["invoke", agent, "--input", input])
    }
}

impl Drop for LocalFleet {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.up.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.up.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.up.kill();
        let _ = self.up.wait();
    }
}

/// The entry named `name` in the `list` ("hosts" or "agents") of a
/// `ps --json` answer.
pub fn named<'a>(ps: &'a Value, list: &str, name: &str) -> Option<&'a Value> {
    ps[list].as_array()?.iter().find(|e| e["name"] == name)
}
