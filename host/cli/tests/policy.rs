//! `edgehost policy check` and `edgehost sim` with policy plugins, end to
//! end: what a plugin author types, what they see.

use std::path::Path;
use std::process::{Command, Output};

use edgehost_tests::{BUILTIN_POLICY, HOSTILE_POLICY, LATENCY_FIRST_POLICY, MEMORY_AGENT};

fn edgehost(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edgehost"))
        .args(args)
        .env(
            "EDGEHOST_CACHE_DIR",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("policy-cli-cache"),
        )
        .env_remove("EDGEHOST_LOG")
        .output()
        .expect("edgehost runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The speed budget is for release builds; the tests run the debug binary.
const DEBUG_BUDGET_MS: &str = "20000";

#[test]
fn check_passes_the_builtin_plugin() {
    let o = edgehost(&[
        "policy",
        "check",
        BUILTIN_POLICY,
        "--max-score-ms",
        DEBUG_BUDGET_MS,
    ]);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}\n{}", stderr(&o));
    for check in [
        "component",
        "world",
        "loads",
        "answers",
        "determinism",
        "speed",
        "hostile inputs",
    ] {
        assert!(
            out.lines()
                .any(|l| l.trim_start().starts_with("ok") && l.contains(check)),
            "{check}: {out}"
        );
    }
    assert!(out.contains("edgehost:policy/policy@0.1.0"), "{out}");
    assert!(out.contains("passed: all 7 checks"), "{out}");
}

#[test]
fn check_fails_a_plugin_that_answers_nan() {
    let o = edgehost(&[
        "policy",
        "check",
        HOSTILE_POLICY,
        "--max-score-ms",
        DEBUG_BUDGET_MS,
    ]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    let answers = out
        .lines()
        .find(|l| l.contains("answers"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(answers.trim_start().starts_with("FAIL"), "{answers}");
    assert!(
        answers.contains("hostile_policy") && answers.contains("NaN"),
        "{answers}"
    );
    assert!(stderr(&o).contains("checks failed"), "{}", stderr(&o));
}

#[test]
fn check_fails_what_is_not_a_policy() {
    let o = edgehost(&["policy", "check", MEMORY_AGENT]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.lines()
            .any(|l| l.trim_start().starts_with("FAIL") && l.contains("not a policy")),
        "{out}"
    );

    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"\0asm\x01\0\0\0").unwrap();
    let o = edgehost(&["policy", "check", junk.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("core WebAssembly module"),
        "{}",
        stdout(&o)
    );

    let o = edgehost(&["policy", "check", "/nonexistent/plugin.wasm"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).starts_with("error: reading"), "{}", stderr(&o));
}

#[test]
fn check_report_as_json() {
    let o = edgehost(&[
        "policy",
        "check",
        LATENCY_FIRST_POLICY,
        "--json",
        "--max-score-ms",
        DEBUG_BUDGET_MS,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["plugin"], "latency_first_policy");
    let items = report["items"].as_array().unwrap();
    assert_eq!(items.len(), 7);
    assert!(items.iter().all(|i| i["passed"] == true), "{report}");
    assert_eq!(report["info"]["kind"], "policy");
}
