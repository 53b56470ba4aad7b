//! An agent's durability mode: calls of a durable agent write its state
//! before they are answered, those of a snapshot agent do not, and both
//! come back with their state after the host stops.

// Test helpers unwrap freely: a failure is the test failing.
#![allow(clippy::unwrap_used)]

use edgehost_fleet::client::{call, connect, upload};
use edgehost_fleet::durable::DURABILITY_KEY;
use edgehost_fleet::protocol::Request;
use edgehost_fleet::{Error, HostConfig};
use edgehost_runtime::Digest;

mod support;
use support::*;

async fn invoke_text(conn: &quinn::Connection, name: &str, body: &str) -> String {
    String::from_utf8(invoke(conn, name, body.as_bytes()).await.0).unwrap()
}

async fn state_writes(port: std::net::SocketAddr) -> u64 {
    scrape_metrics(port)
        .await
        .lines()
        .find_map(|l| l.strip_prefix("edgehost_state_writes_total "))
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_agents_skip_the_write_per_call_and_durable_ones_do_not() {
    let dir = tempfile::tempdir().unwrap();
    new_fleet(dir.path());
    let port = free_tcp_addr();
    let config = HostConfig {
        metrics_listen: Some(port),
        // No heartbeat snapshot during the test: only calls write.
        heartbeat_ms: 600_000,
        ..host_config(dir.path(), "alpha")
    };
    let host = spawn(config.clone()).await;
    let (conn, _) = connect(&client_endpoint(dir.path(), "ops"), host.addr)
        .await
        .unwrap();
    let bytes = std::fs::read(edgehost_tests::MEMORY_AGENT).unwrap();
    let digest = Digest::of(&bytes);
    upload(&conn, digest, &bytes, |_| {}).await.unwrap();
    let deploy = |name: &'static str, config: Vec<(String, String)>| {
        let conn = conn.clone();
        async move {
            call(
                &conn,
                &Request::Deploy {
                    name: name.parse().unwrap(),
                    digest,
                    config,
                },
            )
            .await
        }
    };
    let host_key = |v: &str| vec![(DURABILITY_KEY.to_owned(), v.to_owned())];

    // A mode or a host key the host does not know is refused, one line.
    for bad in [
        host_key("sometimes"),
        vec![("edgehost.colour".to_owned(), "red".to_owned())],
    ] {
        let refused = deploy("bad", bad).await;
        assert!(
            matches!(&refused, Err(Error::Remote { message, .. })
                if message.contains("edgehost.") && !message.contains('\n')),
            "{refused:?}"
        );
    }
    deploy("durable", vec![]).await.unwrap();
    deploy("snapshot", host_key("snapshot")).await.unwrap();

    let before = state_writes(port).await;
    for n in 0..10 {
        assert_eq!(
            invoke_text(&conn, "snapshot", &format!("remember s{n}")).await,
            format!("noted #{}", n + 1)
        );
    }
    assert_eq!(
        state_writes(port).await,
        before,
        "a snapshot agent's calls write nothing"
    );
    for n in 0..10 {
        invoke_text(&conn, "durable", &format!("remember d{n}")).await;
    }
    assert_eq!(
        state_writes(port).await,
        before + 10,
        "each call of a durable agent that changed its state writes it"
    );

    // A host that stops writes a snapshot of every agent: both come back.
    host.stop().await;
    let host = spawn(config).await;
    let (conn, _) = connect(&client_endpoint(dir.path(), "ops"), host.addr)
        .await
        .unwrap();
    assert!(
        invoke_text(&conn, "snapshot", "stats")
            .await
            .starts_with("notes=10 ")
    );
    assert!(
        invoke_text(&conn, "durable", "stats")
            .await
            .starts_with("notes=10 ")
    );
    host.stop().await;
}
