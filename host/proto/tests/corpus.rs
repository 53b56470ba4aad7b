//! The fuzz corpora as regression inputs, and the seeds they grew from.
//!
//! `fuzz/corpus/<target>/` holds the inputs the fuzzers kept (minimised)
//! and every input that once crashed a target; each goes through the same
//! function its fuzz target calls ([`edgehost_proto::fuzzing`]), so a decoder
//! that regresses fails `cargo test` without a fuzzer. The seeds are real
//! encodings, made and run through their harnesses by `write_seeds`, and
//! written into the corpora with `EDGEHOST_WRITE_SEEDS=1 cargo test -p
//! edgehost-proto --test corpus write_seeds`.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use edgehost_proto::delta::{self, Block};
use edgehost_proto::disk::{self, AgentRecord, Standing, Tombstone};
use edgehost_proto::fuzzing;
use edgehost_proto::*;

fn corpus(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

/// Runs every file of a target's corpus through its harness; the number of
/// inputs run.
fn run(target: &str, harness: fn(&[u8])) -> usize {
    let dir = corpus(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| harness(&bytes));
        assert!(outcome.is_ok(), "{} fails its harness", path.display());
        n += 1;
    }
    assert!(n > 0, "{} is empty", dir.display());
    n
}

#[test]
fn the_frames_corpus_decodes_without_a_failure() {
    run("frames", fuzzing::frames);
}

#[test]
fn the_delta_corpus_applies_without_a_failure() {
    run("delta", fuzzing::delta);
}

#[test]
fn the_disk_record_corpus_decodes_without_a_failure() {
    run("disk_record", fuzzing::disk_record);
}

#[test]
fn the_config_toml_corpus_parses_without_a_failure() {
    run("config_toml", fuzzing::config_toml);
}

/// Runs a seed through its target's harness, and writes it into the
/// committed corpus when `EDGEHOST_WRITE_SEEDS` is set.
fn write(target: &str, name: &str, bytes: &[u8]) {
    let harness: fn(&[u8]) = match target {
        "frames" => fuzzing::frames,
        "delta" => fuzzing::delta,
        "disk_record" => fuzzing::disk_record,
        "config_toml" => fuzzing::config_toml,
        other => panic!("no fuzz target {other}"),
    };
    harness(bytes);
    if std::env::var_os("EDGEHOST_WRITE_SEEDS").is_some() {
        let dir = corpus(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
    }
}

fn agent(s: &str) -> AgentName {
    AgentName::new(s).unwrap()
}

fn host(s: &str) -> HostName {
    s.parse().unwrap()
}

fn addr() -> SocketAddr {
    "127.0.0.1:7400".parse().unwrap()
}

fn descriptor() -> Descriptor {
    Descriptor {
        kind: "memory".into(),
        version: "0.1.0".into(),
        demand: ResourceDemand {
            memory_mib: 64,
            cpu_millicores: 250,
            storage_mib: 16,
            bandwidth_mbps: 1,
        },
        dependencies: vec!["other".into()],
    }
}

fn report() -> HostReport {
    HostReport {
        name: host("h1"),
        addr: addr(),
        site: "edge".into(),
        location: Location {
            lat: 39.9,
            lon: 116.4,
        },
        bandwidth_mbps: 20.0,
        max_agents: 10,
        status: ServerStatus {
            arch: "x86_64".into(),
            cpu_features: vec!["sse4.2".into(), "avx2".into()],
            core_gcps: 2.83,
            os: "linux".into(),
            cpu_cores: 2,
            cpu_usage_percent: 12.5,
            process_cpu_percent: 3.0,
            process_cpu_recent_percent: 2.0,
            load_1m: 0.5,
            memory_total_bytes: 1 << 30,
            memory_free_bytes: 1 << 29,
            disk_total_bytes: 1 << 34,
            disk_free_bytes: 1 << 33,
            net_rx_bytes_per_sec: 100.0,
            net_tx_bytes_per_sec: 200.0,
            sample_ms: 1000,
        },
        agents: vec![AgentReport {
            name: agent("a"),
            digest: Digest::of(b"c"),
            descriptor: descriptor(),
            state_bytes: 10,
            uptime_s: 1.5,
            calls: 3,
            epoch: 1,
            status: "serving".into(),
            processing: Some(estimate()),
            wake_ms: Some(0.4),
        }],
        compiling: vec![Digest::of(b"d")],
        uptime_s: 9.0,
        policy: "builtin".into(),
        policy_generation: 2,
        policy_plugins: PolicyPlugins {
            heuristic: None,
            cost_model: Some(Digest::of(b"m")),
        },
        model: Box::new(HostModel {
            export: Some(estimate()),
            start: Some(estimate()),
            links: vec![LinkModel {
                peer: host("h2"),
                rtt_ms: 0.2,
                send: Some(estimate()),
            }],
            ..HostModel::default()
        }),
    }
}

fn migration_report(times: MigrationTimes) -> MigrationReport {
    MigrationReport {
        agent: agent("a"),
        from: host("h1"),
        to: host("h2"),
        epoch: 3,
        measured_ms: times,
        predicted_ms: times,
        predicted_defaults: vec![],
        downtime_ms: 4.0,
        state_bytes: 64,
        wire_bytes: 128,
        delta_bytes: 16,
        precopy_ms: 1.0,
        target_compile_ms: 2.0,
        target_cache_hit: false,
        component_bytes_sent: 1000,
        held_calls: 0,
        stop_and_copy: false,
        move_ms: 9.0,
        handoff_ms: 12.0,
    }
}

fn estimate() -> Estimate {
    Estimate {
        mean_size: 65536.0,
        mean_ms: 0.25,
        ms_per_unit: 2e-6,
        spread_ms: 0.05,
        samples: 12,
    }
}

fn event() -> Event {
    Event {
        at_ms: 5,
        host: host("h1"),
        agent: agent("a"),
        trigger: "user-moved".into(),
        decision: "migrate".into(),
        net_gain_s: 0.25,
        reasons: vec!["closer".into()],
    }
}

/// A state of a few blocks and a changed copy: the shape of a migration.
fn states() -> (Vec<u8>, Vec<u8>) {
    let base: Vec<u8> = (0..3 * delta::BLOCK_BYTES + 100)
        .map(|i| (i % 251) as u8)
        .collect();
    let mut new = base.clone();
    new[delta::BLOCK_BYTES + 7] ^= 0xff;
    new.extend_from_slice(b"a new turn");
    (base, new)
}

#[test]
fn write_seeds() {
    let (base, new) = states();
    let blocks = delta::diff(&base, &new);
    let config = vec![("persona".to_owned(), "terse".to_owned())];
    let requests = [
        ("status", Request::Status),
        ("fleet", Request::Fleet),
        (
            "has",
            Request::Has {
                digest: Digest::of(b"c"),
            },
        ),
        (
            "upload",
            Request::Upload {
                digest: Digest::of(b"c"),
                size: 1 << 20,
            },
        ),
        (
            "deploy",
            Request::Deploy {
                name: agent("a"),
                digest: Digest::of(b"c"),
                config: config.clone(),
            },
        ),
        (
            "invoke",
            Request::Invoke {
                name: agent("a"),
                body: b"remember x".to_vec(),
                caller: Some(agent("b")),
                hops: 1,
            },
        ),
        ("release", Request::Release { name: agent("a") }),
        (
            "place",
            Request::Place {
                descriptor: descriptor(),
                component_bytes: 4096,
                user: None,
                requires_arch: None,
                algorithm: Some("greedy".into()),
            },
        ),
        ("heartbeat", Request::Heartbeat(Box::new(report()))),
        (
            "migrate",
            Request::Migrate {
                name: agent("a"),
                to: host("h2"),
            },
        ),
        (
            "prepare",
            Request::Prepare {
                name: agent("a"),
                digest: Digest::of(b"c"),
                config,
                epoch: 2,
                source: addr(),
            },
        ),
        (
            "precopy",
            Request::Precopy {
                name: agent("a"),
                epoch: 2,
                state_digest: Digest::of(&base),
                state: base[..64].to_vec(),
            },
        ),
        (
            "transfer",
            Request::Transfer {
                name: agent("a"),
                epoch: 2,
                state_digest: Digest::of(&new),
                len: new.len() as u64,
                blocks: vec![Block {
                    index: 0,
                    bytes: b"tiny".to_vec(),
                }],
            },
        ),
        (
            "commit",
            Request::Commit {
                name: agent("a"),
                epoch: 2,
            },
        ),
        (
            "abort",
            Request::Abort {
                name: agent("a"),
                epoch: 2,
            },
        ),
        (
            "outcome",
            Request::Outcome {
                name: agent("a"),
                epoch: 2,
            },
        ),
        (
            "attach",
            Request::Attach {
                agent: agent("a"),
                host: host("h2"),
            },
        ),
        ("events", Request::Events),
        ("migrations", Request::Migrations),
        (
            "probe",
            Request::Probe {
                padding: vec![0; 64],
            },
        ),
        (
            "set-policy",
            Request::SetPolicy {
                heuristic: Some(Digest::of(b"p")),
                cost_model: None,
            },
        ),
    ];
    for (name, request) in requests {
        write(
            "frames",
            &format!("request-{name}"),
            &encode(&request).unwrap(),
        );
    }
    let times = MigrationTimes {
        export_ms: 1.0,
        transfer_ms: 2.0,
        initiation_ms: 3.0,
        load_ms: 4.0,
    };
    let responses = [
        ("status", Response::Status(report())),
        (
            "fleet",
            Response::Fleet(vec![PeerView {
                report: report(),
                reachable: true,
                last_seen_s: 0.5,
            }]),
        ),
        ("has", Response::Has(true)),
        ("uploaded", Response::Uploaded { received: 10 }),
        (
            "deployed",
            Response::Deployed {
                descriptor: descriptor(),
                load_ms: 3.5,
                cache_hit: false,
            },
        ),
        (
            "invoked",
            Response::Invoked {
                body: b"noted #1".to_vec(),
                host: host("h1"),
                processing_us: 412,
            },
        ),
        ("released", Response::Released),
        (
            "placement",
            Response::Placement(Placement {
                host: host("h2"),
                addr: addr(),
                algorithm: "alp".into(),
                policy: "builtin".into(),
                fallbacks: vec!["h1".into()],
                latency_s: LatencyParts {
                    transmit_s: 0.1,
                    migration_s: 0.2,
                    initiation_s: 0.3,
                    processing_s: 0.4,
                },
                cost: CostParts {
                    cpu: 1.0,
                    storage: 2.0,
                    communication: 3.0,
                },
                objective: 0.7,
                candidates: vec![host("h1"), host("h2")],
                refinement: Some("kept".into()),
                lower_bound: 0.5,
                gap: 0.01,
            }),
        ),
        ("probed", Response::Probed { bytes: 64 }),
        (
            "migrations",
            Response::Migrations(vec![RecentMigration {
                at_ms: 1_700_000_000_000,
                report: migration_report(times),
            }]),
        ),
        (
            "migrated",
            Response::Migrated(MigrationReport {
                agent: agent("a"),
                from: host("h1"),
                to: host("h2"),
                epoch: 2,
                measured_ms: times,
                predicted_ms: times,
                predicted_defaults: vec!["load".into()],
                downtime_ms: 5.0,
                state_bytes: 100,
                wire_bytes: 200,
                delta_bytes: 20,
                precopy_ms: 1.0,
                target_compile_ms: 0.0,
                target_cache_hit: true,
                component_bytes_sent: 0,
                held_calls: 1,
                stop_and_copy: true,
                move_ms: 5.0,
                handoff_ms: 7.0,
            }),
        ),
        (
            "prepared",
            Response::Prepared {
                initiation_ms: 1.0,
                compile_ms: 2.0,
                cache_hit: true,
                model: Box::default(),
            },
        ),
        ("precopied", Response::Precopied),
        ("transferred", Response::Transferred { load_ms: 1.0 }),
        ("committed", Response::Committed),
        ("aborted", Response::Aborted),
        ("outcome", Response::Outcome { committed: true }),
        ("decided", Response::Decided(vec![event()])),
        ("events", Response::Events(vec![event()])),
        (
            "policy-set",
            Response::PolicySet {
                policy: "builtin".into(),
                generation: 1,
                previous: PolicyPlugins {
                    heuristic: Some(Digest::of(b"h")),
                    cost_model: None,
                },
            },
        ),
        (
            "error",
            Response::Error {
                kind: ErrorKind::Conflict,
                message: "epoch".into(),
            },
        ),
    ];
    for (name, response) in responses {
        write(
            "frames",
            &format!("response-{name}"),
            &encode(&response).unwrap(),
        );
    }

    // Small states keep the seeds small; the real diff of a 3-block state
    // is a seed of its own.
    let small = |base: &[u8], len: u64, blocks: Vec<Block>| {
        postcard::to_stdvec(&(len, base.to_vec(), blocks)).unwrap()
    };
    write(
        "delta",
        "grow",
        &small(
            b"abc",
            6,
            vec![Block {
                index: 0,
                bytes: b"abcdef".to_vec(),
            }],
        ),
    );
    write("delta", "shrink", &small(b"abcdef", 2, vec![]));
    write("delta", "empty", &small(b"", 0, vec![]));
    write(
        "delta",
        "migration",
        &small(&base, new.len() as u64, blocks),
    );
    write("delta", "diff-pair", b"old statenew state");

    // disk_record: the first byte picks the decoder (see the harness).
    let record = AgentRecord {
        name: agent("a"),
        digest: Digest::of(b"c"),
        config: vec![("k".into(), "v".into())],
        epoch: 3,
        standing: Standing::PreparedFrom {
            host: host("h1"),
            addr: "127.0.0.1:7400".into(),
        },
    };
    let prefixed = |mode: u8, bytes: &[u8]| [&[mode][..], bytes].concat();
    write(
        "disk_record",
        "record",
        &prefixed(0, &disk::encode_record(&record).unwrap()),
    );
    let prepared = AgentRecord {
        standing: Standing::Prepared {
            source: "127.0.0.1:7400".into(),
        },
        ..record.clone()
    };
    write(
        "disk_record",
        "record-prepared",
        &prefixed(0, &disk::encode_record(&prepared).unwrap()),
    );
    let active = AgentRecord {
        standing: Standing::Active,
        ..record
    };
    write(
        "disk_record",
        "record-active",
        &prefixed(0, &disk::encode_record(&active).unwrap()),
    );
    let tombstone = Tombstone {
        name: agent("a"),
        epoch: 4,
        host: host("h2"),
        addr: "127.0.0.1:7401".into(),
    };
    write(
        "disk_record",
        "tombstone",
        &prefixed(1, &disk::encode_record(&tombstone).unwrap()),
    );
    // A real log of two appends onto the harness's snapshot, whole, as
    // records after the header, and as payloads for the harness to frame.
    let snapshot = b"the snapshot".to_vec();
    let mut grown = snapshot.clone();
    grown.extend_from_slice(b" and a turn");
    let mut changed = grown.clone();
    changed[0] = b'T';
    let first = disk::log_record(&snapshot, &grown).unwrap();
    let second = disk::log_record(&grown, &changed).unwrap();
    let mut log = disk::log_header(&Digest::of(&snapshot));
    log.extend_from_slice(&first);
    log.extend_from_slice(&second);
    write("disk_record", "log", &prefixed(2, &log));
    write(
        "disk_record",
        "log-torn",
        &prefixed(2, &log[..log.len() - 3]),
    );
    write(
        "disk_record",
        "log-records",
        &prefixed(3, &log[disk::LOG_HEADER_BYTES..]),
    );
    let mut payloads = vec![4u8];
    for record in [&first, &second] {
        let payload = &record[36..];
        payloads.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        payloads.extend_from_slice(payload);
    }
    write("disk_record", "log-payloads", &payloads);

    write("config_toml", "host", HOST_TOML.as_bytes());
    write(
        "config_toml",
        "host-minimal",
        b"data_dir = \"d\"\nca = \"ca.pem\"\ncert = \"h.pem\"\nkey = \"h.key\"\n",
    );
    write(
        "config_toml",
        "client",
        b"ca = \"ca.pem\"\ncert = \"c.pem\"\nkey = \"c.key\"\nhosts = [\"127.0.0.1:7400\"]\n",
    );
}

/// The README's host configuration, every section filled.
const HOST_TOML: &str = r#"name = "beijing"
listen = "0.0.0.0:7400"
data_dir = "/var/lib/edgehost"
cache_dir = "cache"
ca = "ca.pem"
cert = "beijing.pem"
key = "beijing.key"
peers = ["10.0.0.2:7400"]
metrics_listen = "127.0.0.1:9464"
heartbeat_ms = 1000

[labels]
site = "beijing"
lat = 39.9
lon = 116.4
bandwidth_mbps = 20

[limits]
max_agents = 10
call_timeout_ms = 10000
max_agent_memory_mib = 512

[alm]
hop_threshold = 1
safety_fraction = 0.1
horizon_requests = 20
check_ms = 10000

[llm]
endpoint = "http://127.0.0.1:8000"
model = "smollm2"
api_key_env = "LLM_KEY"
timeout_ms = 20000
"#;
