//! Builds the guest components (agents and policy plugins) for
//! `wasm32-wasip2` so tests and benchmarks can load them, and exposes their
//! paths as constants.
//!
//! The nested cargo uses its own target directory: sharing the outer build's
//! would deadlock on its lock. When nothing changed it finishes in well under
//! a second.
//!
//! The Python agents (`agents/python`) and policy plugins (`plugins/python`)
//! are built with componentize-py, taken
//! from `EDGEHOST_COMPONENTIZE_PY`, the virtual environment `target/pyenv`,
//! or `PATH`; when none has it, `target/pyenv` is created and
//! componentize-py installed into it from PyPI. Their sources are copied to
//! a staging directory first (componentize-py writes bytecode next to what
//! it reads), and a Python component is rebuilt only when its sources or the WIT
//! change: its builds are not byte-for-byte reproducible, and every new
//! digest costs each host a compile of about 18 MB.

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Python agents (directories of `agents/python`) and their constants.
const PYTHON_GUESTS: &[(&str, &str)] = &[
    ("dialog", "PYTHON_DIALOG_AGENT"),
    ("template", "PYTHON_TEMPLATE_AGENT"),
    ("faulty", "PYTHON_FAULTY_AGENT"),
    ("planner", "PYTHON_PLANNER_AGENT"),
];

/// Python policy plugins (directories of `plugins/python`) and their constants.
const PYTHON_POLICIES: &[(&str, &str)] = &[
    ("builtin", "PYTHON_BUILTIN_POLICY"),
    ("template", "PYTHON_TEMPLATE_POLICY"),
];

/// The Python kits: where the kit lives, its package and its WIT world,
/// and what its builder needs besides.
struct PythonKit {
    dir: &'static str,
    package: &'static str,
    wit: &'static str,
    also: &'static [&'static str],
}

const AGENT_KIT: PythonKit = PythonKit {
    dir: "agents/python",
    package: "edgehost_agent",
    wit: "wit/agent",
    also: &[],
};

const POLICY_KIT: PythonKit = PythonKit {
    dir: "plugins/python",
    package: "edgehost_policy",
    wit: "wit/policy",
    // The policy kit's build.py runs the agent kit's builder.
    also: &["agents/python/build.py"],
};

/// The componentize-py release the kit is written against.
const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";

/// Guest packages and the constant each one's path is exposed under.
const GUESTS: &[(&str, &str)] = &[
    ("memory-agent", "MEMORY_AGENT"),
    ("hostile-agent", "HOSTILE_AGENT"),
    ("cbir-features-agent", "CBIR_FEATURES_AGENT"),
    ("cbir-index-agent", "CBIR_INDEX_AGENT"),
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
    for (agent, constant) in PYTHON_GUESTS {
        let file = build_python(&root, &target_dir, &AGENT_KIT, agent);
        writeln!(
            out,
            "/// Path of the Python `{agent}` agent component, built with componentize-py.\npub const {constant}: &str = {:?};",
            file.display().to_string()
        )
        .expect("writing to a String");
    }
    for (policy, constant) in PYTHON_POLICIES {
        let file = build_python(&root, &target_dir, &POLICY_KIT, policy);
        writeln!(
            out,
            "/// Path of the Python `{policy}` policy plugin, built with componentize-py.\npub const {constant}: &str = {:?};",
            file.display().to_string()
        )
        .expect("writing to a String");
    }

    writeln!(
        out,
        "/// The componentize-py the Python agents were built with.\npub const COMPONENTIZE_PY_TOOL: &str = {:?};",
        componentize_py(&root).display().to_string()
    )
    .expect("writing to a String");

    let out_file =
        PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("guests.rs");
    std::fs::write(out_file, out).expect("writing guests.rs");

    println!("cargo:rerun-if-env-changed=EDGEHOST_COMPONENTIZE_PY");
    // The guests' sources, and the host crate the policy SDK compiles in.
    for dir in ["agents", "plugins", "wit", "host/placement"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    println!(
        "cargo:rerun-if-changed={}",
        root.join("Cargo.lock").display()
    );
}

/// Builds the app `APP` of a Python kit (`agents/python/APP` or
/// `plugins/python/APP`) into `TARGET/python/KIT-APP.wasm`, unless the
/// component there was built from the same sources.
fn build_python(root: &Path, target_dir: &Path, kit: &PythonKit, app: &str) -> PathBuf {
    let out_dir = target_dir.join("python");
    let name = if kit.package == AGENT_KIT.package {
        app.to_owned()
    } else {
        format!("policy-{app}")
    };
    let output = out_dir.join(format!("{name}.wasm"));
    let stamp = out_dir.join(format!("{name}.sources"));
    let stage = out_dir.join(format!("{name}-src"));

    // What the component is built from: the kit, the app, the WIT world
    // and the builder, by path from the workspace root.
    let kit_dir = root.join(kit.dir);
    let mut sources = Vec::new();
    for dir in [
        kit_dir.join(kit.package),
        kit_dir.join(app),
        root.join(kit.wit),
    ] {
        collect_files(&dir, root, &mut sources);
    }
    for file in std::iter::once(format!("{}/build.py", kit.dir))
        .chain(kit.also.iter().map(|f| (*f).to_owned()))
    {
        sources.push((PathBuf::from(&file), read(&root.join(&file))));
    }
    sources.sort();
    let mut fingerprint = format!("{COMPONENTIZE_PY}\n").into_bytes();
    for (path, bytes) in &sources {
        fingerprint.extend_from_slice(format!("{} {}\n", path.display(), bytes.len()).as_bytes());
        fingerprint.extend_from_slice(bytes);
    }
    if output.is_file() && std::fs::read(&stamp).ok().as_deref() == Some(&fingerprint[..]) {
        return output;
    }

    // Stage the sources in the checkout's layout, which build.py expects.
    let _ = std::fs::remove_dir_all(&stage);
    for (path, bytes) in &sources {
        let to = stage.join(path);
        std::fs::create_dir_all(to.parent().expect("a file has a parent")).expect("staging");
        std::fs::write(&to, bytes).expect("staging a Python source");
    }

    let tool = componentize_py(root);
    let status = Command::new("python3")
        .arg(stage.join(kit.dir).join("build.py"))
        .arg(stage.join(kit.dir).join(app))
        .arg("-o")
        .arg(&output)
        .arg("--componentize-py")
        .arg(&tool)
        .status()
        .expect("running python3 for the Python components (is python3 installed?)");
    assert!(
        status.success(),
        "building the Python {name:?} failed (see above)"
    );
    std::fs::write(&stamp, fingerprint).expect("writing the build stamp");
    output
}

/// Every file under `dir`, as (path relative to `base`, contents), skipping
/// bytecode caches.
fn collect_files(dir: &Path, base: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.file_name().is_some_and(|n| n == "__pycache__") {
            continue;
        }
        if path.is_dir() {
            collect_files(&path, base, out);
        } else {
            let relative = path.strip_prefix(base).expect("under base").to_owned();
            out.push((relative, read(&path)));
        }
    }
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The componentize-py to build with, installing it into `target/pyenv`
/// when this machine has none.
fn componentize_py(root: &Path) -> PathBuf {
    if let Some(tool) = env::var_os("EDGEHOST_COMPONENTIZE_PY") {
        return PathBuf::from(tool);
    }
    let venv = root.join("target").join("pyenv");
    let in_venv = venv.join("bin").join("componentize-py");
    if in_venv.is_file() {
        return in_venv;
    }
    let on_path = Command::new("componentize-py")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if on_path {
        return PathBuf::from("componentize-py");
    }
    println!(
        "cargo:warning=installing {COMPONENTIZE_PY} into {}",
        venv.display()
    );
    let created = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        created,
        "could not create {} (install python3 and python3-venv)",
        venv.display()
    );
    let installed = Command::new(venv.join("bin").join("pip"))
        .args(["install", "--quiet", COMPONENTIZE_PY])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        installed,
        "could not install {COMPONENTIZE_PY} into {} (is PyPI reachable?)",
        venv.display()
    );
    in_venv
}
