//! Hibernation on one host, in this process, on loopback: prints a table.
//!
//! Run with `cargo bench -p edgehost-fleet --bench hibernation -- [--memory
//! N] [--python N] [--sample K]` (defaults 1,000, 50 and 200). Deploys N
//! memory agents and N Python dialog agents on one host whose agents
//! hibernate 200 ms after their last call, waits until all of them
//! hibernate, and measures
//! - the process's resident memory before, with every agent hibernating,
//!   and after K of each kind were woken;
//! - the host's own wake-up time (instantiate from the compiled component,
//!   `init`, `import-state`) over K wakes of each kind, p50 and p99;
//! - a warm agent's call, against the same call on a host whose agents
//!   never hibernate.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use edgehost_fleet::client::{call, connect, upload};
use edgehost_fleet::config::HostLimits;
use edgehost_fleet::identity::{Role, init_fleet, issue};
use edgehost_fleet::protocol::{AgentReport, Request, Response};
use edgehost_fleet::tls::endpoint;
use edgehost_fleet::{Credentials, HostConfig};
use edgehost_runtime::Digest;

async fn start(fleet: &Path, name: &str, hibernate_after_ms: u64) -> SocketAddr {
    common::start(HostConfig {
        limits: HostLimits {
            max_agents: 100_000,
            max_hosted: 100_000,
            hibernate_after_ms,
            ..HostLimits::default()
        },
        heartbeat_ms: 100,
        ..common::host_config(fleet, name)
    })
    .await
}

/// This process's resident memory, MiB.
fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn agents(conn: &quinn::Connection) -> Vec<AgentReport> {
    match call(conn, &Request::Status).await.expect("status") {
        Response::Status(r) => r.agents,
        other => panic!("{other:?}"),
    }
}

async fn invoke(conn: &quinn::Connection, name: &str, body: &[u8]) -> Duration {
    let started = Instant::now();
    match call(
        conn,
        &Request::Invoke {
            name: name.parse().expect("a valid name"),
            body: body.to_vec(),
            caller: None,
            hops: 0,
        },
    )
    .await
    .expect("invoke")
    {
        Response::Invoked { .. } => started.elapsed(),
        other => panic!("{other:?}"),
    }
}

/// Deploys `count` agents of the component at `path` as `{prefix}-{i}`.
async fn deploy(conn: &quinn::Connection, path: &str, prefix: &str, count: usize) -> Duration {
    let bytes = std::fs::read(path).expect("component");
    let digest = Digest::of(&bytes);
    upload(conn, digest, &bytes, |_| {}).await.expect("upload");
    let started = Instant::now();
    for i in 0..count {
        call(
            conn,
            &Request::Deploy {
                name: format!("{prefix}-{i}").parse().expect("a valid name"),
                digest,
                config: vec![],
            },
        )
        .await
        .expect("deploy");
    }
    started.elapsed()
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

async fn run() {
    let (memory, python, sample) = (
        arg("--memory", 1000),
        arg("--python", 50),
        arg("--sample", 200),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    init_fleet(&dir.path().join("ca"), "bench").expect("ca");
    let (cert, key) = issue(
        &dir.path().join("ca"),
        &dir.path().join("c"),
        "bench",
        Role::Operator,
    )
    .expect("issue");
    let creds =
        Credentials::load(&dir.path().join("ca").join("ca.pem"), &cert, &key).expect("creds");
    let client = endpoint(&creds, "127.0.0.1:0".parse().expect("addr"), false).expect("endpoint");

    let rss_before = rss_mib();
    let host = start(dir.path(), "sleepy", 200).await;
    let (conn, _) = connect(&client, host).await.expect("connect");
    let memory_took = deploy(&conn, edgehost_tests::MEMORY_AGENT, "m", memory).await;
    let python_took = deploy(&conn, edgehost_tests::PYTHON_DIALOG_AGENT, "p", python).await;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let asleep = agents(&conn)
            .await
            .iter()
            .filter(|a| a.status == "hibernating")
            .count();
        if asleep == memory + python {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{asleep} of {} hibernate",
            memory + python
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rss_asleep = rss_mib();

    // Wake a sample of each kind, one call each, then read the host's own
    // wake-up times.
    let (wake_memory, wake_python) = (sample.min(memory), sample.min(python));
    for i in 0..wake_memory {
        invoke(&conn, &format!("m-{i}"), b"remember woken").await;
    }
    for i in 0..wake_python {
        invoke(&conn, &format!("p-{i}"), b"hello").await;
    }
    let rss_woken = rss_mib();
    let reports = agents(&conn).await;
    let wakes = |prefix: &str| {
        let mut ms: Vec<f64> = reports
            .iter()
            .filter(|a| a.name.as_str().starts_with(prefix))
            .filter_map(|a| a.wake_ms)
            .collect();
        ms.sort_by(f64::total_cmp);
        ms
    };
    let (memory_wakes, python_wakes) = (wakes("m-"), wakes("p-"));

    // A warm call, here and on a host whose agents never sleep.
    let awake = start(dir.path(), "awake", 0).await;
    let (to_awake, _) = connect(&client, awake).await.expect("connect");
    deploy(&to_awake, edgehost_tests::MEMORY_AGENT, "w", 1).await;
    let warm = |conn: quinn::Connection, name: &'static str| async move {
        let mut ms = Vec::new();
        for _ in 0..1000 {
            ms.push(invoke(&conn, name, b"notes").await.as_secs_f64() * 1e3);
        }
        ms.sort_by(f64::total_cmp);
        ms
    };
    let warm_sleepy = warm(conn.clone(), "m-0").await;
    let warm_awake = warm(to_awake.clone(), "w-0").await;

    println!(
        "{memory} memory agents deployed in {:.1} s, {python} Python dialog agents in {:.1} s",
        memory_took.as_secs_f64(),
        python_took.as_secs_f64()
    );
    println!();
    println!("| resident memory of the process | MiB |");
    println!("|---|---:|");
    println!("| before the host started | {rss_before:.0} |");
    println!(
        "| {} agents hosted, all hibernating | {rss_asleep:.0} |",
        memory + python
    );
    println!(
        "| after waking {wake_memory} memory and {wake_python} Python agents | {rss_woken:.0} |"
    );
    println!();
    println!("| wake-up, measured by the host | wakes | p50 | p99 |");
    println!("|---|---:|---:|---:|");
    for (kind, ms) in [
        ("memory (Rust)", &memory_wakes),
        ("Python dialog", &python_wakes),
    ] {
        println!(
            "| {kind} | {} | {:.2} ms | {:.2} ms |",
            ms.len(),
            pct(ms, 0.5),
            pct(ms, 0.99)
        );
    }
    println!();
    println!("| warm call (`notes`), 1,000 calls | p50 | p99 |");
    println!("|---|---:|---:|");
    for (kind, ms) in [
        ("host with hibernation (200 ms)", &warm_sleepy),
        ("host without hibernation", &warm_awake),
    ] {
        println!(
            "| {kind} | {:.3} ms | {:.3} ms |",
            pct(ms, 0.5),
            pct(ms, 0.99)
        );
    }
}
