//! Runtime benchmarks: prints a table of medians and tails.
//!
//! Run with `cargo bench -p edgehost-tests --bench runtime`. What it measures:
//!
//! - cold start from the on-disk cache: load the compiled artifact, instantiate,
//!   init, first handle — what a host pays to bring an agent back;
//! - instantiate from the pre-linked `InstancePre` (with `describe`);
//! - one `handle` round trip on a tiny request;
//! - `export-state` + `import-state` of a 1 MiB state;
//! - 100 live agents in one host: time to start them and resident memory.

use std::time::{Duration, Instant};

use edgehost_runtime::{Runtime, RuntimeBuilder, Services};
use edgehost_tests::MEMORY_AGENT;

struct Row {
    name: &'static str,
    samples: Vec<Duration>,
    target: &'static str,
}

fn measure(iterations: usize, mut f: impl FnMut() -> Duration) -> Vec<Duration> {
    // Warm up caches and lazily initialised state first.
    for _ in 0..iterations.div_ceil(10) {
        f();
    }
    let mut samples: Vec<Duration> = (0..iterations).map(|_| f()).collect();
    samples.sort();
    samples
}

fn pct(samples: &[Duration], p: f64) -> Duration {
    let idx = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[idx.min(samples.len() - 1)]
}

fn fmt(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.1} µs")
    }
}

fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn main() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let cache = dir.path().join("cache");
    let bytes = std::fs::read(MEMORY_AGENT).expect("memory agent built");
    let mut rows = Vec::new();

    // Compile once so every later load is a cache hit.
    let compile_start = Instant::now();
    let rt = RuntimeBuilder::new(&cache).build().expect("runtime");
    let component = rt.load(&bytes).expect("load");
    let compile = compile_start.elapsed();

    // Cold start: a fresh runtime per sample would also time engine
    // creation; a host has its engine already, so only the load is fresh.
    rows.push(Row {
        name: "cold start from cache (load + instantiate + init + handle)",
        samples: measure(200, || {
            let start = Instant::now();
            let component = rt.load(&bytes).expect("load");
            let mut agent = rt
                .instantiate(&component, "bench", Services::default())
                .expect("instantiate");
            agent.init(&[]).expect("init");
            agent.handle(b"stats").expect("handle");
            start.elapsed()
        }),
        target: "≤ 1 ms",
    });

    rows.push(Row {
        name: "  of which: load artifact from disk cache",
        samples: measure(200, || {
            let start = Instant::now();
            let _ = rt.load(&bytes).expect("load");
            start.elapsed()
        }),
        target: "",
    });

    rows.push(Row {
        name: "instantiate from InstancePre (+ describe)",
        samples: measure(2000, || {
            let start = Instant::now();
            let agent = rt
                .instantiate(&component, "bench", Services::default())
                .expect("instantiate");
            let elapsed = start.elapsed();
            drop(agent);
            elapsed
        }),
        target: "≤ 50 µs",
    });

    let mut agent = rt
        .instantiate(&component, "bench", Services::default())
        .expect("instantiate");
    agent.init(&[]).expect("init");
    rows.push(Row {
        name: "handle round trip, tiny request",
        samples: measure(20_000, || {
            let start = Instant::now();
            let _ = agent.handle(b"stats").expect("handle");
            start.elapsed()
        }),
        target: "≤ 10 µs",
    });

    // One note of 1 MiB: the state blob is just over 1 MiB.
    let mut big = b"remember ".to_vec();
    big.extend(std::iter::repeat_n(b'm', 1 << 20));
    agent.handle(&big).expect("remember 1 MiB");
    let state_len = agent.export_state().expect("export").len();
    rows.push(Row {
        name: "export-state + import-state, 1 MiB state",
        samples: measure(300, || {
            let start = Instant::now();
            let state = agent.export_state().expect("export");
            agent.import_state(&state).expect("import");
            start.elapsed()
        }),
        target: "≤ 1 ms",
    });
    rows.push(Row {
        name: "  fresh instance + init + import-state, 1 MiB",
        samples: {
            let state = agent.export_state().expect("export");
            measure(100, || {
                let start = Instant::now();
                let mut fresh = rt
                    .instantiate(&component, "bench", Services::default())
                    .expect("instantiate");
                fresh.init(&[]).expect("init");
                fresh.import_state(&state).expect("import");
                start.elapsed()
            })
        },
        target: "",
    });
    drop(agent);

    let (hundred, rss_per_agent) = hundred_agents(&rt, &component);

    println!(
        "edgehost runtime benchmarks (memory agent, {} bytes; compiled once in {})",
        bytes.len(),
        fmt(compile)
    );
    println!("state blob for the 1 MiB rows: {state_len} bytes");
    println!();
    println!(
        "| {:<58} | {:>10} | {:>10} | {:>10} | {:<8} |",
        "what", "p50", "p90", "p99", "target"
    );
    println!(
        "|{:-<60}|{:->12}|{:->12}|{:->12}|{:-<10}|",
        "", "", "", "", ""
    );
    for row in &rows {
        println!(
            "| {:<58} | {:>10} | {:>10} | {:>10} | {:<8} |",
            row.name,
            fmt(pct(&row.samples, 0.5)),
            fmt(pct(&row.samples, 0.9)),
            fmt(pct(&row.samples, 0.99)),
            row.target
        );
    }
    println!();
    println!(
        "100 live agents in one host: started (instantiate + init + handle) in {}; resident memory {} per agent",
        fmt(hundred),
        rss_per_agent.map_or("n/a".to_owned(), |b| format!(
            "{:.1} KiB",
            b as f64 / 1024.0
        ))
    );
}

fn hundred_agents(
    rt: &Runtime,
    component: &edgehost_runtime::AgentComponent,
) -> (Duration, Option<u64>) {
    let rss_before = rss_bytes();
    let start = Instant::now();
    let mut agents = Vec::with_capacity(100);
    for i in 0..100 {
        let mut a = rt
            .instantiate(component, &format!("agent-{i}"), Services::default())
            .expect("instantiate");
        a.init(&[]).expect("init");
        a.handle(b"remember hello").expect("handle");
        agents.push(a);
    }
    let elapsed = start.elapsed();
    for a in agents.iter_mut() {
        assert_eq!(
            a.handle(b"stats").expect("handle"),
            b"notes=1 turns=0 bytes=5"
        );
    }
    let per_agent = match (rss_before, rss_bytes()) {
        (Some(before), Some(after)) => Some(after.saturating_sub(before) / 100),
        _ => None,
    };
    (elapsed, per_agent)
}
