//! ALM over live hosts: a user who moves draws their agent along when the
//! move pays, and not otherwise. In a test binary of its own: the decision
//! prices each host's measured CPU load, so these tests must not share the
//! machine's cores with the heavier fleet tests running beside them.

// Test helpers unwrap freely: a failure is the test failing.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use edgehost_fleet::HostConfig;
use edgehost_fleet::client::{call, connect, upload};
use edgehost_fleet::config::Labels;
use edgehost_fleet::protocol::{Request, Response};
use edgehost_runtime::Digest;

mod support;
use support::*;

async fn start_host_at(
    fleet: &Path,
    name: &str,
    peers: Vec<String>,
    (lat, lon): (f64, f64),
    horizon_requests: f64,
) -> TestHost {
    spawn(HostConfig {
        peers,
        labels: Labels {
            site: name.into(),
            lat,
            lon,
            bandwidth_mbps: 20.0,
        },
        alm: edgehost_fleet::config::AlmSettings {
            hop_threshold: 1,
            safety_fraction: 0.0,
            horizon_requests,
            check_ms: 0,
        },
        ..host_config(fleet, name)
    })
    .await
}

/// Beijing, a site a few kilometres away, and Singapore.
async fn three_sites(
    dir: &Path,
    horizon_requests: f64,
) -> (TestHost, TestHost, TestHost, quinn::Connection) {
    new_fleet(dir);
    let alpha = start_host_at(dir, "beijing", vec![], (39.90, 116.40), horizon_requests).await;
    let near = start_host_at(
        dir,
        "beijing-east",
        vec![alpha.addr.to_string()],
        (39.92, 116.46),
        horizon_requests,
    )
    .await;
    let far = start_host_at(
        dir,
        "singapore",
        vec![alpha.addr.to_string()],
        (1.35, 103.82),
        horizon_requests,
    )
    .await;
    let client = client_endpoint(dir, "ops");
    let (to_alpha, _) = connect(&client, alpha.addr).await.unwrap();
    wait_until_peers(&to_alpha, 3).await;
    let bytes = std::fs::read(edgehost_tests::MEMORY_AGENT).unwrap();
    let digest = Digest::of(&bytes);
    upload(&to_alpha, digest, &bytes, |_| {}).await.unwrap();
    call(
        &to_alpha,
        &Request::Deploy {
            name: "follower".parse().unwrap(),
            digest,
            config: vec![],
        },
    )
    .await
    .unwrap();
    call(
        &to_alpha,
        &Request::Invoke {
            name: "follower".parse().unwrap(),
            body: b"remember where I began".to_vec(),
            caller: None,
            hops: 0,
        },
    )
    .await
    .unwrap();
    (alpha, near, far, to_alpha)
}

/// Waits (bounded: 15 s) until every host's last CPU sample, as the host
/// behind `conn` sees it, has been below 50% twice in a row. ALM prices
/// processing by each host's sampled load, and on a small test machine a
/// compile in a neighbouring host spikes that sample to 95%: a decision
/// taken then answers a different question than the one tested.
async fn wait_until_idle(conn: &quinn::Connection) {
    let mut quiet = 0;
    for _ in 0..150 {
        let idle = match call(conn, &Request::Fleet).await.unwrap() {
            Response::Fleet(views) => views
                .iter()
                .all(|v| v.report.status.cpu_usage_percent < 50.0),
            other => panic!("{other:?}"),
        };
        quiet = if idle { quiet + 1 } else { 0 };
        if quiet >= 2 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Reports the user of `agent` at `host` and returns ALM's one decision,
/// taken on an idle fleet.
async fn attach(
    conn: &quinn::Connection,
    agent: &str,
    host: &str,
) -> edgehost_fleet::protocol::Event {
    wait_until_idle(conn).await;
    let request = Request::Attach {
        agent: agent.parse().unwrap(),
        host: host.parse().unwrap(),
    };
    decided(call(conn, &request).await.unwrap())
}

fn decided(r: Response) -> edgehost_fleet::protocol::Event {
    match r {
        Response::Decided(mut events) => {
            assert_eq!(events.len(), 1, "{events:?}");
            events.remove(0)
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_moving_past_the_hop_threshold_draws_its_agent_along() {
    let dir = tempfile::tempdir().unwrap();
    let (alpha, near, far, to_alpha) = three_sites(dir.path(), 1000.0).await;

    // A move next door: within H_th, nothing to do.
    let stay = attach(&to_alpha, "follower", "beijing-east").await;
    assert_eq!(stay.decision, "stay", "{stay:?}");
    assert!(
        stay.reasons.iter().any(|r| r.contains("within 1 hop")),
        "{stay:?}"
    );

    // The user flies to Singapore: ALM moves the agent after them.
    let moved = attach(&to_alpha, "follower", "singapore").await;
    assert_eq!(moved.decision, "moved to singapore", "{moved:?}");
    assert!(moved.net_gain_s > 0.0);
    assert!(
        moved.reasons.iter().any(|r| r.contains("UserMoved")),
        "{moved:?}"
    );
    assert_eq!(
        invoke(&to_alpha, "follower", b"notes").await,
        (b"where I began".to_vec(), "singapore".to_owned())
    );
    // Both decisions are on record.
    match call(&to_alpha, &Request::Events).await.unwrap() {
        Response::Events(events) => {
            assert_eq!(events.iter().filter(|e| e.agent == "follower").count(), 2)
        }
        other => panic!("{other:?}"),
    }
    for h in [far, near, alpha] {
        h.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_that_does_not_pay_is_not_made() {
    let dir = tempfile::tempdir().unwrap();
    // No requests expected before the next decision: no latency saving can
    // pay for a move.
    let (alpha, near, far, to_alpha) = three_sites(dir.path(), 0.0).await;
    let stay = attach(&to_alpha, "follower", "singapore").await;
    assert_eq!(stay.decision, "stay", "{stay:?}");
    assert!(
        stay.reasons
            .iter()
            .any(|r| r.contains("no target with a positive net gain")),
        "{stay:?}"
    );
    match call(&to_alpha, &Request::Status).await.unwrap() {
        Response::Status(r) => assert_eq!(r.agents.len(), 1),
        other => panic!("{other:?}"),
    }
    for h in [far, near, alpha] {
        h.stop().await;
    }
}
