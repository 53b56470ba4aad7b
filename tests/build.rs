//! Builds the guest components (agents and, later, plugins) for
//! `wasm32-wasip2` so tests and benchmarks can load them, and exposes their
//! paths as constants.
//!
//! The nested cargo uses its own target directory: sharing the outer build's
//! would deadlock on its lock. When nothing changed it finishes in well under
//! a second.

use std::env;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;

/// Guest packages and the constant each one's path is exposed under.
const GUESTS: &[(&str, &str)] = &[
    ("memory-agent", "MEMORY_AGENT"),
    ("hostile-agent", "HOSTILE_AGENT"),
    ("builtin-policy", "BUILTIN_POLICY"),
    ("latency-first-policy", "LATENCY_FIRST_POLICY"),
    ("template-policy", "TEMPLATE_POLICY"),
    ("hostile-policy", "HOSTILE_POLICY"),
];

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .parent()
        .expect("tests/ sits in the workspace")
        .to_owned();
    let target_dir = match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir).join("guests"),
        None => root.join("target").join("guests"),
    };

    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args(["build", "--profile", "guest", "--target", "wasm32-wasip2"])
        .arg("--target-dir")
        .arg(&target_dir);
    for (package, _) in GUESTS {
        cmd.args(["-p", package]);
    }
    // Flags meant for the host build must not leak into the guest build.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .expect("running cargo for the guest components");
    assert!(
        status.success(),
        "building the guest components failed; is the wasm32-wasip2 target installed? (rustup target add wasm32-wasip2)"
    );

    let mut out = String::new();
    for (package, constant) in GUESTS {
        let file = target_dir
            .join("wasm32-wasip2")
            .join("guest")
            .join(format!("{}.wasm", package.replace('-', "_")));
        assert!(file.is_file(), "missing guest artifact {}", file.display());
        writeln!(
            out,
            "/// Path of the `{package}` component, built for wasm32-wasip2.\npub const {constant}: &str = {:?};",
            file.display().to_string()
        )
        .expect("writing to a String");
    }
    let out_file =
        PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("guests.rs");
    std::fs::write(out_file, out).expect("writing guests.rs");

    for dir in ["agents", "plugins", "wit"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    println!(
        "cargo:rerun-if-changed={}",
        root.join("Cargo.lock").display()
    );
}
