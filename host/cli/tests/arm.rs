//! A mixed fleet on one machine: an x86_64 host and an aarch64 host (the
//! cross-built edgehost under qemu-user), with an agent crossing between
//! them with its state, and only its state once both hold the component.
//!
//! Needs `qemu-aarch64` and the aarch64 cross toolchain (the README's
//! set-up); the aarch64 build of edgehost is made here when CI has not
//! made it already.

// An x86_64 machine emulating the ARM host; building on ARM and emulating
// x86 is the README's other direction, not exercised here.
#![cfg(target_arch = "x86_64")]
// Test helpers unwrap freely: a failure is the test failing.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

mod common;

use common::fleet::{LocalFleet, named};
use common::nested_cargo;
use edgehost_tests::MEMORY_AGENT;
use serde_json::Value;

/// The cross-built aarch64 edgehost: `EDGEHOST_ARM_BINARY` (CI builds it
/// once in a cached directory), else built here into `target/aarch64`
/// (minutes the first time, seconds after).
fn arm_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("EDGEHOST_ARM_BINARY") {
        return PathBuf::from(path);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .unwrap();
    let target_dir = root.join("target").join("aarch64");
    let mut cargo = nested_cargo();
    cargo
        .current_dir(root)
        .args([
            "build",
            "--locked",
            "--target",
            "aarch64-unknown-linux-gnu",
            "-p",
            "edgehost",
        ])
        .arg("--target-dir")
        .arg(&target_dir);
    let out = cargo.output().expect("cargo runs");
    assert!(
        out.status.success(),
        "cross-building edgehost for aarch64 failed; it needs `rustup target add aarch64-unknown-linux-gnu` \
         and, on Debian, `apt install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user`:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    target_dir.join("aarch64-unknown-linux-gnu/debug/edgehost")
}

/// `edgehost status --json` of the aarch64 build, under qemu-aarch64.
#[test]
fn the_arm_build_reports_aarch64_under_emulation() {
    let out = Command::new("qemu-aarch64")
        .args(["-L", "/usr/aarch64-linux-gnu"])
        .arg(arm_binary())
        .args(["status", "--json"])
        .output()
        .expect("qemu-aarch64 runs (apt install qemu-user)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["arch"], "aarch64", "{status}");
    assert!(status["cpu_cores"].as_u64().unwrap() >= 1, "{status}");
}

/// Push to the ARM host, invoke; migrate to x86, invoke; migrate back,
/// invoke. The state is checked at every step, and after the component's
/// one upload to the x86 host only state crosses the wire.
#[test]
fn an_agent_moves_between_arm_and_x86_with_its_state() {
    let binary = arm_binary();
    let fleet = LocalFleet::launch_within(
        2,
        &["--arm", "1", "--arm-binary", binary.to_str().unwrap()],
        true,
        Duration::from_secs(180),
    );
    let ps = fleet.ps();
    assert_eq!(
        named(&ps, "hosts", "beijing").unwrap()["arch"],
        std::env::consts::ARCH
    );
    assert_eq!(named(&ps, "hosts", "shanghai").unwrap()["arch"], "aarch64");

    // 1. On the ARM host.
    fleet.json(&[
        "push",
        MEMORY_AGENT,
        "--name",
        "crosser",
        "--to",
        "shanghai",
        "--json",
    ]);
    for note in ["one", "two"] {
        let o = fleet.invoke("crosser", &format!("remember {note}"));
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    assert_eq!(text(&fleet.invoke("crosser", "notes")), "one\ntwo");

    // 2. To x86: the component goes once, with the state.
    let there = fleet.json(&["migrate", "crosser", "--to", "beijing", "--json"]);
    assert_eq!(
        (there["from"].as_str(), there["to"].as_str()),
        (Some("shanghai"), Some("beijing"))
    );
    assert_eq!(
        there["component_bytes_sent"],
        std::fs::metadata(MEMORY_AGENT).unwrap().len()
    );
    state_only(&there);
    assert_eq!(text(&fleet.invoke("crosser", "notes")), "one\ntwo");
    assert!(fleet.invoke("crosser", "remember three").status.success());

    // 3. Back to ARM: both hold the component now, so only state moves.
    let back = fleet.json(&["migrate", "crosser", "--to", "shanghai", "--json"]);
    assert_eq!(back["component_bytes_sent"], 0);
    state_only(&back);
    assert_eq!(text(&fleet.invoke("crosser", "notes")), "one\ntwo\nthree");

    // An agent that declares it needs aarch64: placed on the ARM host
    // without being told, refused by the x86 host, on one line, and left
    // serving where it is.
    let arm_only = fleet.dir.path().join("arm-only.wasm");
    std::fs::write(
        &arm_only,
        edgehost_tests::with_custom_section(
            &std::fs::read(MEMORY_AGENT).unwrap(),
            edgehost_runtime::REQUIRES_ARCH_SECTION,
            b"aarch64",
        ),
    )
    .unwrap();
    let arm_only = arm_only.to_str().unwrap();
    let placed = fleet.json(&["push", arm_only, "--name", "arm-only", "--auto", "--json"]);
    assert_eq!(placed["host"], "shanghai", "{placed}");
    assert!(fleet.invoke("arm-only", "remember on arm").status.success());
    let refused = fleet.run(&["migrate", "arm-only", "--to", "beijing"]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("the agent requires aarch64; host beijing is x86_64")
            && err.trim().lines().count() == 1,
        "{err}"
    );
    assert_eq!(text(&fleet.invoke("arm-only", "notes")), "on arm");
    let refused = fleet.run(&["push", arm_only, "--name", "arm-too", "--to", "beijing"]);
    assert_eq!(refused.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains("the agent requires aarch64; host \"beijing\" is x86_64"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // The two hosts share one cache directory: each compiled the agent for
    // its own architecture, under its own name, and loads only that one.
    let cache = fleet.dir.path().join("cache");
    let names: Vec<String> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".cwasm"))
        .collect();
    for arch in ["aarch64", std::env::consts::ARCH] {
        assert!(
            names.iter().any(|n| n.contains(&format!("-{arch}-linux-"))),
            "no {arch} artifact in {names:?}"
        );
    }
}

/// What a migration sent besides the component: the state and the
/// protocol's framing, nothing like a compiled artifact.
fn state_only(report: &Value) {
    let state = report["state_bytes"].as_u64().unwrap();
    let wire = report["wire_bytes"].as_u64().unwrap();
    assert!(state > 0, "{report}");
    assert!(wire as f64 <= 1.05 * state as f64 + 16384.0, "{report}");
}

fn text(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim_end().to_owned()
}
