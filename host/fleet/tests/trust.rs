//! Who may say what: the authorization table cell by cell, reports bound
//! to the certificate that sent them, and names and numbers from the
//! network refused at decode with nothing changed.

// Test helpers unwrap freely: a failure is the test failing.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use edgehost_fleet::client::{call, call_encoded, connect, upload};
use edgehost_fleet::identity::Role;
use edgehost_fleet::protocol::{
    AgentName, HostReport, PeerView, Request, RequestKind, Response, encode, read_frame,
    write_frame,
};
use edgehost_fleet::tls::endpoint;
use edgehost_fleet::{Error, ErrorKind, HostConfig};
use edgehost_runtime::Digest;

mod support;
use support::*;

/// What the memory agent declares, for placement requests.
fn memory_descriptor() -> edgehost_runtime::Descriptor {
    edgehost_runtime::Descriptor {
        kind: "memory".into(),
        version: "1".into(),
        demand: edgehost_runtime::ResourceDemand {
            memory_mib: 1,
            cpu_millicores: 10,
            storage_mib: 1,
            bandwidth_mbps: 1,
        },
        dependencies: vec![],
    }
}

/// A request of `kind` aimed at `agent` (and `digest`, `report`), at an
/// epoch that would outrank any owner.
fn sample(kind: RequestKind, agent: &str, digest: Digest, report: &HostReport) -> Request {
    let name: AgentName = agent.parse().unwrap();
    match kind {
        RequestKind::Status => Request::Status,
        RequestKind::Fleet => Request::Fleet,
        RequestKind::Migrations => Request::Migrations,
        RequestKind::Has => Request::Has { digest },
        RequestKind::Upload => Request::Upload { digest, size: 10 },
        RequestKind::Deploy => Request::Deploy {
            name: format!("{agent}-2").parse().unwrap(),
            digest,
            config: vec![],
        },
        RequestKind::Invoke => Request::Invoke {
            name,
            body: b"remember I was here".to_vec(),
            caller: None,
            hops: 0,
        },
        RequestKind::Release => Request::Release { name },
        RequestKind::Place => Request::Place {
            descriptor: memory_descriptor(),
            component_bytes: 1,
            user: None,
            requires_arch: None,
            algorithm: None,
        },
        RequestKind::Heartbeat => Request::Heartbeat(Box::new(report.clone())),
        RequestKind::Migrate => Request::Migrate {
            name,
            to: "nowhere".parse().unwrap(),
        },
        RequestKind::Prepare => Request::Prepare {
            name,
            digest,
            config: vec![],
            epoch: u64::MAX,
            source: "127.0.0.1:9".parse().unwrap(),
        },
        RequestKind::Precopy => Request::Precopy {
            name,
            epoch: u64::MAX,
            state_digest: Digest::of(b""),
            state: vec![],
        },
        RequestKind::Transfer => Request::Transfer {
            name,
            epoch: u64::MAX,
            state_digest: Digest::of(b""),
            len: 0,
            blocks: vec![],
        },
        RequestKind::Commit => Request::Commit {
            name,
            epoch: u64::MAX,
        },
        RequestKind::Abort => Request::Abort {
            name,
            epoch: u64::MAX,
        },
        RequestKind::Outcome => Request::Outcome {
            name,
            epoch: u64::MAX,
        },
        RequestKind::Attach => Request::Attach {
            agent: name,
            host: "nowhere".parse().unwrap(),
        },
        RequestKind::Events => Request::Events,
        RequestKind::SetPolicy => Request::SetPolicy {
            heuristic: Some(digest),
            cost_model: None,
        },
        RequestKind::Revocations => Request::Revocations {
            list: b"not a revocation list".to_vec(),
        },
        RequestKind::Probe => Request::Probe {
            padding: vec![0; 16],
        },
    }
}

fn forbidden(answer: &Result<Response, Error>) -> bool {
    matches!(
        answer,
        Err(Error::Remote {
            kind: ErrorKind::Forbidden,
            ..
        })
    )
}

async fn status(conn: &quinn::Connection) -> HostReport {
    match call(conn, &Request::Status).await.unwrap() {
        Response::Status(r) => r,
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authorization_table_holds_cell_by_cell() {
    let dir = tempfile::tempdir().unwrap();
    let (host, operator, _, digest) = one_host_with_the_memory_agent(dir.path()).await;
    call(
        &operator,
        &Request::Deploy {
            name: "mem".parse().unwrap(),
            digest,
            config: vec![],
        },
    )
    .await
    .unwrap();
    assert_eq!(
        invoke(&operator, "mem", b"remember the original").await.0,
        b"noted #1"
    );

    let roles = [
        (Role::Operator, "ops-2"),
        (Role::Viewer, "wall"),
        (Role::Host, "beta"),
    ];
    let mut connections = Vec::new();
    for (role, name) in roles {
        let (conn, _) = connect(&endpoint_as(dir.path(), name, role), host.addr)
            .await
            .unwrap();
        connections.push((role, name, conn));
    }

    // Every cell a role may not send, aimed at the real agent at the
    // highest epoch there is: refused, and nothing changes.
    let mut own = status(&operator).await;
    for agent in &mut own.agents {
        agent.epoch = u64::MAX;
    }
    let mut refused = 0;
    for (role, name, conn) in &connections {
        let mut report = own.clone();
        report.name = name.parse().unwrap();
        for kind in RequestKind::ALL {
            if kind.allowed().contains(role) {
                continue;
            }
            let answer = call(conn, &sample(kind, "mem", digest, &report)).await;
            assert!(forbidden(&answer), "{role} sent {kind:?}: {answer:?}");
            refused += 1;
        }
    }
    // 8 host-only kinds for the operator, 18 for the viewer, 4 for a host.
    assert_eq!(refused, 8 + 18 + 4);
    // An operator naming a calling agent is refused too.
    let posing = Request::Invoke {
        name: "mem".parse().unwrap(),
        body: b"remember posing".to_vec(),
        caller: Some("planner".parse().unwrap()),
        hops: 0,
    };
    assert!(forbidden(&call(&operator, &posing).await));

    let after = status(&operator).await;
    assert_eq!(after.agents.len(), 1);
    assert_eq!(
        (after.agents[0].name.as_str(), after.agents[0].epoch),
        ("mem", 1)
    );
    assert_eq!(after.policy, "built-in");
    assert_eq!(
        invoke(&operator, "mem", b"notes").await.0,
        b"the original".to_vec()
    );
    match call(&operator, &Request::Fleet).await.unwrap() {
        Response::Fleet(views) => assert_eq!(views.len(), 1, "no peer was added"),
        other => panic!("{other:?}"),
    }

    // Every cell a role may send gets past the check (aimed at an agent
    // that does not exist, so it changes nothing either).
    let ghost = Digest::of(b"no such component");
    for (role, name, conn) in &connections {
        let mut report = own.clone();
        report.name = name.parse().unwrap();
        report.addr = "127.0.0.1:9".parse().unwrap();
        report.agents.clear();
        for kind in RequestKind::ALL {
            if !kind.allowed().contains(role) {
                continue;
            }
            let answer = call(conn, &sample(kind, "ghost", ghost, &report)).await;
            assert!(!forbidden(&answer), "{role} may send {kind:?}: {answer:?}");
        }
    }
    host.stop().await;
}

/// Serves as `mallory`, a host of the fleet whose key was stolen: every
/// request gets `answer`.
async fn fake_host(dir: &std::path::Path, answer: Response) -> std::net::SocketAddr {
    let creds = credentials_as(dir, "mallory", Role::Host);
    let server = endpoint(&creds, "127.0.0.1:0".parse().unwrap(), true).unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(async move {
        while let Some(incoming) = server.accept().await {
            let Ok(conn) = incoming.await else { continue };
            let answer = answer.clone();
            tokio::spawn(async move {
                while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                    let _ = read_frame(&mut recv, 1 << 24).await;
                    let _ = write_frame(&mut send, &encode(&answer).unwrap()).await;
                    let _ = send.finish();
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_certificate_speaks_only_for_its_own_name() {
    let Pair {
        dir,
        a,
        b,
        to_a,
        to_b,
        bytes,
        digest,
    } = two_hosts().await;
    upload(&to_b, digest, &bytes, |_| {}).await.unwrap();
    call(
        &to_a,
        &Request::Deploy {
            name: "twin".parse().unwrap(),
            digest,
            config: vec![],
        },
    )
    .await
    .unwrap();
    invoke(&to_a, "twin", b"remember alpha owns me").await;
    let (mallory, _) = connect(&endpoint_as(dir.path(), "mallory", Role::Host), b.addr)
        .await
        .unwrap();

    // A report for alpha, sent with mallory's certificate: refused.
    let mut forged = status(&to_a).await;
    for agent in &mut forged.agents {
        agent.epoch = 1_000;
    }
    let answer = call(&mallory, &Request::Heartbeat(Box::new(forged))).await;
    assert!(forbidden(&answer), "{answer:?}");

    // Alpha's migration of twin to beta is prepared (sent with alpha's
    // certificate); mallory cannot drive, commit or abort it.
    let (as_alpha, _) = connect(&endpoint_as(dir.path(), "alpha", Role::Host), b.addr)
        .await
        .unwrap();
    call(
        &as_alpha,
        &Request::Prepare {
            name: "twin".parse().unwrap(),
            digest,
            config: vec![],
            epoch: 2,
            source: a.addr,
        },
    )
    .await
    .unwrap();
    let state = b"not the real state".to_vec();
    for request in [
        Request::Prepare {
            name: "twin".parse().unwrap(),
            digest,
            config: vec![],
            epoch: 3,
            source: a.addr,
        },
        Request::Precopy {
            name: "twin".parse().unwrap(),
            epoch: 2,
            state_digest: Digest::of(&state),
            state: state.clone(),
        },
        Request::Transfer {
            name: "twin".parse().unwrap(),
            epoch: 2,
            state_digest: Digest::of(&state),
            len: state.len() as u64,
            blocks: vec![],
        },
        Request::Commit {
            name: "twin".parse().unwrap(),
            epoch: 2,
        },
        Request::Abort {
            name: "twin".parse().unwrap(),
            epoch: 2,
        },
    ] {
        let answer = call(&mallory, &request).await;
        assert!(answer.is_err(), "mallory's {request:?} was accepted");
    }
    // Alpha still owns twin, with its memory; beta serves nothing.
    assert!(status(&to_b).await.agents.is_empty());
    assert_eq!(
        invoke(&to_a, "twin", b"notes").await,
        (b"alpha owns me".to_vec(), "alpha".to_owned())
    );
    // Asking alpha whether a migration committed: not to mallory.
    let (mallory_at_a, _) = connect(&endpoint_as(dir.path(), "mallory", Role::Host), a.addr)
        .await
        .unwrap();
    match call(
        &mallory_at_a,
        &Request::Outcome {
            name: "twin".parse().unwrap(),
            epoch: 2,
        },
    )
    .await
    .unwrap()
    {
        Response::Outcome { committed } => assert!(!committed),
        other => panic!("{other:?}"),
    }

    // Mallory as a seed peer of a third host: its answer puts beta's name
    // on its own report, and relays a view of "gamma" (at beta's address)
    // that claims twin at a higher epoch. Neither counts: beta's entry is
    // not mallory's to write, and gamma never becomes reachable, because
    // the certificate at that address is beta's.
    let mut gamma = status(&to_b).await;
    gamma.name = "gamma".parse().unwrap();
    gamma.agents = status(&to_a).await.agents;
    for agent in &mut gamma.agents {
        agent.epoch = 1_000;
    }
    let mut as_beta = status(&to_b).await;
    as_beta.agents = gamma.agents.clone();
    let fake = fake_host(
        dir.path(),
        Response::Fleet(vec![
            PeerView {
                report: as_beta,
                reachable: true,
                last_seen_s: 0.0,
            },
            PeerView {
                report: gamma,
                reachable: true,
                last_seen_s: 0.0,
            },
        ]),
    )
    .await;
    let c = spawn(HostConfig {
        peers: vec![fake.to_string()],
        ..host_config(dir.path(), "charlie")
    })
    .await;
    let (to_c, _) = connect(&client_endpoint(dir.path(), "ops-c"), c.addr)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    match call(&to_c, &Request::Fleet).await.unwrap() {
        Response::Fleet(views) => {
            for v in &views[1..] {
                assert!(!v.reachable, "{} counted as reachable", v.report.name);
            }
        }
        other => panic!("{other:?}"),
    }
    // Alpha never fenced its copy on a forged report.
    assert_eq!(invoke(&to_a, "twin", b"notes").await.1, "alpha");
    c.stop().await;
    b.stop().await;
    a.stop().await;
}

/// The first variants of `Request`, in its order, with names as plain
/// strings: what a peer that ignores the naming rule would send.
#[derive(serde::Serialize)]
#[allow(dead_code)]
enum Raw {
    Status,
    Fleet,
    Has,
    Upload,
    Deploy {
        name: String,
        digest: Digest,
        config: Vec<(String, String)>,
    },
    Invoke,
    Release,
    Place,
    Heartbeat,
    Migrate,
    Prepare {
        name: String,
        digest: Digest,
        config: Vec<(String, String)>,
        epoch: u64,
        source: std::net::SocketAddr,
    },
}

#[tokio::test]
async fn names_and_numbers_that_break_the_rules_are_refused_at_decode() {
    let dir = tempfile::tempdir().unwrap();
    let (host, operator, bytes, digest) = one_host_with_the_memory_agent(dir.path()).await;
    let (as_host, _) = connect(&endpoint_as(dir.path(), "beta", Role::Host), host.addr)
        .await
        .unwrap();
    let outside = dir.path().join("escaped");
    let long = "a".repeat(10_000);
    let escape = format!("../../../{}", outside.display());
    for bad in [
        "",
        "..",
        "../x",
        escape.as_str(),
        outside.to_str().unwrap(),
        "a/b",
        "nul\0byte",
        long.as_str(),
    ] {
        // Such a name cannot be put in a `Request` at all: the frames are
        // encoded from a stand-in with plain strings, as a hostile peer would.
        let deploy = encode(&Raw::Deploy {
            name: bad.into(),
            digest,
            config: vec![],
        })
        .unwrap();
        let prepare = encode(&Raw::Prepare {
            name: bad.into(),
            digest,
            config: vec![],
            epoch: 2,
            source: "127.0.0.1:9".parse().unwrap(),
        })
        .unwrap();
        for (conn, frame) in [(&operator, deploy), (&as_host, prepare)] {
            let answer = call_encoded(conn, &frame).await;
            assert!(
                matches!(
                    answer,
                    Err(Error::Remote {
                        kind: ErrorKind::BadRequest,
                        ..
                    })
                ),
                "{bad:?}: {answer:?}"
            );
        }
    }
    let escaped: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().starts_with("escaped"))
        .collect();
    assert!(escaped.is_empty(), "{escaped:?}");

    // A report with a NaN, an infinity, a negative number or a zero
    // bandwidth is refused; the host keeps placing with what it has.
    let base = status(&operator).await;
    let mut reports = Vec::new();
    for broken in 0..4 {
        let mut r = base.clone();
        r.name = "beta".parse().unwrap();
        r.addr = "127.0.0.1:9".parse().unwrap();
        match broken {
            0 => r.location.lat = f64::NAN,
            1 => r.status.load_1m = f64::INFINITY,
            2 => r.uptime_s = -1.0,
            _ => r.bandwidth_mbps = 0.0,
        }
        reports.push(r);
    }
    for report in reports {
        let answer = call(&as_host, &Request::Heartbeat(Box::new(report))).await;
        assert!(
            matches!(
                answer,
                Err(Error::Remote {
                    kind: ErrorKind::BadRequest,
                    ..
                })
            ),
            "{answer:?}"
        );
    }
    let placed = call(
        &operator,
        &Request::Place {
            descriptor: memory_descriptor(),
            component_bytes: bytes.len() as u64,
            user: None,
            requires_arch: None,
            algorithm: None,
        },
    )
    .await
    .unwrap();
    assert!(matches!(placed, Response::Placement(p) if p.host == "alpha"));
    // Such a name cannot even be made, so no request can carry one.
    assert!("../x".parse::<AgentName>().is_err());
    host.stop().await;
}

#[tokio::test]
async fn expired_certificates_are_refused_at_the_handshake() {
    use edgehost_fleet::identity::{Validity, issue_for};
    use std::time::SystemTime;
    let dir = tempfile::tempdir().unwrap();
    new_fleet(dir.path());
    let host = start_host(dir.path(), "alpha").await;
    let expired = Validity {
        not_before: SystemTime::now() - Duration::from_secs(2 * 86_400),
        not_after: SystemTime::now() - Duration::from_secs(86_400),
    };
    let ca = dir.path().join("ca");
    let load = |name: &str, role: Role| {
        let out = dir.path().join("expired");
        let (cert, key) = issue_for(&ca, &out, name, role, expired).unwrap();
        edgehost_fleet::Credentials::load(&ca.join("ca.pem"), &cert, &key).unwrap()
    };
    // An operator whose certificate ran out gets nothing.
    let old = endpoint(
        &load("ops", Role::Operator),
        "127.0.0.1:0".parse().unwrap(),
        false,
    )
    .unwrap();
    match connect(&old, host.addr).await {
        Err(_) => {}
        // The client's side of the handshake may finish before the host's
        // verdict on its certificate arrives; its first request then fails.
        Ok((conn, _)) => assert!(call(&conn, &Request::Status).await.is_err()),
    }
    // A host serving an expired certificate is not trusted by its clients.
    let server = endpoint(
        &load("beta", Role::Host),
        "127.0.0.1:0".parse().unwrap(),
        true,
    )
    .unwrap();
    let fresh = client_endpoint(dir.path(), "ops-2");
    assert!(connect(&fresh, server.local_addr().unwrap()).await.is_err());
    // Certificates of the default lifetime work.
    let (conn, _) = connect(&fresh, host.addr).await.unwrap();
    assert!(matches!(
        call(&conn, &Request::Status).await.unwrap(),
        Response::Status(_)
    ));
    host.stop().await;
}
