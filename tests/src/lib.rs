//! Shared ground for edgehost's scenario tests and benchmarks: the paths of
//! the guest components (built for `wasm32-wasip2` by this crate's build
//! script) and small helpers to load them.
//!
//! The tests themselves live in `tests/tests/`, the benchmarks in
//! `tests/benches/`.

include!(concat!(env!("OUT_DIR"), "/guests.rs"));

use std::path::Path;

use edgehost_runtime::{AgentComponent, Runtime, RuntimeBuilder};

/// A runtime whose artifact cache lives in `dir`.
pub fn runtime_in(dir: &Path) -> Runtime {
    RuntimeBuilder::new(dir.join("cache"))
        .build()
        .expect("runtime starts")
}

/// Loads the component at `path` into `runtime`.
pub fn load(runtime: &Runtime, path: &str) -> AgentComponent {
    runtime
        .load_file(Path::new(path))
        .unwrap_or_else(|e| panic!("loading {path}: {e}"))
}
