//! Certificate lifecycle: revoked identities refused at the handshake on
//! hosts that got the list from an operator and on hosts that got it from a
//! peer, forged and older lists changing nothing, and a host's certificate
//! rotated while it serves.

// Test helpers unwrap freely: a failure is the test failing.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use edgehost_fleet::client::{call, connect, upload};
use edgehost_fleet::identity::{Role, Validity, reissue_into, serial_of};
use edgehost_fleet::protocol::{Request, Response};
use edgehost_fleet::revocation::{Revocations, revoke};
use edgehost_fleet::tls::{bind, endpoint, host_client_config, peer_certificate};
use edgehost_fleet::{Credentials, Error, ErrorKind, HostConfig};
use edgehost_runtime::Digest;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

mod support;
use support::*;

/// Whether `endpoint` is refused by the host at `addr`: its handshake
/// fails, or (when the client's side finished before the host's verdict
/// arrived) its first request does.
async fn refused(endpoint: &quinn::Endpoint, addr: SocketAddr) -> bool {
    match connect(endpoint, addr).await {
        Err(_) => true,
        Ok((conn, _)) => call(&conn, &Request::Status).await.is_err(),
    }
}

/// Polls `check` until it holds, for up to ten seconds.
async fn eventually<F: AsyncFnMut() -> bool>(what: &str, mut check: F) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} never happened");
}

async fn offer(conn: &quinn::Connection, list: &[u8]) -> Result<u64, Error> {
    match call(
        conn,
        &Request::Revocations {
            list: list.to_vec(),
        },
    )
    .await?
    {
        Response::Revocations { number } => Ok(number),
        other => panic!("{other:?}"),
    }
}

/// The endpoint of a host's own certificate files, as a client.
fn endpoint_of(config: &HostConfig) -> quinn::Endpoint {
    let creds = Credentials::load(&config.ca, &config.cert, &config.key).unwrap();
    endpoint(&creds, "127.0.0.1:0".parse().unwrap(), false).unwrap()
}

fn reachable(views: &[edgehost_fleet::protocol::PeerView], name: &str) -> bool {
    views.iter().any(|v| v.report.name == name && v.reachable)
}

async fn views(conn: &quinn::Connection) -> Vec<edgehost_fleet::protocol::PeerView> {
    match call(conn, &Request::Fleet).await.unwrap() {
        Response::Fleet(views) => views,
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_operators_and_hosts_are_refused_where_the_list_was_sent_and_where_it_was_gossiped()
{
    let dir = tempfile::tempdir().unwrap();
    let fleet = dir.path();
    new_fleet(fleet);
    let ca = fleet.join("ca");
    let a = start_host_with_peers(fleet, "alpha", vec![]).await;
    let b = start_host_with_peers(fleet, "beta", vec![a.addr.to_string()]).await;
    let rogue_config = HostConfig {
        peers: vec![a.addr.to_string()],
        ..host_config(fleet, "rogue")
    };
    let rogue = spawn(rogue_config.clone()).await;
    let ops = client_endpoint(fleet, "ops");
    let (to_a, _) = connect(&ops, a.addr).await.unwrap();
    let (to_b, _) = connect(&ops, b.addr).await.unwrap();
    wait_until_peers(&to_a, 3).await;
    wait_until_peers(&to_b, 3).await;

    // A laptop that will be stolen, connected to both hosts.
    let stolen = endpoint_as(fleet, "stolen", Role::Operator);
    let (stolen_at_a, _) = connect(&stolen, a.addr).await.unwrap();
    let (stolen_at_b, _) = connect(&stolen, b.addr).await.unwrap();
    assert!(call(&stolen_at_a, &Request::Status).await.is_ok());
    assert!(call(&stolen_at_b, &Request::Status).await.is_ok());
    let as_rogue = endpoint_of(&rogue_config);
    assert!(!refused(&as_rogue, a.addr).await);

    // The operator revokes both and sends the list to alpha only.
    revoke(&ca, "stolen").unwrap();
    let list = revoke(&ca, "rogue").unwrap();
    assert_eq!(list.number(), 2);
    assert_eq!(offer(&to_a, list.der()).await.unwrap(), 2);

    // Alpha: new handshakes of both are refused, and the live connection
    // of the stolen laptop is closed.
    assert!(refused(&stolen, a.addr).await);
    assert!(refused(&as_rogue, a.addr).await);
    eventually(
        "the stolen laptop's connection to alpha closing",
        async || call(&stolen_at_a, &Request::Status).await.is_err(),
    )
    .await;

    // Beta never got the list from an operator: it gets it from alpha,
    // and then refuses them too.
    eventually("beta refusing the stolen laptop", async || {
        refused(&stolen, b.addr).await
    })
    .await;
    assert!(refused(&as_rogue, b.addr).await);
    eventually(
        "the stolen laptop's connection to beta closing",
        async || call(&stolen_at_b, &Request::Status).await.is_err(),
    )
    .await;
    // Beta holds list #2 now (offering the same list changes nothing).
    assert_eq!(offer(&to_b, list.der()).await.unwrap(), 2);

    // The revoked host drops out of both hosts' views: neither accepts its
    // heartbeats nor trusts its certificate when dialling it.
    eventually("rogue becoming unreachable", async || {
        !reachable(&views(&to_a).await, "rogue") && !reachable(&views(&to_b).await, "rogue")
    })
    .await;
    // The rest of the fleet is untouched.
    assert!(reachable(&views(&to_a).await, "beta"));
    assert!(call(&to_a, &Request::Status).await.is_ok());
    let (again, _) = connect(&ops, b.addr).await.unwrap();
    assert!(call(&again, &Request::Status).await.is_ok());

    rogue.stop().await;
    b.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn a_host_dialling_out_refuses_a_revoked_host_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = dir.path();
    new_fleet(fleet);
    let ca = fleet.join("ca");
    let mallory = credentials_as(fleet, "mallory", Role::Host);
    let server = endpoint(&mallory, "127.0.0.1:0".parse().unwrap(), true).unwrap();
    let server_addr = server.local_addr().unwrap();
    tokio::spawn(async move {
        while let Some(incoming) = server.accept().await {
            let _ = incoming.await;
        }
    });
    let alpha = credentials_as(fleet, "alpha", Role::Host);
    let ca_der = CertificateDer::from_pem_file(ca.join("ca.pem")).unwrap();
    let revocations = std::sync::Arc::new(Revocations::none(ca_der));
    let dialler = bind(
        None,
        host_client_config(&alpha, &revocations).unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();
    assert!(connect(&dialler, server_addr).await.is_ok());
    revocations
        .offer(revoke(&ca, "mallory").unwrap().der())
        .unwrap();
    let refused = connect(&dialler, server_addr).await;
    assert!(refused.is_err(), "{refused:?}");
}

#[tokio::test]
async fn forged_and_older_lists_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = dir.path();
    new_fleet(fleet);
    let ca = fleet.join("ca");
    let config = host_config(fleet, "alpha");
    let host = spawn(config.clone()).await;
    let ops = client_endpoint(fleet, "ops");
    let (to_host, _) = connect(&ops, host.addr).await.unwrap();
    let first = endpoint_as(fleet, "first", Role::Operator);
    let second = endpoint_as(fleet, "second", Role::Viewer);

    // Another CA with the same name, which knows the same serials: its
    // list is refused and revokes nothing.
    let evil = fleet.join("evil");
    edgehost_fleet::identity::init_fleet(&evil, "test").unwrap();
    std::fs::copy(
        ca.join(edgehost_fleet::identity::ISSUED_FILE),
        evil.join(edgehost_fleet::identity::ISSUED_FILE),
    )
    .unwrap();
    let forged = revoke(&evil, "ops").unwrap();
    let answer = offer(&to_host, forged.der()).await;
    assert!(
        matches!(
            answer,
            Err(Error::Remote {
                kind: ErrorKind::Forbidden,
                ..
            })
        ),
        "{answer:?}"
    );
    let junk = offer(&to_host, b"not a list").await;
    assert!(
        matches!(
            junk,
            Err(Error::Remote {
                kind: ErrorKind::BadRequest,
                ..
            })
        ),
        "{junk:?}"
    );
    assert!(call(&to_host, &Request::Status).await.is_ok());
    assert!(!refused(&ops, host.addr).await);

    // #1 revokes first, #2 first and second; #2 arrives, then #1.
    let one = revoke(&ca, "first").unwrap();
    let two = revoke(&ca, "second").unwrap();
    assert_eq!(offer(&to_host, two.der()).await.unwrap(), 2);
    assert_eq!(offer(&to_host, one.der()).await.unwrap(), 2);
    assert!(refused(&first, host.addr).await);
    assert!(refused(&second, host.addr).await);

    // The host kept #2 on disk: after a restart it still refuses both, and
    // #1 still does not replace it.
    host.stop().await;
    let host = spawn(config).await;
    assert!(refused(&first, host.addr).await);
    assert!(refused(&second, host.addr).await);
    let (to_host, _) = connect(&ops, host.addr).await.unwrap();
    assert_eq!(offer(&to_host, one.der()).await.unwrap(), 2);
    assert!(refused(&second, host.addr).await);
    host.stop().await;
}

/// The serial and not-after of the certificate a fresh connection to `addr`
/// sees.
async fn served_certificate(ops: &quinn::Endpoint, addr: SocketAddr) -> (Vec<u8>, i64) {
    let (conn, _) = connect(ops, addr).await.unwrap();
    let cert = peer_certificate(&conn).unwrap();
    conn.close(0u32.into(), b"done");
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).unwrap();
    (
        serial_of(cert.as_ref()).unwrap(),
        parsed.validity().not_after.timestamp(),
    )
}

/// A host of the fleet that records the serial of every certificate that
/// dials it, and hangs up, so its callers dial again.
fn recording_peer(fleet: &Path) -> (SocketAddr, std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>) {
    let creds = credentials_as(fleet, "recorder", Role::Host);
    let server = endpoint(&creds, "127.0.0.1:0".parse().unwrap(), true).unwrap();
    let addr = server.local_addr().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Some(incoming) = server.accept().await {
            let Ok(conn) = incoming.await else { continue };
            if let Ok(cert) = peer_certificate(&conn) {
                record
                    .lock()
                    .unwrap()
                    .push(serial_of(cert.as_ref()).unwrap());
            }
            conn.close(0u32.into(), b"recorded");
        }
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_is_served_without_a_restart_and_the_agent_stays() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = dir.path();
    new_fleet(fleet);
    let ca = fleet.join("ca");
    let (recorder, dialled_with) = recording_peer(fleet);
    let config = HostConfig {
        peers: vec![recorder.to_string()],
        ..host_config(fleet, "alpha")
    };
    let host = spawn(config.clone()).await;
    let ops = client_endpoint(fleet, "ops");
    let (before, _) = connect(&ops, host.addr).await.unwrap();
    let bytes = std::fs::read(edgehost_tests::MEMORY_AGENT).unwrap();
    let digest = Digest::of(&bytes);
    upload(&before, digest, &bytes, |_| {}).await.unwrap();
    call(
        &before,
        &Request::Deploy {
            name: "mem".parse().unwrap(),
            digest,
            config: vec![],
        },
    )
    .await
    .unwrap();
    invoke(&before, "mem", b"remember the rotation").await;
    let (old_serial, old_not_after) = served_certificate(&ops, host.addr).await;

    let issued = rotate(&ca, &config);
    assert_ne!(issued, old_serial);
    eventually("the host serving its new certificate", async || {
        served_certificate(&ops, host.addr).await.0 == issued
    })
    .await;
    let (_, new_not_after) = served_certificate(&ops, host.addr).await;
    assert!(new_not_after > old_not_after);
    // It dials its peers with the new certificate too.
    assert!(dialled_with.lock().unwrap().contains(&old_serial));
    eventually("the host dialling with its new certificate", async || {
        dialled_with.lock().unwrap().contains(&issued)
    })
    .await;

    // The connection opened before the rotation still works, and the agent
    // kept its memory; a new connection reaches it too.
    assert_eq!(
        invoke(&before, "mem", b"notes").await,
        (b"the rotation".to_vec(), "alpha".to_owned())
    );
    let (after, _) = connect(&ops, host.addr).await.unwrap();
    assert_eq!(invoke(&after, "mem", b"notes").await.0, b"the rotation");
    host.stop().await;
}

/// Replaces the host's certificate and key with a fresh pair valid for 200
/// days; returns the new serial.
fn rotate(ca: &Path, config: &HostConfig) -> Vec<u8> {
    reissue_into(
        ca,
        "alpha",
        Role::Host,
        Validity::days(200),
        &config.cert,
        &config.key,
    )
    .unwrap()
    .serial
}
