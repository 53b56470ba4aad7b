//! Fleet benchmarks on loopback: prints a table.
//!
//! Run with `cargo bench -p edgehost-fleet --bench fleet`. Measures
//! - an invoke round trip through the fleet: client -> owning host (QUIC,
//!   mutual TLS, an established connection) -> agent -> back;
//! - the same with one forwarding hop: client -> host A -> owner B -> back;
//! - upload throughput of a 64 MiB component (hash-verified, written to disk);
//! - the mutual-TLS QUIC handshake;
//! - migration downtime and bytes, and how well the calibrated cost model
//!   predicts each part of a move;
//! - durable calls: a write answered once its state is fsynced, against a
//!   read of the same agent, at 64 KiB and 1 MiB, alone and with four
//!   concurrent writers (group commit).

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use edgehost_fleet::calibration::{Move, predict_migration};
use edgehost_fleet::client::{call, connect, upload};
use edgehost_fleet::config::Labels;
use edgehost_fleet::identity::{Role, init_fleet, issue};
use edgehost_fleet::protocol::{AgentName, HostModel, MigrationTimes, Request, Response};
use edgehost_fleet::tls::endpoint;
use edgehost_fleet::{Credentials, HostConfig};
use edgehost_runtime::Digest;

async fn start(fleet: &Path, name: &str, peers: Vec<String>) -> SocketAddr {
    common::start(HostConfig {
        peers,
        ..common::host_config(fleet, name)
    })
    .await
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn fmt(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{us:.1} µs")
    }
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
    let dir = tempfile::tempdir().expect("tempdir");
    init_fleet(&dir.path().join("ca"), "bench").expect("ca");
    let a = start(dir.path(), "alpha", vec![]).await;
    let b = start(dir.path(), "beta", vec![a.to_string()]).await;
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
    let (to_a, _) = connect(&client, a).await.expect("connect");
    let (to_b, _) = connect(&client, b).await.expect("connect");

    let agent = std::fs::read(edgehost_tests::MEMORY_AGENT).expect("memory agent");
    let digest = Digest::of(&agent);
    upload(&to_b, digest, &agent, |_| {}).await.expect("upload");
    call(
        &to_b,
        &Request::Deploy {
            name: "memory".parse().expect("a valid name"),
            digest,
            config: vec![],
        },
    )
    .await
    .expect("deploy");
    // Let alpha learn where the agent runs.
    tokio::time::sleep(Duration::from_millis(800)).await;

    let invoke = Request::Invoke {
        name: "memory".parse().expect("a valid name"),
        body: b"stats".to_vec(),
        caller: None,
        hops: 0,
    };
    let mut rows = Vec::new();
    for (label, conn) in [
        (
            "invoke round trip, client -> owner -> agent -> client",
            &to_b,
        ),
        (
            "invoke with one forward, client -> host -> owner -> back",
            &to_a,
        ),
    ] {
        for _ in 0..200 {
            call(conn, &invoke).await.expect("invoke");
        }
        let mut samples = Vec::with_capacity(3000);
        for _ in 0..3000 {
            let t = Instant::now();
            match call(conn, &invoke).await.expect("invoke") {
                Response::Invoked { .. } => {}
                other => panic!("unexpected {other:?}"),
            }
            samples.push(t.elapsed());
        }
        samples.sort();
        rows.push((label, samples));
    }

    let mut handshakes = Vec::new();
    for _ in 0..100 {
        let t = Instant::now();
        let (c, _) = connect(&client, b).await.expect("connect");
        handshakes.push(t.elapsed());
        c.close(0u32.into(), b"");
    }
    handshakes.sort();
    rows.push((
        "mutual-TLS QUIC handshake (connect + verify identity)",
        handshakes,
    ));

    // Upload: 64 MiB of pseudo-random bytes (the host hashes and stores
    // them; it compiles only on deploy).
    let mut big = vec![0u8; 64 << 20];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for chunk in big.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    let mut throughputs = Vec::new();
    for round in 0..5u8 {
        big[0] = round; // a new digest each round, so every round uploads
        let d = Digest::of(&big);
        let t = Instant::now();
        let sent = upload(&to_b, d, &big, |_| {}).await.expect("upload");
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(sent, big.len() as u64);
        throughputs.push(sent as f64 / (1024.0 * 1024.0) / secs);
    }
    throughputs.sort_by(f64::total_cmp);

    // Migration: the agent moves back and forth between the two hosts,
    // which both hold the component already; calls are held during the
    // handoff, and the state blob is what crosses. "busy" keeps a client
    // writing to the agent throughout, so the state changes between the
    // pre-copy and the quiesce.
    // The Python dialog agent (about 18 MB) on both hosts too.
    let python = std::fs::read(edgehost_tests::PYTHON_DIALOG_AGENT).expect("dialog agent");
    let python_digest = Digest::of(&python);
    for conn in [&to_a, &to_b] {
        upload(conn, python_digest, &python, |_| {})
            .await
            .expect("upload");
    }
    call(
        &to_b,
        &Request::Deploy {
            name: "dialog".parse().expect("a valid name"),
            digest: python_digest,
            config: vec![],
        },
    )
    .await
    .expect("deploy");
    let mut migrations = Vec::new();
    for (agent, label, note_bytes, busy) in [
        ("memory", "64 KiB", 64usize << 10, false),
        ("memory", "1 MiB", 1 << 20, false),
        ("memory", "1 MiB, busy", 1 << 20, true),
        ("dialog", "Py 64 KiB", 64 << 10, false),
        ("dialog", "Py 1 MiB", 1 << 20, false),
    ] {
        call(
            &to_b,
            &Request::Invoke {
                name: agent.parse().expect("a valid name"),
                body: b"forget".to_vec(),
                caller: None,
                hops: 0,
            },
        )
        .await
        .expect("forget");
        let mut note = b"remember ".to_vec();
        note.extend(std::iter::repeat_n(b'n', note_bytes));
        call(
            &to_b,
            &Request::Invoke {
                name: agent.parse().expect("a valid name"),
                body: note,
                caller: None,
                hops: 0,
            },
        )
        .await
        .expect("remember");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = busy.then(|| {
            let (conn, stop) = (to_a.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    let write = Request::Invoke {
                        name: agent.parse().expect("a valid name"),
                        body: format!("remember write {n}").into_bytes(),
                        caller: None,
                        hops: 0,
                    };
                    call(&conn, &write).await.expect("a write during migration");
                }
                n
            })
        });
        let mut reports = Vec::new();
        let mut owner_is_b = true;
        for _ in 0..40 {
            let (conn, to) = if owner_is_b {
                (&to_b, "alpha")
            } else {
                (&to_a, "beta")
            };
            match call(
                conn,
                &Request::Migrate {
                    name: agent.parse().expect("a valid name"),
                    to: to.parse().expect("a valid name"),
                },
            )
            .await
            .expect("migrate")
            {
                Response::Migrated(report) => reports.push(report),
                other => panic!("unexpected {other:?}"),
            }
            owner_is_b = !owner_is_b;
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(writer) = writer {
            let writes = writer.await.expect("writer");
            println!("({label}: {writes} writes answered during its 40 moves)");
        }
        migrations.push((label, reports));
    }

    let durable = durable_calls(&to_b, digest).await;

    println!("edgehost fleet benchmarks (loopback, two hosts in one process, release)");
    println!();
    println!(
        "| {:<56} | {:>10} | {:>10} | {:>10} |",
        "what", "p50", "p90", "p99"
    );
    println!("|{:-<58}|{:->12}|{:->12}|{:->12}|", "", "", "", "");
    for (label, s) in &rows {
        println!(
            "| {:<56} | {:>10} | {:>10} | {:>10} |",
            label,
            fmt(pct(s, 0.5)),
            fmt(pct(s, 0.9)),
            fmt(pct(s, 0.99))
        );
    }
    println!();
    println!(
        "upload of a 64 MiB component (hash-verified, fsynced): median {:.0} MiB/s, min {:.0} MiB/s, max {:.0} MiB/s over 5 rounds",
        throughputs[2], throughputs[0], throughputs[4]
    );
    println!();
    println!(
        "migration of the Rust memory agent and the Python dialog agent (Py; component stored on both hosts; 40 moves each):"
    );
    println!(
        "| {:<11} | {:>12} | {:>12} | {:>11} | {:>11} | {:>11} | {:>16} | {:>11} |",
        "state",
        "downtime p50",
        "downtime p90",
        "state bytes",
        "wire bytes",
        "delta bytes",
        "wire/(state+16K)",
        "blob MiB/s"
    );
    println!(
        "|{:-<13}|{:->14}|{:->14}|{:->13}|{:->13}|{:->13}|{:->18}|{:->13}|",
        "", "", "", "", "", "", "", ""
    );
    for (label, reports) in &migrations {
        let mut downtime: Vec<f64> = reports.iter().map(|r| r.downtime_ms).collect();
        downtime.sort_by(f64::total_cmp);
        let mut rates: Vec<f64> = reports
            .iter()
            .map(|r| {
                r.state_bytes as f64
                    / (1024.0 * 1024.0)
                    / (r.measured_ms.transfer_ms.max(1e-3) / 1e3)
            })
            .collect();
        rates.sort_by(f64::total_cmp);
        let r = &reports[reports.len() / 2];
        let mut deltas: Vec<u64> = reports.iter().map(|r| r.delta_bytes).collect();
        deltas.sort();
        println!(
            "| {:<11} | {:>9.3} ms | {:>9.3} ms | {:>11} | {:>11} | {:>11} | {:>16.3} | {:>11.0} |",
            label,
            downtime[downtime.len() / 2],
            downtime[downtime.len() * 9 / 10],
            r.state_bytes,
            r.wire_bytes,
            deltas[deltas.len() / 2],
            r.wire_bytes as f64 / (1.05 * r.state_bytes as f64 + 16384.0),
            rates[rates.len() / 2],
        );
    }
    println!();
    println!(
        "durable calls (the memory agent; a write is answered once its state is fsynced; reads write nothing):"
    );
    println!(
        "| {:<40} | {:>10} | {:>10} | {:>10} |",
        "call", "p50", "p90", "p99"
    );
    println!("|{:-<42}|{:->12}|{:->12}|{:->12}|", "", "", "", "");
    for (label, s) in &durable {
        println!(
            "| {:<40} | {:>10} | {:>10} | {:>10} |",
            label,
            fmt(pct(s, 0.5)),
            fmt(pct(s, 0.9)),
            fmt(pct(s, 0.99))
        );
    }
    println!();
    println!(
        "eq. 3 as predicted against measured, per move after {WARM_UP} warm-up moves: median measured, median predicted from the hosts' calibration, \
the paper's defaults, the median of |predicted/measured - 1| and the share of moves predicted within ±25%:"
    );
    println!(
        "| {:<11} | {:<10} | {:>12} | {:>12} | {:>12} | {:>10} | {:>10} |",
        "state", "part", "measured", "calibrated", "defaults", "|error|", "within 25%"
    );
    println!(
        "|{:-<13}|{:-<12}|{:->14}|{:->14}|{:->14}|{:->12}|{:->12}|",
        "", "", "", "", "", "", ""
    );
    for (label, reports) in &migrations {
        let measured = reports.iter().skip(WARM_UP);
        let rows: Vec<(&str, Vec<Predicted>)> = (0..5)
            .map(|i| {
                let name = if i < 4 {
                    reports[0].measured_ms.parts()[i].0
                } else {
                    "total"
                };
                let pick = |t: &MigrationTimes| {
                    if i < 4 { t.parts()[i].1 } else { t.total_ms() }
                };
                let triples = measured
                    .clone()
                    .map(|r| {
                        let (defaults, _) = predict_migration(
                            &HostModel::default(),
                            &HostModel::default(),
                            &Move {
                                to: r.to.as_str(),
                                digest: &Digest::of(b""),
                                component_bytes: 0.0,
                                state_bytes: r.state_bytes as f64,
                                agents_on_target: 1,
                                declared_mbps: Labels::default().bandwidth_mbps,
                            },
                        );
                        (pick(&r.measured_ms), pick(&r.predicted_ms), pick(&defaults))
                    })
                    .collect();
                (name, triples)
            })
            .collect();
        for (part, triples) in rows {
            let median = |mut v: Vec<f64>| {
                v.sort_by(f64::total_cmp);
                v[v.len() / 2]
            };
            let errors: Vec<f64> = triples
                .iter()
                .map(|(m, p, _)| (p / m.max(1e-9) - 1.0).abs())
                .collect();
            let within = errors.iter().filter(|e| **e <= 0.25).count();
            println!(
                "| {:<11} | {:<10} | {:>9.3} ms | {:>9.3} ms | {:>9.1} ms | {:>9.0}% | {:>5}/{:<4} |",
                label,
                part,
                median(triples.iter().map(|t| t.0).collect()),
                median(triples.iter().map(|t| t.1).collect()),
                median(triples.iter().map(|t| t.2).collect()),
                median(errors.clone()) * 100.0,
                within,
                triples.len()
            );
        }
    }
}

/// One part of one move: measured, predicted from the calibration, and
/// predicted from the paper's defaults, milliseconds.
type Predicted = (f64, f64, f64);

/// Moves made before the calibration table counts: the hosts' first
/// measurements of a new size or component.
const WARM_UP: usize = 5;

/// Latency of reads and durable writes of an agent holding `state` bytes
/// of notes, alone and with four writers at once.
async fn durable_calls(conn: &quinn::Connection, digest: Digest) -> Vec<(String, Vec<Duration>)> {
    let mut rows = Vec::new();
    for (size_label, state) in [("64 KiB", 64usize << 10), ("1 MiB", 1 << 20)] {
        let name: AgentName = format!("ledger-{}", state >> 10).parse().expect("a name");
        call(
            conn,
            &Request::Deploy {
                name: name.clone(),
                digest,
                config: vec![],
            },
        )
        .await
        .expect("deploy");
        let mut note = b"remember ".to_vec();
        note.extend(std::iter::repeat_n(b'n', state));
        let request = |body: Vec<u8>| Request::Invoke {
            name: name.clone(),
            body,
            caller: None,
            hops: 0,
        };
        call(conn, &request(note)).await.expect("remember");
        for (what, body) in [
            ("read (stats)", b"stats".to_vec()),
            ("write (remember)", b"remember x".to_vec()),
        ] {
            let mut samples = Vec::with_capacity(500);
            for i in 0..520 {
                let t = Instant::now();
                call(conn, &request(body.clone())).await.expect("call");
                if i >= 20 {
                    samples.push(t.elapsed());
                }
            }
            samples.sort();
            rows.push((format!("{size_label}, {what}, one caller"), samples));
        }
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let conn = conn.clone();
            let write = request(b"remember y".to_vec());
            tasks.spawn(async move {
                let mut samples = Vec::with_capacity(250);
                for _ in 0..250 {
                    let t = Instant::now();
                    call(&conn, &write).await.expect("call");
                    samples.push(t.elapsed());
                }
                samples
            });
        }
        let mut samples = Vec::new();
        while let Some(done) = tasks.join_next().await {
            samples.extend(done.expect("writer"));
        }
        samples.sort();
        rows.push((
            format!("{size_label}, write, four callers at once"),
            samples,
        ));
        call(conn, &Request::Release { name })
            .await
            .expect("release");
    }
    rows
}
