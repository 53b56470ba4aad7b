//! A Python agent next to the Rust memory agent: prints one table.
//!
//! Run with `cargo bench -p edgehost-tests --bench python`. Both agents
//! speak the same text protocol (`remember`, `notes`, `stats`); each row is
//! measured the same way for both:
//!
//! - component size;
//! - compile: Cranelift, from the component to the cached artifact (fresh
//!   cache each time);
//! - cached load: hash the component, find and map its artifact;
//! - instantiate: a fresh instance with `describe` and `init`;
//! - handle: `notes` with three notes kept;
//! - state: the blob of those three notes, and `export-state` +
//!   `import-state` into a fresh instance.
//!
//! Migration downtime and bytes on the wire for both are in the fleet bench
//! (`cargo bench -p edgehost-fleet --bench fleet`).

use std::time::{Duration, Instant};

use edgehost_runtime::{AgentComponent, AgentInstance, Runtime, RuntimeBuilder, Services};
use edgehost_tests::{MEMORY_AGENT, PYTHON_DIALOG_AGENT};

fn median(mut f: impl FnMut() -> Duration, n: usize) -> Duration {
    f(); // warm-up
    let mut samples: Vec<Duration> = (0..n).map(|_| f()).collect();
    samples.sort();
    samples[samples.len() / 2]
}

fn fmt(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 1e6 {
        format!("{:.2} s", us / 1e6)
    } else if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.1} µs")
    }
}

fn started(rt: &Runtime, component: &AgentComponent) -> AgentInstance {
    let mut agent = rt
        .instantiate(component, "bench", Services::default())
        .expect("instantiate");
    agent.init(&[]).expect("init");
    agent
}

struct Column {
    size: u64,
    compile: Duration,
    load: Duration,
    instantiate: Duration,
    handle: Duration,
    state_bytes: usize,
    state_roundtrip: Duration,
}

fn measure(path: &str, compiles: usize) -> Column {
    let bytes = std::fs::read(path).expect("component built");
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut compile_samples = Vec::new();
    for i in 0..compiles {
        let rt = RuntimeBuilder::new(dir.path().join(format!("cold-{i}")))
            .build()
            .expect("runtime");
        let start = Instant::now();
        rt.load(&bytes).expect("compile");
        compile_samples.push(start.elapsed());
    }
    compile_samples.sort();

    let rt = RuntimeBuilder::new(dir.path().join("cold-0"))
        .build()
        .expect("runtime");
    let load = median(
        || {
            let start = Instant::now();
            rt.load(&bytes).expect("cached load");
            start.elapsed()
        },
        20,
    );
    let component = rt.load(&bytes).expect("cached load");
    let instantiate = median(
        || {
            let start = Instant::now();
            let agent = started(&rt, &component);
            let elapsed = start.elapsed();
            drop(agent);
            elapsed
        },
        30,
    );
    let mut agent = started(&rt, &component);
    for note in ["the cat is Ada", "the dog is Bo", "the fish is Cy"] {
        agent
            .handle(format!("remember {note}").as_bytes())
            .expect("remember");
    }
    let handle = median(
        || {
            let start = Instant::now();
            agent.handle(b"notes").expect("notes");
            start.elapsed()
        },
        1000,
    );
    let state = agent.export_state().expect("export");
    let mut fresh = started(&rt, &component);
    let state_roundtrip = median(
        || {
            let start = Instant::now();
            let blob = agent.export_state().expect("export");
            fresh.import_state(&blob).expect("import");
            start.elapsed()
        },
        200,
    );
    Column {
        size: bytes.len() as u64,
        compile: compile_samples[compile_samples.len() / 2],
        load,
        instantiate,
        handle,
        state_bytes: state.len(),
        state_roundtrip,
    }
}

fn main() {
    let rust = measure(MEMORY_AGENT, 5);
    let python = measure(PYTHON_DIALOG_AGENT, 3);
    println!("Rust memory agent vs Python dialog agent (release, medians)");
    println!();
    println!(
        "| {:<44} | {:>14} | {:>14} |",
        "", "Rust memory", "Python dialog"
    );
    println!("|{:-<46}|{:->16}|{:->16}|", "", "", "");
    let row = |name: &str, r: String, p: String| println!("| {name:<44} | {r:>14} | {p:>14} |");
    row(
        "component size",
        format!("{:.1} KB", rust.size as f64 / 1e3),
        format!("{:.1} MB", python.size as f64 / 1e6),
    );
    row(
        "compile (Cranelift, to the artifact cache)",
        fmt(rust.compile),
        fmt(python.compile),
    );
    row(
        "cached load (hash + artifact)",
        fmt(rust.load),
        fmt(python.load),
    );
    row(
        "instantiate + describe + init",
        fmt(rust.instantiate),
        fmt(python.instantiate),
    );
    row(
        "handle `notes` (3 notes)",
        fmt(rust.handle),
        fmt(python.handle),
    );
    row(
        "state blob of 3 notes",
        format!("{} B", rust.state_bytes),
        format!("{} B", python.state_bytes),
    );
    row(
        "export-state + import-state (fresh instance)",
        fmt(rust.state_roundtrip),
        fmt(python.state_roundtrip),
    );
}
