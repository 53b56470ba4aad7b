//! A host in-process on loopback, poked with well-behaved and hostile peers.

// Test helpers unwrap freely: a failure is the test failing.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use edgehost_fleet::client::{call, connect, upload};
use edgehost_fleet::identity::Role;
use edgehost_fleet::protocol::{PROTOCOL_VERSION, Request, Response, encode, read_frame};
use edgehost_fleet::{Error, ErrorKind, HostConfig};
use edgehost_runtime::Digest;

mod support;
use support::*;

#[tokio::test]
async fn upload_deploy_invoke_release() {
    let dir = tempfile::tempdir().unwrap();
    new_fleet(dir.path());
    let host = start_host(dir.path(), "alpha").await;
    let client = client_endpoint(dir.path(), "ops");
    let (conn, identity) = connect(&client, host.addr).await.unwrap();
    assert_eq!(identity.name, "alpha");

    let bytes = std::fs::read(edgehost_tests::MEMORY_AGENT).unwrap();
    let digest = Digest::of(&bytes);
    assert!(matches!(
        call(&conn, &Request::Has { digest }).await.unwrap(),
        Response::Has(false)
    ));
    assert_eq!(
        upload(&conn, digest, &bytes, |_| {}).await.unwrap(),
        bytes.len() as u64
    );
    // The second upload of the same digest transfers nothing.
    assert_eq!(upload(&conn, digest, &bytes, |_| {}).await.unwrap(), 0);
    // Nor does a large one's: the host answers before the bytes have gone
    // and stops reading them, and that answer is the upload's success.
    let large = std::fs::read(edgehost_tests::PYTHON_DIALOG_AGENT).unwrap();
    let large_digest = Digest::of(&large);
    assert_eq!(
        upload(&conn, large_digest, &large, |_| {}).await.unwrap(),
        large.len() as u64
    );
    for _ in 0..3 {
        assert_eq!(
            upload(&conn, large_digest, &large, |_| {}).await.unwrap(),
            0
        );
    }
    assert!(matches!(
        call(&conn, &Request::Has { digest }).await.unwrap(),
        Response::Has(true)
    ));

    let deployed = call(
        &conn,
        &Request::Deploy {
            name: "mem".parse().unwrap(),
            digest,
            config: vec![],
        },
    )
    .await
    .unwrap();
    assert!(
        matches!(deployed, Response::Deployed { ref descriptor, .. } if descriptor.kind == "memory")
    );
    // A second agent of the same name is refused.
    let again = call(
        &conn,
        &Request::Deploy {
            name: "mem".parse().unwrap(),
            digest,
            config: vec![],
        },
    )
    .await;
    assert!(
        matches!(
            again,
            Err(Error::Remote {
                kind: ErrorKind::Conflict,
                ..
            })
        ),
        "{again:?}"
    );

    let invoke = |body: &str| Request::Invoke {
        name: "mem".parse().unwrap(),
        body: body.as_bytes().to_vec(),
        caller: None,
        hops: 0,
    };
    match call(&conn, &invoke("remember over quic")).await.unwrap() {
        Response::Invoked { body, host, .. } => {
            assert_eq!(body, b"noted #1");
            assert_eq!(host, "alpha");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        call(
            &conn,
            &Request::Release {
                name: "mem".parse().unwrap()
            }
        )
        .await
        .unwrap(),
        Response::Released
    ));
    let gone = call(&conn, &invoke("notes")).await;
    assert!(
        matches!(
            gone,
            Err(Error::Remote {
                kind: ErrorKind::NotFound,
                ..
            })
        ),
        "{gone:?}"
    );
    host.stop().await;
}

#[tokio::test]
async fn uploads_that_lie_about_their_digest_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    new_fleet(dir.path());
    let host = start_host(dir.path(), "alpha").await;
    let client = client_endpoint(dir.path(), "ops");
    let (conn, _) = connect(&client, host.addr).await.unwrap();
    let claimed = Digest::of(b"something else");
    let err = upload(&conn, claimed, b"these bytes", |_| {}).await;
    assert!(
        matches!(err, Err(Error::Remote { kind: ErrorKind::BadRequest, ref message }) if message.contains("does not hash")),
        "{err:?}"
    );
    assert!(matches!(
        call(&conn, &Request::Has { digest: claimed })
            .await
            .unwrap(),
        Response::Has(false)
    ));
    host.stop().await;
}

/// Sends raw bytes as a request stream and returns the host's answer, if any.
async fn raw(conn: &quinn::Connection, bytes: &[u8]) -> Option<Response> {
    let (mut send, mut recv) = conn.open_bi().await.ok()?;
    let _ = send.write_all(bytes).await;
    let _ = send.finish();
    let frame = read_frame(&mut recv, 1 << 20).await.ok()??;
    edgehost_fleet::protocol::decode(&frame).ok()
}

#[tokio::test]
async fn garbage_oversized_and_foreign_version_frames_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    new_fleet(dir.path());
    let host = start_host(dir.path(), "alpha").await;
    let client = client_endpoint(dir.path(), "ops");
    let (conn, _) = connect(&client, host.addr).await.unwrap();

    // Junk inside a well-formed frame.
    let mut junk = 9u32.to_be_bytes().to_vec();
    junk.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    junk.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
    assert!(matches!(
        raw(&conn, &junk).await,
        Some(Response::Error {
            kind: ErrorKind::BadRequest,
            ..
        })
    ));
    // A length prefix far over the limit: refused before anything is read.
    let huge = u32::MAX.to_be_bytes();
    assert!(matches!(
        raw(&conn, &huge).await,
        Some(Response::Error {
            kind: ErrorKind::BadRequest,
            ..
        })
    ));
    // A truncated frame.
    assert!(matches!(
        raw(&conn, &[0, 0, 0, 50, 1, 2]).await,
        Some(Response::Error {
            kind: ErrorKind::BadRequest,
            ..
        })
    ));
    // Another protocol version gets a clear refusal naming both versions.
    let mut frame = encode(&Request::Status).unwrap();
    frame[..2].copy_from_slice(&(PROTOCOL_VERSION + 1).to_be_bytes());
    let mut framed = (frame.len() as u32).to_be_bytes().to_vec();
    framed.extend(frame);
    match raw(&conn, &framed).await {
        Some(Response::Error {
            kind: ErrorKind::Version,
            message,
        }) => {
            assert!(
                message.contains(&format!("version {}", PROTOCOL_VERSION + 1)),
                "{message}"
            )
        }
        other => panic!("{other:?}"),
    }
    // An upload that announces more than the limit is refused at once.
    let mut frame = encode(&Request::Upload {
        digest: Digest::of(b"x"),
        size: u64::MAX,
    })
    .unwrap();
    let mut framed = (frame.len() as u32).to_be_bytes().to_vec();
    framed.append(&mut frame);
    assert!(matches!(
        raw(&conn, &framed).await,
        Some(Response::Error {
            kind: ErrorKind::BadRequest,
            ..
        })
    ));

    // A client may not pretend to be a host.
    let report = match call(&conn, &Request::Status).await.unwrap() {
        Response::Status(r) => r,
        other => panic!("{other:?}"),
    };
    let forged = call(&conn, &Request::Heartbeat(Box::new(report))).await;
    assert!(
        matches!(
            forged,
            Err(Error::Remote {
                kind: ErrorKind::Forbidden,
                ..
            })
        ),
        "{forged:?}"
    );

    // The same connection, and the host, still serve.
    assert!(
        matches!(call(&conn, &Request::Status).await.unwrap(), Response::Status(r) if r.agents.is_empty())
    );
    host.stop().await;
}

#[tokio::test]
async fn peers_without_a_fleet_certificate_get_nothing() {
    let dir = tempfile::tempdir().unwrap();
    new_fleet(dir.path());
    let host = start_host(dir.path(), "alpha").await;

    // A client of another fleet: its certificate does not chain to our CA.
    let other = tempfile::tempdir().unwrap();
    new_fleet(other.path());
    let stranger = client_endpoint(other.path(), "stranger");
    let refused = connect(&stranger, host.addr).await;
    assert!(
        matches!(refused, Err(Error::Connect(_))),
        "{:?}",
        refused.map(|(_, id)| id)
    );

    // A client with no certificate at all.
    let mut roots = rustls::RootCertStore::empty();
    let ca: rustls::pki_types::CertificateDer<'static> =
        rustls::pki_types::pem::PemObject::from_pem_file(dir.path().join("ca").join("ca.pem"))
            .unwrap();
    roots.add(ca).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut crypto = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    crypto.alpn_protocols = vec![edgehost_fleet::tls::ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(crypto).unwrap();
    let mut anonymous = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    anonymous.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
    let outcome = async {
        let conn = anonymous
            .connect(host.addr, "host.edgehost")
            .ok()?
            .await
            .ok()?;
        // TLS 1.3 lets the client finish first; the server's refusal of the
        // missing certificate then closes the connection.
        call(&conn, &Request::Status).await.ok()
    }
    .await;
    assert!(
        outcome.is_none(),
        "an anonymous client got an answer: {outcome:?}"
    );

    // Our own client still gets in.
    let client = client_endpoint(dir.path(), "ops");
    assert!(connect(&client, host.addr).await.is_ok());
    host.stop().await;
}

#[tokio::test]
async fn hosts_find_each_other_and_route_calls() {
    let dir = tempfile::tempdir().unwrap();
    new_fleet(dir.path());
    let a = start_host(dir.path(), "alpha").await;
    let b = start_host_with_peers(dir.path(), "beta", vec![a.addr.to_string()]).await;
    let b_addr = b.addr;

    let client = client_endpoint(dir.path(), "ops");
    let (to_a, _) = connect(&client, a.addr).await.unwrap();
    let (to_b, _) = connect(&client, b_addr).await.unwrap();
    // alpha learns of beta from beta's heartbeats (alpha was given no peers).
    let mut both = false;
    for _ in 0..50 {
        if let Response::Fleet(views) = call(&to_a, &Request::Fleet).await.unwrap() {
            both = views.iter().any(|v| v.report.name == "beta" && v.reachable);
        }
        if both {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(both, "alpha never saw beta");

    // Memory agent on alpha, a caller on beta that depends on "memory".
    for (conn, path, name) in [
        (&to_a, edgehost_tests::MEMORY_AGENT, "memory"),
        (&to_b, edgehost_tests::HOSTILE_AGENT, "caller"),
    ] {
        let bytes = std::fs::read(path).unwrap();
        let digest = Digest::of(&bytes);
        upload(conn, digest, &bytes, |_| {}).await.unwrap();
        call(
            conn,
            &Request::Deploy {
                name: name.parse().unwrap(),
                digest,
                config: vec![],
            },
        )
        .await
        .unwrap();
    }
    // Wait until beta's view lists alpha's agent, then call across hosts,
    // through alpha (which forwards to beta, whose agent calls back to alpha).
    let mut answer = None;
    for _ in 0..50 {
        let r = call(
            &to_a,
            &Request::Invoke {
                name: "caller".parse().unwrap(),
                body: b"call memory remember crossed".to_vec(),
                caller: None,
                hops: 0,
            },
        )
        .await;
        if let Ok(Response::Invoked { body, host, .. }) = r {
            answer = Some((body, host));
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (body, host) = answer.expect("the cross-host call succeeded");
    assert_eq!((body.as_slice(), host.as_str()), (&b"noted #1"[..], "beta"));
    match call(
        &to_a,
        &Request::Invoke {
            name: "memory".parse().unwrap(),
            body: b"notes".to_vec(),
            caller: None,
            hops: 0,
        },
    )
    .await
    .unwrap()
    {
        Response::Invoked { body, .. } => assert_eq!(body, b"crossed"),
        other => panic!("{other:?}"),
    }
    b.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn agents_reach_the_configured_llm_and_placements_are_refined() {
    let dir = tempfile::tempdir().unwrap();
    new_fleet(dir.path());
    let host = spawn(HostConfig {
        llm: Some(edgehost_fleet::config::LlmSettings {
            endpoint: stub_llm("The meeting is at 3pm."),
            model: "stub".into(),
            api_key_env: None,
            timeout_ms: 5_000,
        }),
        ..host_config(dir.path(), "alpha")
    })
    .await;
    let addr = host.addr;
    let client = client_endpoint(dir.path(), "ops");
    let (conn, _) = connect(&client, addr).await.unwrap();
    let bytes = std::fs::read(edgehost_tests::MEMORY_AGENT).unwrap();
    let digest = Digest::of(&bytes);
    upload(&conn, digest, &bytes, |_| {}).await.unwrap();
    call(
        &conn,
        &Request::Deploy {
            name: "mem".parse().unwrap(),
            digest,
            config: vec![],
        },
    )
    .await
    .unwrap();
    let asked = call(
        &conn,
        &Request::Invoke {
            name: "mem".parse().unwrap(),
            body: b"when is the meeting?".to_vec(),
            caller: None,
            hops: 0,
        },
    )
    .await
    .unwrap();
    assert!(
        matches!(asked, Response::Invoked { ref body, .. } if body == b"The meeting is at 3pm."),
        "{asked:?}"
    );

    // The stub's prose is no plan: the colony's placement stands, and says why.
    let descriptor = match call(&conn, &Request::Status).await.unwrap() {
        Response::Status(r) => r.agents[0].descriptor.clone(),
        other => panic!("{other:?}"),
    };
    match call(
        &conn,
        &Request::Place {
            descriptor,
            component_bytes: bytes.len() as u64,
            user: None,
            requires_arch: None,
            algorithm: None,
        },
    )
    .await
    .unwrap()
    {
        Response::Placement(p) => {
            assert_eq!(p.host, "alpha");
            let note = p.refinement.expect("an LLM is configured");
            assert!(note.starts_with("kept the colony's plan"), "{note}");
        }
        other => panic!("{other:?}"),
    }
    host.stop().await;
}

#[tokio::test]
async fn the_active_policy_is_swapped_on_a_running_host() {
    let dir = tempfile::tempdir().unwrap();
    new_fleet(dir.path());
    let host = start_host(dir.path(), "alpha").await;
    let client = client_endpoint(dir.path(), "ops");
    let (conn, _) = connect(&client, host.addr).await.unwrap();
    let status = |r: Response| match r {
        Response::Status(r) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        status(call(&conn, &Request::Status).await.unwrap()).policy,
        "built-in"
    );

    let plugin = std::fs::read(edgehost_tests::LATENCY_FIRST_POLICY).unwrap();
    let plugin_digest = Digest::of(&plugin);
    // Not uploaded yet: refused, nothing changes.
    let refused = call(
        &conn,
        &Request::SetPolicy {
            heuristic: Some(plugin_digest),
            cost_model: None,
        },
    )
    .await;
    assert!(
        matches!(
            refused,
            Err(Error::Remote {
                kind: ErrorKind::NotFound,
                ..
            })
        ),
        "{refused:?}"
    );
    // An agent is not a policy: refused, nothing changes.
    let agent = std::fs::read(edgehost_tests::MEMORY_AGENT).unwrap();
    let agent_digest = Digest::of(&agent);
    upload(&conn, agent_digest, &agent, |_| {}).await.unwrap();
    let refused = call(
        &conn,
        &Request::SetPolicy {
            heuristic: Some(agent_digest),
            cost_model: None,
        },
    )
    .await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(
        status(call(&conn, &Request::Status).await.unwrap()).policy,
        "built-in"
    );

    upload(&conn, plugin_digest, &plugin, |_| {}).await.unwrap();
    match call(
        &conn,
        &Request::SetPolicy {
            heuristic: Some(plugin_digest),
            cost_model: Some(plugin_digest),
        },
    )
    .await
    .unwrap()
    {
        Response::PolicySet {
            policy, generation, ..
        } => {
            assert_eq!(generation, 1);
            assert!(policy.contains(&plugin_digest.to_string()), "{policy}");
        }
        other => panic!("{other:?}"),
    }
    let report = status(call(&conn, &Request::Status).await.unwrap());
    assert!(report.policy.starts_with("heuristic "), "{}", report.policy);
    // The next decision is made with the new policy.
    let descriptor = edgehost_runtime::Descriptor {
        kind: "memory".into(),
        version: "1".into(),
        demand: edgehost_runtime::ResourceDemand {
            memory_mib: 64,
            cpu_millicores: 250,
            storage_mib: 16,
            bandwidth_mbps: 1,
        },
        dependencies: vec![],
    };
    match call(
        &conn,
        &Request::Place {
            descriptor,
            component_bytes: 1 << 16,
            user: None,
            requires_arch: None,
            algorithm: None,
        },
    )
    .await
    .unwrap()
    {
        Response::Placement(p) => {
            assert_eq!(p.policy, report.policy);
            assert!(p.fallbacks.is_empty(), "{:?}", p.fallbacks);
        }
        other => panic!("{other:?}"),
    }
    // And back to the built-in policy.
    match call(
        &conn,
        &Request::SetPolicy {
            heuristic: None,
            cost_model: None,
        },
    )
    .await
    .unwrap()
    {
        Response::PolicySet {
            policy, generation, ..
        } => {
            assert_eq!((policy.as_str(), generation), ("built-in", 2))
        }
        other => panic!("{other:?}"),
    }
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_under_load_loses_no_call_and_answers_none_twice() {
    let Pair {
        dir: _dir,
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
            name: "counter".parse().unwrap(),
            digest,
            config: vec![],
        },
    )
    .await
    .unwrap();

    // A steady stream of calls, through alpha, while the agent moves.
    let stream_conn = to_a.clone();
    let calls = tokio::spawn(async move {
        let mut answers = Vec::new();
        for i in 0..300 {
            let r = call(
                &stream_conn,
                &Request::Invoke {
                    name: "counter".parse().unwrap(),
                    body: format!("remember {i}").into_bytes(),
                    caller: None,
                    hops: 0,
                },
            )
            .await;
            answers.push(r.map(|r| match r {
                Response::Invoked { body, .. } => String::from_utf8(body).unwrap(),
                other => format!("{other:?}"),
            }));
        }
        answers
    });
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    let report = match call(
        &to_a,
        &Request::Migrate {
            name: "counter".parse().unwrap(),
            to: "beta".parse().unwrap(),
        },
    )
    .await
    .unwrap()
    {
        Response::Migrated(report) => report,
        other => panic!("{other:?}"),
    };
    let answers = calls.await.unwrap();
    // Every call answered, each with the next note number: none lost, none twice.
    for (i, answer) in answers.iter().enumerate() {
        assert_eq!(
            answer.as_deref().ok(),
            Some(format!("noted #{}", i + 1).as_str()),
            "call {i}: {answer:?}"
        );
    }
    assert_eq!(
        (report.from.as_str(), report.to.as_str(), report.epoch),
        ("alpha", "beta", 2)
    );
    // The component was already on beta: only the state crossed.
    assert_eq!(report.component_bytes_sent, 0);
    assert!(
        report.wire_bytes as f64 <= 1.05 * report.state_bytes as f64 + 16384.0,
        "{report:?}"
    );
    assert!(
        report
            .measured_ms
            .parts()
            .iter()
            .all(|(_, m)| m.is_finite() && *m >= 0.0)
    );
    // The memory is intact on beta, which now answers.
    match call(
        &to_b,
        &Request::Invoke {
            name: "counter".parse().unwrap(),
            body: b"stats".to_vec(),
            caller: None,
            hops: 0,
        },
    )
    .await
    .unwrap()
    {
        Response::Invoked { body, host, .. } => {
            assert_eq!(host, "beta");
            assert!(String::from_utf8(body).unwrap().starts_with("notes=300 "));
        }
        other => panic!("{other:?}"),
    }
    // Alpha no longer runs it, and forwards calls to beta.
    match call(&to_a, &Request::Status).await.unwrap() {
        Response::Status(r) => assert!(r.agents.is_empty()),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        invoke(&to_a, "counter", b"remember after").await,
        (b"noted #301".to_vec(), "beta".to_owned())
    );
    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_to_a_dead_target_aborts_and_the_agent_keeps_serving() {
    // The temporary directory must live as long as the hosts.
    let Pair {
        dir: _dir,
        a,
        b,
        to_a,
        digest,
        ..
    } = two_hosts().await;
    call(
        &to_a,
        &Request::Deploy {
            name: "keeper".parse().unwrap(),
            digest,
            config: vec![],
        },
    )
    .await
    .unwrap();
    let remember = Request::Invoke {
        name: "keeper".parse().unwrap(),
        body: b"remember precious".to_vec(),
        caller: None,
        hops: 0,
    };
    call(&to_a, &remember).await.unwrap();

    // Beta dies; alpha still counts it as reachable for a moment and tries.
    b.stop().await;
    let failed = call(
        &to_a,
        &Request::Migrate {
            name: "keeper".parse().unwrap(),
            to: "beta".parse().unwrap(),
        },
    )
    .await;
    assert!(failed.is_err(), "{failed:?}");
    // Nothing moved, nothing was lost: alpha serves with the same memory.
    let notes = Request::Invoke {
        name: "keeper".parse().unwrap(),
        body: b"notes".to_vec(),
        caller: None,
        hops: 0,
    };
    match call(&to_a, &notes).await.unwrap() {
        Response::Invoked { body, host, .. } => assert_eq!(
            (body.as_slice(), host.as_str()),
            (&b"precious"[..], "alpha")
        ),
        other => panic!("{other:?}"),
    }
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_with_a_stale_epoch_is_fenced_off() {
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

    // Beta is handed "twin" at epoch 2 (as a migration alpha never finished
    // would leave it), with a valid memory blob made locally.
    let runtime = edgehost_runtime::RuntimeBuilder::new(dir.path().join("local-cache"))
        .build()
        .unwrap();
    let component = runtime.load(&bytes).unwrap();
    let mut local = runtime
        .instantiate(&component, "twin", edgehost_runtime::Services::default())
        .unwrap();
    local.init(&[]).unwrap();
    local.handle(b"remember from the newer epoch").unwrap();
    let state = local.export_state().unwrap();
    // Only a host may send the migration's steps: they come with alpha's
    // certificate, as alpha's own handoff would.
    let as_alpha = endpoint_as(dir.path(), "alpha", Role::Host);
    let (to_b_as_alpha, _) = connect(&as_alpha, b.addr).await.unwrap();
    call(
        &to_b_as_alpha,
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
    // A pre-copy that does not hash to its digest is refused.
    let garbled = call(
        &to_b_as_alpha,
        &Request::Precopy {
            name: "twin".parse().unwrap(),
            epoch: 2,
            state_digest: Digest::of(b"something else"),
            state: state.clone(),
        },
    )
    .await;
    assert!(
        matches!(&garbled, Err(Error::Remote { message, .. }) if message.contains("digest")),
        "{garbled:?}"
    );
    call(
        &to_b_as_alpha,
        &Request::Precopy {
            name: "twin".parse().unwrap(),
            epoch: 2,
            state_digest: Digest::of(&state),
            state: state.clone(),
        },
    )
    .await
    .unwrap();
    // Nothing changed since the pre-copy: the final delta has no block.
    call(
        &to_b_as_alpha,
        &Request::Transfer {
            name: "twin".parse().unwrap(),
            epoch: 2,
            state_digest: Digest::of(&state),
            len: state.len() as u64,
            blocks: edgehost_fleet::delta::diff(&state, &state),
        },
    )
    .await
    .unwrap();
    // A wrong epoch is refused.
    let stale = call(
        &to_b_as_alpha,
        &Request::Commit {
            name: "twin".parse().unwrap(),
            epoch: 1,
        },
    )
    .await;
    assert!(
        matches!(
            stale,
            Err(Error::Remote {
                kind: ErrorKind::NotFound,
                ..
            })
        ),
        "{stale:?}"
    );
    call(
        &to_b_as_alpha,
        &Request::Commit {
            name: "twin".parse().unwrap(),
            epoch: 2,
        },
    )
    .await
    .unwrap();

    // Alpha hears that beta serves "twin" at a higher epoch and drops its copy.
    let mut fenced = false;
    for _ in 0..100 {
        if let Response::Status(r) = call(&to_a, &Request::Status).await.unwrap()
            && r.agents.is_empty()
        {
            fenced = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(fenced, "alpha kept a stale copy");
    // Calls through alpha reach the epoch-2 owner.
    let notes = Request::Invoke {
        name: "twin".parse().unwrap(),
        body: b"notes".to_vec(),
        caller: None,
        hops: 0,
    };
    match call(&to_a, &notes).await.unwrap() {
        Response::Invoked { body, host, .. } => {
            assert_eq!(
                (body.as_slice(), host.as_str()),
                (&b"from the newer epoch"[..], "beta")
            )
        }
        other => panic!("{other:?}"),
    }
    b.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn the_metrics_endpoint_counts_agents_and_calls() {
    let dir = tempfile::tempdir().unwrap();
    new_fleet(dir.path());
    let port = free_tcp_addr();
    let host = spawn(HostConfig {
        metrics_listen: Some(port),
        ..host_config(dir.path(), "alpha")
    })
    .await;
    let client = client_endpoint(dir.path(), "ops");
    let (conn, _) = connect(&client, host.addr).await.unwrap();
    let bytes = std::fs::read(edgehost_tests::MEMORY_AGENT).unwrap();
    let digest = Digest::of(&bytes);
    upload(&conn, digest, &bytes, |_| {}).await.unwrap();
    call(
        &conn,
        &Request::Deploy {
            name: "m".parse().unwrap(),
            digest,
            config: vec![],
        },
    )
    .await
    .unwrap();
    for _ in 0..3 {
        call(
            &conn,
            &Request::Invoke {
                name: "m".parse().unwrap(),
                body: b"stats".to_vec(),
                caller: None,
                hops: 0,
            },
        )
        .await
        .unwrap();
    }
    let scrape = async || scrape_metrics(port).await;
    let text = scrape().await;
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(text.contains("\nedgehost_agents 1\n"), "{text}");
    assert!(text.contains("\nedgehost_invocations_total 3\n"), "{text}");
    assert!(
        text.contains(&format!("\nedgehost_upload_bytes_total {}\n", bytes.len())),
        "{text}"
    );
    assert!(text.contains("\nedgehost_policy_generation 0\n"), "{text}");
    assert!(text.contains("\nedgehost_migrations_total 0\n"), "{text}");

    // A migration away is counted, with its downtime and state bytes.
    let beta = start_host_with_peers(dir.path(), "beta", vec![host.addr.to_string()]).await;
    wait_until_peers(&conn, 2).await;
    let report = match call(
        &conn,
        &Request::Migrate {
            name: "m".parse().unwrap(),
            to: "beta".parse().unwrap(),
        },
    )
    .await
    .unwrap()
    {
        Response::Migrated(report) => report,
        other => panic!("{other:?}"),
    };
    let text = scrape().await;
    assert!(text.contains("\nedgehost_agents 0\n"), "{text}");
    assert!(text.contains("\nedgehost_migrations_total 1\n"), "{text}");
    assert!(
        text.contains("\nedgehost_migration_failures_total 0\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "\nedgehost_migration_state_bytes_total {}\n",
            report.state_bytes
        )),
        "{text}"
    );
    beta.stop().await;
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poisoned_agent_is_restarted_from_its_durable_state_with_a_backoff() {
    let dir = tempfile::tempdir().unwrap();
    new_fleet(dir.path());
    let mut config = host_config(dir.path(), "alpha");
    config.limits.call_timeout_ms = 300;
    let host = spawn(config).await;
    let (conn, _) = connect(&client_endpoint(dir.path(), "ops"), host.addr)
        .await
        .unwrap();
    let bytes = std::fs::read(edgehost_tests::HOSTILE_AGENT).unwrap();
    let digest = Digest::of(&bytes);
    upload(&conn, digest, &bytes, |_| {}).await.unwrap();
    call(
        &conn,
        &Request::Deploy {
            name: "wild".parse().unwrap(),
            digest,
            config: vec![],
        },
    )
    .await
    .unwrap();
    let send = |body: &'static str| {
        let conn = conn.clone();
        async move {
            call(
                &conn,
                &Request::Invoke {
                    name: "wild".parse().unwrap(),
                    body: body.as_bytes().to_vec(),
                    caller: None,
                    hops: 0,
                },
            )
            .await
        }
    };
    let body = |r: Result<Response, Error>| match r.unwrap() {
        Response::Invoked { body, .. } => String::from_utf8(body).unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(body(send("echo one").await), "one");
    // A call that runs past its deadline poisons the instance; the next
    // call gets a fresh one at once.
    assert!(send("loop").await.is_err());
    assert_eq!(body(send("echo two").await), "two");
    // Poisoned again soon after: the restart waits for its backoff.
    assert!(send("loop").await.is_err());
    let early = send("echo three").await;
    assert!(
        matches!(&early, Err(Error::Remote { message, .. }) if message.contains("restarting")),
        "{early:?}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    assert_eq!(body(send("echo three").await), "three");
    host.stop().await;
}

/// The value of the metric `name` the host at `port` exports.
async fn metric(port: std::net::SocketAddr, name: &str) -> f64 {
    let text = scrape_metrics(port).await;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

/// The status the host behind `conn` reports for `agent`, and its last
/// wake-up time.
async fn agent_status(conn: &quinn::Connection, agent: &str) -> (String, Option<f64>) {
    match call(conn, &Request::Status).await.unwrap() {
        Response::Status(r) => r
            .agents
            .iter()
            .find(|a| a.name == agent)
            .map(|a| (a.status.clone(), a.wake_ms))
            .unwrap_or_else(|| panic!("{agent} is not on {}", r.name)),
        other => panic!("{other:?}"),
    }
}

/// Polls (bounded: 10 s) until `agent` hibernates on the host behind `conn`.
async fn wait_until_hibernating(conn: &quinn::Connection, agent: &str) {
    for _ in 0..100 {
        if agent_status(conn, agent).await.0 == "hibernating" {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{agent} never hibernated");
}

/// An agent with no call for `hibernate_after_ms` hibernates: its state on
/// disk, its instance dropped. The next call wakes it with that state and
/// the wake is reported. A hibernating agent migrates without being woken:
/// its stored state is what moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_agent_hibernates_wakes_on_a_call_and_moves_asleep() {
    let dir = tempfile::tempdir().unwrap();
    new_fleet(dir.path());
    let port = free_tcp_addr();
    let mut config = host_config(dir.path(), "alpha");
    config.limits.hibernate_after_ms = 300;
    config.metrics_listen = Some(port);
    let a = spawn(config).await;
    let b = start_host_with_peers(dir.path(), "beta", vec![a.addr.to_string()]).await;
    let client = client_endpoint(dir.path(), "ops");
    let (to_a, _) = connect(&client, a.addr).await.unwrap();
    let (to_b, _) = connect(&client, b.addr).await.unwrap();
    wait_until_peers(&to_a, 2).await;
    let bytes = std::fs::read(edgehost_tests::MEMORY_AGENT).unwrap();
    let digest = Digest::of(&bytes);
    upload(&to_a, digest, &bytes, |_| {}).await.unwrap();
    for name in ["sleeper", "mover"] {
        deploy(&to_a, name, digest).await.unwrap();
        assert_eq!(invoke(&to_a, name, b"remember one").await.0, b"noted #1");
    }

    wait_until_hibernating(&to_a, "sleeper").await;
    wait_until_hibernating(&to_a, "mover").await;
    assert_eq!(agent_status(&to_a, "sleeper").await.1, None);
    assert_eq!(metric(port, "edgehost_agents_hibernating").await, 2.0);
    assert_eq!(metric(port, "edgehost_agent_wakes_total").await, 0.0);

    // A call wakes it, with the note it had.
    assert_eq!(
        invoke(&to_a, "sleeper", b"remember two").await.0,
        b"noted #2"
    );
    assert_eq!(invoke(&to_a, "sleeper", b"notes").await.0, b"one\ntwo");
    let (status, wake_ms) = agent_status(&to_a, "sleeper").await;
    assert_eq!(status, "serving");
    assert!(wake_ms.is_some_and(|ms| ms > 0.0), "{wake_ms:?}");
    assert_eq!(metric(port, "edgehost_agent_wakes_total").await, 1.0);

    // The other moves while it sleeps: nothing wakes it here, and its note
    // arrives at beta.
    let request = Request::Migrate {
        name: "mover".parse().unwrap(),
        to: "beta".parse().unwrap(),
    };
    match call(&to_a, &request).await.unwrap() {
        Response::Migrated(report) => assert!(report.state_bytes > 0, "{report:?}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(metric(port, "edgehost_agent_wakes_total").await, 1.0);
    assert_eq!(invoke(&to_b, "mover", b"notes").await.0, b"one");
    assert_eq!(agent_status(&to_b, "mover").await.0, "serving");
    for h in [b, a] {
        h.stop().await;
    }
}

/// `max_agents` counts awake agents: past it, a deploy or a wake puts the
/// agent called least recently to sleep, and the host holds up to
/// `max_hosted`. With hibernation off, `max_agents` is what it holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_agents_the_least_recently_called_agent_hibernates() {
    let dir = tempfile::tempdir().unwrap();
    new_fleet(dir.path());
    let with_limits = |name: &str, hibernate_after_ms: u64| {
        let mut config = host_config(dir.path(), name);
        config.limits.max_agents = 2;
        config.limits.max_hosted = 3;
        config.limits.hibernate_after_ms = hibernate_after_ms;
        config
    };
    let a = spawn(with_limits("alpha", 600_000)).await;
    let b = spawn(with_limits("beta", 0)).await;
    let client = client_endpoint(dir.path(), "ops");
    let bytes = std::fs::read(edgehost_tests::MEMORY_AGENT).unwrap();
    let digest = Digest::of(&bytes);
    let (to_a, _) = connect(&client, a.addr).await.unwrap();
    upload(&to_a, digest, &bytes, |_| {}).await.unwrap();
    for name in ["one", "two", "three"] {
        deploy(&to_a, name, digest).await.unwrap();
        assert_eq!(invoke(&to_a, name, b"remember it").await.0, b"noted #1");
    }
    // "one" was called least recently when "three" came.
    assert_eq!(agent_status(&to_a, "one").await.0, "hibernating");
    assert_eq!(agent_status(&to_a, "two").await.0, "serving");
    // Calling it wakes it, with its note, and "two" goes to sleep.
    assert_eq!(invoke(&to_a, "one", b"remember more").await.0, b"noted #2");
    assert_eq!(agent_status(&to_a, "one").await.0, "serving");
    assert_eq!(agent_status(&to_a, "two").await.0, "hibernating");
    assert_eq!(agent_status(&to_a, "three").await.0, "serving");
    // max_hosted is reached.
    let refused = deploy(&to_a, "four", digest).await.unwrap_err().to_string();
    assert!(
        refused.contains("holds its maximum of 3 agents"),
        "{refused}"
    );

    // Hibernation off: two agents are all the host holds.
    let (to_b, _) = connect(&client, b.addr).await.unwrap();
    upload(&to_b, digest, &bytes, |_| {}).await.unwrap();
    deploy(&to_b, "one", digest).await.unwrap();
    deploy(&to_b, "two", digest).await.unwrap();
    let refused = deploy(&to_b, "three", digest)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("holds its maximum of 2 agents"),
        "{refused}"
    );
    for h in [b, a] {
        h.stop().await;
    }
}

/// A host restarted with more agents than `max_agents` brings the first
/// back awake and the rest hibernating, each with every note it had.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_host_brings_agents_past_max_agents_back_asleep() {
    let dir = tempfile::tempdir().unwrap();
    new_fleet(dir.path());
    let mut config = host_config(dir.path(), "alpha");
    config.limits.max_agents = 1;
    config.limits.hibernate_after_ms = 600_000;
    let host = spawn(config.clone()).await;
    let client = client_endpoint(dir.path(), "ops");
    let (conn, _) = connect(&client, host.addr).await.unwrap();
    let bytes = std::fs::read(edgehost_tests::MEMORY_AGENT).unwrap();
    let digest = Digest::of(&bytes);
    upload(&conn, digest, &bytes, |_| {}).await.unwrap();
    let names = ["one", "two", "three"];
    for name in names {
        deploy(&conn, name, digest).await.unwrap();
        assert_eq!(
            invoke(&conn, name, format!("remember {name}").as_bytes())
                .await
                .0,
            b"noted #1"
        );
    }
    host.stop().await;

    let host = spawn(config).await;
    let (conn, _) = connect(&client, host.addr).await.unwrap();
    let mut statuses: Vec<String> = Vec::new();
    for name in names {
        statuses.push(agent_status(&conn, name).await.0);
    }
    statuses.sort();
    assert_eq!(statuses, ["hibernating", "hibernating", "serving"]);
    for name in names {
        assert_eq!(invoke(&conn, name, b"notes").await.0, name.as_bytes());
    }
    host.stop().await;
}
