//! The `edgehost` binary end to end: what a user types, what they see.

// Test helpers unwrap freely: a failure is the test failing.
#![allow(clippy::unwrap_used)]

mod common;

use common::{assert_one_line_error, edgehost, edgehost_cmd, stderr, stdout};
use edgehost_tests::{HOSTILE_AGENT, MEMORY_AGENT, PYTHON_DIALOG_AGENT, PYTHON_FAULTY_AGENT};

#[test]
fn version_and_help_on_every_command() {
    let o = edgehost(&["--version"]);
    assert!(o.status.success());
    assert_eq!(
        stdout(&o).trim(),
        format!("edgehost {}", env!("CARGO_PKG_VERSION"))
    );
    for cmd in [
        &["--help"][..],
        &["inspect", "--help"],
        &["run", "--help"],
        &["status", "--help"],
    ] {
        let o = edgehost(cmd);
        assert!(o.status.success(), "{cmd:?}");
        assert!(
            stdout(&o).contains("Usage: edgehost"),
            "{cmd:?}: {}",
            stdout(&o)
        );
    }
}

#[test]
fn inspect_describes_an_agent() {
    let o = edgehost(&["inspect", "--json", MEMORY_AGENT]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON on stdout");
    assert_eq!(v["kind"], "agent");
    assert_eq!(v["world"], "edgehost:agent/agent");
    assert_eq!(v["version"], "0.1.0");
    assert_eq!(v["size"], std::fs::metadata(MEMORY_AGENT).unwrap().len());
    assert!(v["digest"].as_str().unwrap().starts_with("sha256:"));
    let exports = v["exports"].as_array().unwrap();
    assert!(exports.iter().any(|e| e == "edgehost:agent/guest@0.1.0"));
    let imports = v["imports"].as_array().unwrap();
    assert!(imports.iter().any(|e| e == "edgehost:agent/host@0.1.0"));

    // The agent's own declaration, from its `describe`.
    assert_eq!(v["declaration"]["kind"], "memory", "{v}");
    assert!(v["declaration"]["demand"]["memory_mib"].as_u64().unwrap() > 0);
    assert_eq!(v["declaration_error"], serde_json::Value::Null);

    let o = edgehost(&["inspect", MEMORY_AGENT]);
    assert!(o.status.success());
    let text = stdout(&o);
    assert!(
        text.starts_with(
            "component:         agent (world edgehost:agent/agent, contract version 0.1.0)\n"
        ),
        "{text}"
    );
    assert!(text.contains("\nagent kind:        memory\n"), "{text}");
    assert!(text.contains("\ndependencies:      none\n"), "{text}");
}

#[test]
fn inspect_and_run_refuse_bad_files_on_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"\x7fELF this is not wasm").unwrap();
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let other_world = dir.path().join("empty-component.wasm");
    std::fs::write(&other_world, b"\0asm\x0d\0\x01\0").unwrap();
    let missing = dir.path().join("missing.wasm");

    for verb in ["inspect", "run"] {
        let o = edgehost(&[verb, garbage.to_str().unwrap()]);
        assert_one_line_error(&o, 2, "not a WebAssembly file");
        let o = edgehost(&[verb, core.to_str().unwrap()]);
        assert_one_line_error(&o, 2, "core WebAssembly module");
        let o = edgehost(&[verb, other_world.to_str().unwrap()]);
        let needle = if verb == "inspect" {
            "another world"
        } else {
            "edgehost:agent/guest"
        };
        assert_one_line_error(&o, 2, needle);
        let o = edgehost(&[verb, missing.to_str().unwrap()]);
        assert_one_line_error(&o, 1, "missing.wasm");
    }
}

#[test]
fn wrong_flags_exit_2_on_one_line() {
    for args in [
        &["inspect", "--bogus"][..],
        &["run"],
        &["run", MEMORY_AGENT, "--timeout-ms", "soon"],
        &["run", MEMORY_AGENT, "--config", "novalue"],
        &["frobnicate"],
    ] {
        let o = edgehost(args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err:?}");
        assert!(err.starts_with("error: "), "{err:?}");
    }
    // A mistyped flag gets clap's suggestion, on the same line.
    let o = edgehost(&["run", MEMORY_AGENT, "--inptu", "x"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err:?}");
    assert!(
        err.contains("tip: a similar argument exists: '--input'"),
        "{err:?}"
    );
}

#[test]
fn completions_load_in_bash_and_man_pages_cover_every_command() {
    let out = edgehost(&["completions", "bash"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("edgehost.bash");
    std::fs::write(&script, &out.stdout).unwrap();
    // The script loads, registers a completion for edgehost, and completes
    // a subcommand from its first letters.
    let check = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {} && complete -p edgehost && COMP_WORDS=(edgehost mig) COMP_CWORD=1 \
             && _edgehost edgehost mig edgehost && echo \"${{COMPREPLY[@]}}\"",
            script.display()
        ))
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", stderr(&check));
    let text = stdout(&check);
    assert!(text.contains("-F _edgehost edgehost"), "{text}");
    assert!(
        text.lines().last().unwrap_or("").contains("migrate"),
        "{text}"
    );

    let out = edgehost(&["completions", "zsh"]);
    assert!(
        stdout(&out).starts_with("#compdef edgehost"),
        "{}",
        stdout(&out)
    );
    assert_one_line_error(
        &edgehost(&["completions", "tcsh"]),
        2,
        "invalid value 'tcsh'",
    );

    let out = edgehost(&["man"]);
    assert!(stdout(&out).contains(".TH edgehost 1"), "{}", stdout(&out));
    let pages = dir.path().join("man");
    let out = edgehost(&["man", "--out", pages.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    for command in ["push", "migrate", "policy", "serve", "completions"] {
        let page = std::fs::read_to_string(pages.join(format!("edgehost-{command}.1"))).unwrap();
        assert!(
            page.contains(&format!(".TH edgehost-{command} 1")),
            "{page}"
        );
    }
}

#[test]
fn run_reads_its_request_from_stdin_when_given_none() {
    use std::io::Write as _;
    let mut child = edgehost_cmd()
        .args(["run", MEMORY_AGENT])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"remember the sky is blue")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "noted #1", "{}", stdout(&o));
}

#[test]
fn run_carries_state_through_files() {
    assert_runs_carry_state(MEMORY_AGENT);
}

/// A run of `agent` given a garbage state file fails on one line that
/// mentions `needle`, and writes no state.
fn assert_garbage_state_is_refused(agent: &str, needle: &str) {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.state");
    std::fs::write(&bad, b"garbage").unwrap();
    let out = dir.path().join("out.state");
    let o = edgehost(&[
        "run",
        agent,
        "--state-in",
        bad.to_str().unwrap(),
        "--input",
        "notes",
        "--state-out",
        out.to_str().unwrap(),
    ]);
    assert_one_line_error(&o, 2, needle);
    assert!(!out.exists(), "a failed run writes no state");
}

/// Two runs of `agent`, each a fresh instance, keep a note each and carry
/// the memory through state files; a third, reading its request from a
/// file, lists both notes.
fn assert_runs_carry_state(agent: &str) {
    let dir = tempfile::tempdir().unwrap();
    let s1 = dir.path().join("s1.state");
    let s2 = dir.path().join("s2.state");
    let o = edgehost(&[
        "run",
        agent,
        "--config",
        "max-turns=4",
        "--input",
        "remember blue door",
        "--state-out",
        s1.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "noted #1\n");

    let o = edgehost(&[
        "run",
        agent,
        "--state-in",
        s1.to_str().unwrap(),
        "--input",
        "remember red roof",
        "--state-out",
        s2.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "noted #2\n");

    let input = dir.path().join("request.txt");
    std::fs::write(&input, "notes").unwrap();
    let o = edgehost(&[
        "run",
        agent,
        "--state-in",
        s2.to_str().unwrap(),
        "--input-file",
        input.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "blue door\nred roof\n");
}

#[test]
fn run_reports_bad_state_and_hostile_agents_on_one_line() {
    assert_garbage_state_is_refused(MEMORY_AGENT, "invalid state");

    let o = edgehost(&[
        "run",
        HOSTILE_AGENT,
        "--input",
        "loop",
        "--timeout-ms",
        "150",
    ]);
    assert_one_line_error(&o, 2, "ran past its 150 ms deadline");
    let o = edgehost(&["run", HOSTILE_AGENT, "--input", "bomb"]);
    assert_one_line_error(&o, 2, "above its 48 MiB cap");
}

#[test]
fn a_python_agent_is_inspected_and_run_like_any_other() {
    let o = edgehost(&["inspect", "--json", PYTHON_DIALOG_AGENT]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["kind"], "agent");
    assert_eq!(v["world"], "edgehost:agent/agent");

    assert_runs_carry_state(PYTHON_DIALOG_AGENT);

    assert_garbage_state_is_refused(
        PYTHON_DIALOG_AGENT,
        "invalid state: not a Python agent state blob",
    );
    // A Python exception is the agent's error, with the Python message.
    let o = edgehost(&["run", PYTHON_FAULTY_AGENT, "--input", "keyerror"]);
    assert_one_line_error(&o, 2, "KeyError: 'missing'");
}

#[test]
fn a_reader_that_goes_away_ends_the_command_quietly() {
    // As in `edgehost inspect FILE | head -1`: the pipe closes before the
    // command writes.
    let mut child = edgehost_cmd()
        .args(["inspect", MEMORY_AGENT])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(141), "{}", stderr(&out));
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
}

#[test]
fn status_reports_this_machine() {
    let o = edgehost(&["status", "--json", "--sample-ms", "200"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["arch"], std::env::consts::ARCH);
    assert!(v["cpu_cores"].as_u64().unwrap() >= 1);
    assert!(v["memory_total_bytes"].as_u64().unwrap() > 0);
    assert!(v["net_rx_bytes_per_sec"].as_f64().is_some());
}

#[test]
fn exit_codes_tell_unreachable_and_bad_names_apart() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    let ca_str = ca.to_str().unwrap();
    assert!(edgehost(&["fleet", "init", ca_str]).status.success());
    let issued = edgehost(&[
        "fleet", "issue", "ops", "--role", "operator", "--ca-dir", ca_str,
    ]);
    assert!(issued.status.success(), "{}", stderr(&issued));
    // A port nothing listens on: no host of the fleet answers.
    let config = dir.path().join("client.toml");
    std::fs::write(
        &config,
        "ca = \"ca/ca.pem\"\ncert = \"ca/ops.pem\"\nkey = \"ca/ops.key\"\nhosts = [\"127.0.0.1:9\"]\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let o = edgehost(&["ps", "--client-config", config]);
    assert_one_line_error(&o, 4, "127.0.0.1:9");

    // A name that breaks the naming rule is refused before anything is
    // sent, like a wrong flag.
    let long = "a".repeat(10_000);
    for bad in ["../x", "/etc/passwd", "a/b", "", "Upper", long.as_str()] {
        let o = edgehost(&["invoke", bad, "--input", "x", "--client-config", config]);
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("not a valid name"),
            "{bad:?}: {}",
            stderr(&o)
        );
        let o = edgehost(&["migrate", "memory", "--to", bad, "--client-config", config]);
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {}", stderr(&o));
    }
}
