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

/// `bytes` (a component or module) with a custom section `name` holding
/// `data` appended: how a build step declares something about a component
/// (`edgehost_runtime::REQUIRES_ARCH_SECTION`, say) without changing its code.
pub fn with_custom_section(bytes: &[u8], name: &str, data: &[u8]) -> Vec<u8> {
    fn leb128(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let mut payload = Vec::new();
    leb128(name.len(), &mut payload);
    payload.extend_from_slice(name.as_bytes());
    payload.extend_from_slice(data);
    let mut out = bytes.to_vec();
    out.push(0); // custom section
    leb128(payload.len(), &mut out);
    out.extend_from_slice(&payload);
    out
}
