//! `edgehost policy check` and `edgehost sim` with policy plugins, end to
//! end: what a plugin author types, what they see.

use std::path::Path;
use std::process::Command;

mod common;

use common::{edgehost, nested_cargo, stderr, stdout};
use edgehost_tests::{BUILTIN_POLICY, HOSTILE_POLICY, LATENCY_FIRST_POLICY, MEMORY_AGENT};

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
    // A plugin that fails its checks is refused (3), not an error of the tool.
    assert_eq!(o.status.code(), Some(3), "{out}");
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
    assert_eq!(o.status.code(), Some(3), "{out}");
    assert!(
        out.lines().any(|l| l.trim_start().starts_with("FAIL")
            && l.contains("not an edgehost policy plugin: it is an agent")),
        "{out}"
    );
    // The simulator says the same of an agent given as a plugin.
    let o = edgehost(&["sim", "--heuristic", MEMORY_AGENT]);
    assert_ne!(o.status.code(), Some(0));
    let err = stderr(&o);
    assert!(
        err.contains("not an edgehost policy plugin: it is an agent")
            && !err.contains("not an edgehost agent"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"\0asm\x01\0\0\0").unwrap();
    let o = edgehost(&["policy", "check", junk.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        stdout(&o).contains("core WebAssembly module"),
        "{}",
        stdout(&o)
    );

    let o = edgehost(&["policy", "check", "/nonexistent/plugin.wasm"]);
    // Not found.
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

/// The repository's root.
fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .expect("host/cli sits two levels below the root")
}

/// The first fenced block of `lang` in `text` that contains `needle`.
fn fenced_block(text: &str, lang: &str, needle: &str) -> Option<String> {
    let fence = format!("```{lang}");
    let mut rest = text;
    while let Some(start) = rest.find(&fence) {
        let body = &rest[start + fence.len()..];
        let end = body.find("```")?;
        let block = &body[..end];
        if block.contains(needle) {
            // Blocks inside list items are indented; strip the indentation.
            let indent = block
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| l.len() - l.trim_start().len())
                .min()
                .unwrap_or(0);
            return Some(
                block
                    .lines()
                    .map(|l| l.get(indent..).unwrap_or("").to_owned())
                    .collect::<Vec<_>>()
                    .join("\n"),
            );
        }
        rest = &body[end + 3..];
    }
    None
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy's directory");
    for entry in std::fs::read_dir(from).expect("read the template") {
        let entry = entry.expect("read the template");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy a template file");
        }
    }
}

/// `edgehost sim` of AntLLM alone with `scenario` and `policy` flags, which
/// must succeed with no fallback: its objective, plan and policy name.
fn antllm_sim(scenario: &[&str], policy: &[&str]) -> (f64, serde_json::Value, String) {
    let mut args = vec!["sim", "--algorithms", "antllm", "--plans", "--json"];
    args.extend_from_slice(scenario);
    args.extend_from_slice(policy);
    let o = edgehost(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("sim prints JSON");
    assert_eq!(v[0]["fallbacks"], serde_json::json!([]), "{v}");
    (
        v[0]["objective"].as_f64().expect("an objective"),
        v[0]["plan"].clone(),
        v[0]["policy"].as_str().expect("a policy").to_owned(),
    )
}

/// A stranger's plugin: copy the template out of the repository, give it
/// the Cargo.toml that docs/plugins.md gives, build it with the command the
/// page gives, check it, and see it change a simulation.
#[test]
fn a_plugin_copied_from_the_template_builds_checks_and_changes_sim() {
    let root = repo();
    let docs = std::fs::read_to_string(root.join("docs/plugins.md")).unwrap();
    let manifest = fenced_block(&docs, "toml", "edgehost-policy")
        .expect("docs/plugins.md gives a Cargo.toml")
        .replace("$EDGEHOST", root.to_str().unwrap());
    let build = "cargo build --release --target wasm32-wasip2";
    assert!(
        docs.contains(build),
        "docs/plugins.md gives the build command"
    );

    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("my-policy");
    copy_dir(&root.join("plugins/template"), &plugin);
    for file in ["rust-toolchain.toml", "Cargo.lock"] {
        std::fs::copy(root.join(file), plugin.join(file)).unwrap();
    }
    std::fs::write(plugin.join("Cargo.toml"), manifest).unwrap();

    // A target directory that outlives the test, so later runs rebuild only
    // the plugin; the plugin's own directory is fresh every time.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("stranger-target");
    let mut cmd = nested_cargo();
    cmd.current_dir(&plugin)
        .args(build.split_whitespace().skip(1))
        .env("CARGO_TARGET_DIR", &target)
        // Everything is in the local registry cache already.
        .env("CARGO_NET_OFFLINE", "true");
    let out = cmd.output().expect("cargo runs");
    assert!(
        out.status.success(),
        "building the copied template failed:\n{}",
        stderr(&out)
    );
    let wasm = target.join("wasm32-wasip2/release/my_policy.wasm");
    assert!(wasm.is_file(), "{} missing", wasm.display());
    let wasm = wasm.to_str().unwrap();

    let o = edgehost(&["policy", "check", wasm, "--max-score-ms", DEBUG_BUDGET_MS]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("passed: all 7 checks"),
        "{}",
        stdout(&o)
    );

    let sim = |extra: &[&str]| antllm_sim(&[], extra);
    let native = sim(&[]);
    let plugged = sim(&["--heuristic", wasm, "--cost-model", wasm]);
    assert_eq!(native.2, "built-in");
    assert!(plugged.2.starts_with("heuristic "), "{}", plugged.2);
    assert_ne!(
        (native.0, native.1),
        (plugged.0, plugged.1),
        "the plugin changed nothing"
    );
}

#[test]
fn sim_fails_when_the_plugin_fails_and_says_so_in_its_json() {
    // The hostile plugin's NaN heuristic fails every call: the results are
    // the built-in policy's, and a script must not take them for the
    // plugin's.
    let o = edgehost(&[
        "sim",
        "--algorithms",
        "antllm",
        "--json",
        "--heuristic",
        HOSTILE_POLICY,
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        v[0]["policy"].as_str().unwrap().starts_with("heuristic "),
        "{v}"
    );
    assert!(!v[0]["fallbacks"].as_array().unwrap().is_empty(), "{v}");
    let err = stderr(&o);
    assert!(
        err.contains("the policy plugin failed in 1 of 1 decisions"),
        "{err}"
    );
}

/// A stranger's Python plugin: copy the Python template out of the
/// repository, build it with the command docs/plugins.md gives, check it
/// with the budget the page gives, and see it change a simulation.
#[test]
fn a_python_plugin_copied_from_the_template_builds_checks_and_changes_sim() {
    let root = repo();
    let docs = std::fs::read_to_string(root.join("docs/plugins.md")).unwrap();
    let build = "$EDGEHOST/plugins/python/build.py my-policy -o my-policy.wasm";
    assert!(
        docs.contains(build),
        "docs/plugins.md gives the build command"
    );
    assert!(
        docs.contains("edgehost policy check my-policy.wasm --max-score-ms 1000"),
        "docs/plugins.md gives the check command"
    );

    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("my-policy");
    copy_dir(&root.join("plugins/python/template"), &plugin);
    let wasm = dir.path().join("my-policy.wasm");
    let out = Command::new("python3")
        .arg(root.join("plugins/python/build.py"))
        .arg(&plugin)
        .arg("-o")
        .arg(&wasm)
        .args(["--componentize-py", edgehost_tests::COMPONENTIZE_PY_TOOL])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "building the copied Python template failed:\n{}",
        stderr(&out)
    );
    let wasm = wasm.to_str().unwrap();

    // The budget is for release builds and a warm machine; the debug
    // binary gets the Rust tests' generous one.
    let o = edgehost(&["policy", "check", wasm, "--max-score-ms", DEBUG_BUDGET_MS]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("passed: all 7 checks"),
        "{}",
        stdout(&o)
    );

    // The page's own example: six servers, three tasks.
    assert!(docs.contains(
        "edgehost sim --algorithms antllm --servers 6 --tasks 3 --heuristic my-policy.wasm"
    ));
    let sim = |extra: &[&str]| antllm_sim(&["--servers", "6", "--tasks", "3"], extra);
    let native = sim(&[]);
    let plugged = sim(&["--heuristic", wasm, "--cost-model", wasm]);
    assert_ne!(
        native.1, plugged.1,
        "the Python plugin changed no placement"
    );
    assert!(plugged.0 > 0.0);
}
