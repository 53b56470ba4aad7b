//! What the command-line test binaries share: running `edgehost` as a user
//! would, and reading what it printed.

// Each test binary uses its own subset.
#![allow(dead_code)]

pub mod fleet;

use std::path::Path;
use std::process::{Command, Output};

/// `cargo` for a build nested in a test, with none of the outer build's
/// flags or target directory.
pub fn nested_cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// The `edgehost` binary under test, with an artifact cache shared by the
/// test binaries and none of the caller's logging or client settings.
pub fn edgehost_cmd() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_edgehost"));
    cmd.env(
        "EDGEHOST_CACHE_DIR",
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-cache"),
    )
    .env_remove("EDGEHOST_LOG")
    .env_remove("EDGEHOST_CLIENT_CONFIG");
    cmd
}

/// Runs `edgehost ARGS` to completion.
pub fn edgehost(args: &[&str]) -> Output {
    edgehost_cmd().args(args).output().expect("edgehost runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A failure printed exactly one line, `error: ...`; returns it.
pub fn one_line_error(o: &Output) -> String {
    let err = stderr(o);
    assert!(
        !o.status.success(),
        "expected a failure; stdout: {}",
        stdout(o)
    );
    assert_eq!(err.lines().count(), 1, "one line expected: {err:?}");
    assert!(err.starts_with("error: "), "{err:?}");
    err
}

/// A failure printed one line, `error: ...`, mentioning `needle`, and
/// exited with `code`.
pub fn assert_one_line_error(o: &Output, code: i32, needle: &str) {
    assert_eq!(o.status.code(), Some(code), "stderr: {}", stderr(o));
    let err = one_line_error(o);
    assert!(err.contains(needle), "{err:?} should mention {needle:?}");
}
