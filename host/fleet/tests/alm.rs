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
    start_host_with(fleet, name, peers, (lat, lon), horizon_requests, |c| c).await
}

async fn start_host_with(
    fleet: &Path,
    name: &str,
    peers: Vec<String>,
    (lat, lon): (f64, f64),
    horizon_requests: f64,
    adjust: impl FnOnce(HostConfig) -> HostConfig,
) -> TestHost {
    spawn(adjust(HostConfig {
        peers,
        labels: Labels {
            site: name.into(),
            lat,
            lon,
            bandwidth_mbps: 20.0,
            // Pricing tests do not depend on this machine's speed.
            core_gcps: Some(2.0),
        },
        alm: edgehost_fleet::config::AlmSettings {
            hop_threshold: 1,
            safety_fraction: 0.0,
            horizon_requests,
            check_ms: 0,
            ..Default::default()
        },
        ..host_config(fleet, name)
    }))
    .await
}

/// Deploys the memory agent as `follower` on the host behind `conn` and
/// gives it one note.
async fn deploy_follower(conn: &quinn::Connection) {
    let bytes = std::fs::read(edgehost_tests::MEMORY_AGENT).unwrap();
    let digest = Digest::of(&bytes);
    upload(conn, digest, &bytes, |_| {}).await.unwrap();
    deploy_stored_follower(conn, digest).await;
}

/// Deploys `follower` from the component `digest` the host already
/// stores, and gives it one note.
async fn deploy_stored_follower(conn: &quinn::Connection, digest: Digest) {
    call(
        conn,
        &Request::Deploy {
            name: "follower".parse().unwrap(),
            digest,
            config: vec![],
        },
    )
    .await
    .unwrap();
    call(
        conn,
        &Request::Invoke {
            name: "follower".parse().unwrap(),
            body: b"remember where I began".to_vec(),
            caller: None,
            hops: 0,
        },
    )
    .await
    .unwrap();
}

/// Beijing, a site a few kilometres away, and Singapore.
async fn three_sites(
    dir: &Path,
    horizon_requests: f64,
) -> (TestHost, TestHost, TestHost, quinn::Connection) {
    three_sites_with(dir, horizon_requests, |c| c).await
}

/// [`three_sites`], with Beijing's configuration adjusted.
async fn three_sites_with(
    dir: &Path,
    horizon_requests: f64,
    adjust: impl FnOnce(HostConfig) -> HostConfig,
) -> (TestHost, TestHost, TestHost, quinn::Connection) {
    new_fleet(dir);
    let alpha = start_host_with(
        dir,
        "beijing",
        vec![],
        (39.90, 116.40),
        horizon_requests,
        adjust,
    )
    .await;
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
    deploy_follower(&to_alpha).await;
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
        moved.reasons.iter().any(|r| r.contains("user moved")),
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

/// A host forgets a user's attachment when the agent leaves it: a new
/// agent of the same name, deployed there later, is not chased after the
/// earlier agent's user by ALM's periodic check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_agent_of_a_departed_name_does_not_inherit_its_users_attachment() {
    let dir = tempfile::tempdir().unwrap();
    let (alpha, near, far, to_alpha) = three_sites_with(dir.path(), 1000.0, |mut c| {
        c.alm.check_ms = 200;
        c
    })
    .await;
    let moved = attach(&to_alpha, "follower", "singapore").await;
    assert_eq!(moved.decision, "moved to singapore", "{moved:?}");
    let client = client_endpoint(dir.path(), "ops");
    let (to_far, _) = connect(&client, far.addr).await.unwrap();
    call(
        &to_far,
        &Request::Release {
            name: "follower".parse().unwrap(),
        },
    )
    .await
    .unwrap();

    // The same name again, at Beijing, with nobody attached to it, once
    // Beijing's view of the fleet has the release (a name that runs
    // elsewhere is refused). Beijing still stores the component: only the
    // deploy travels.
    let mut gone = false;
    for _ in 0..100 {
        if let Response::Fleet(views) = call(&to_alpha, &Request::Fleet).await.unwrap()
            && views
                .iter()
                .all(|v| v.report.agents.iter().all(|a| a.name != "follower"))
        {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(gone, "Beijing never saw the release");
    let digest = Digest::of(&std::fs::read(edgehost_tests::MEMORY_AGENT).unwrap());
    deploy_stored_follower(&to_alpha, digest).await;
    let events_before = match call(&to_alpha, &Request::Events).await.unwrap() {
        Response::Events(events) => events.len(),
        other => panic!("{other:?}"),
    };
    // Ten periodic checks.
    tokio::time::sleep(std::time::Duration::from_millis(2000)).await;
    assert_eq!(
        invoke(&to_alpha, "follower", b"notes").await,
        (b"where I began".to_vec(), "beijing".to_owned())
    );
    match call(&to_alpha, &Request::Events).await.unwrap() {
        Response::Events(events) => {
            let since: Vec<_> = events.iter().skip(events_before).collect();
            assert!(
                since.iter().all(|e| !e.decision.starts_with("moved")),
                "{since:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    for h in [far, near, alpha] {
        h.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_llm_is_consulted_on_a_migration_and_a_move_of_its_that_does_not_pay_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // The LLM would send the agent next door, while its user is in
    // Singapore: that move loses time, so the colony's decision stands.
    let llm = stub_llm(
        r#"{"placement": {"follower": "beijing-east"}, "rationale": "closer to the old user"}"#,
    );
    let (alpha, near, far, to_alpha) = three_sites_with(dir.path(), 1000.0, |c| HostConfig {
        llm: Some(edgehost_fleet::config::LlmSettings {
            endpoint: llm,
            model: "stub".into(),
            api_key_env: None,
            timeout_ms: 5_000,
        }),
        ..c
    })
    .await;
    let moved = attach(&to_alpha, "follower", "singapore").await;
    assert_eq!(moved.decision, "moved to singapore", "{moved:?}");
    // Next door either loses time outright or gains less than Singapore,
    // depending on how busy each host looks: the in-process hosts share
    // one process, whose measured CPU is a matter of timing. Either way
    // the LLM's move is refused and the colony's plan stands.
    assert!(
        moved.reasons.iter().any(|r| {
            r.starts_with("LLM: kept the colony's plan: proposed migration does not pay")
                || r.starts_with("LLM: kept the colony's plan: proposed plan worse")
        }),
        "{moved:?}"
    );
    assert_eq!(
        invoke(&to_alpha, "follower", b"notes").await,
        (b"where I began".to_vec(), "singapore".to_owned())
    );
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

/// Beijing and Shanghai on loopback, and Singapore behind a relay that
/// delays every datagram by 50 ms each way: peers reach Singapore only
/// through the relay (it advertises the relay's address), so the link
/// between Beijing and Singapore has a 100 ms round trip. The agent lives
/// in Beijing. Returns once Beijing's own measurement of that link shows
/// the delay.
async fn a_slow_link_to_singapore(
    dir: &Path,
    horizon_requests: f64,
) -> (Vec<TestHost>, relay::Relay, quinn::Connection) {
    new_fleet(dir);
    let beijing = start_host_at(dir, "beijing", vec![], (39.90, 116.40), horizon_requests).await;
    let shanghai = start_host_at(
        dir,
        "shanghai",
        vec![beijing.addr.to_string()],
        (31.23, 121.47),
        horizon_requests,
    )
    .await;
    let relay = relay::relay(std::time::Duration::from_millis(50)).await;
    let advertised = relay.addr;
    let singapore = start_host_with(
        dir,
        "singapore",
        vec![beijing.addr.to_string()],
        (1.35, 103.82),
        horizon_requests,
        |c| HostConfig {
            advertise: Some(advertised),
            ..c
        },
    )
    .await;
    relay.forward_to(singapore.addr);
    let client = client_endpoint(dir, "ops");
    let (to_beijing, _) = connect(&client, beijing.addr).await.unwrap();
    wait_until_peers(&to_beijing, 3).await;
    // The transport's own round-trip estimate of the link, as Beijing
    // reports it (bounded wait: 20 s).
    let mut rtt_ms = 0.0;
    for _ in 0..200 {
        if let Response::Status(r) = call(&to_beijing, &Request::Status).await.unwrap() {
            rtt_ms = r.model.link("singapore").map_or(0.0, |l| l.rtt_ms);
        }
        if (95.0..250.0).contains(&rtt_ms) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        (95.0..250.0).contains(&rtt_ms),
        "Beijing measures {rtt_ms} ms to Singapore through a 100 ms relay"
    );
    deploy_follower(&to_beijing).await;
    (vec![singapore, shanghai, beijing], relay, to_beijing)
}

/// The seconds a reason like "to X: saves 1.234 s over 20 requests, the
/// move takes 0.456 s" gives for the saving and the move.
fn saving_and_cost(event: &edgehost_fleet::protocol::Event) -> (f64, f64) {
    let reason = event
        .reasons
        .iter()
        .find(|r| r.contains(" saves ") && r.contains("the move takes"))
        .unwrap_or_else(|| panic!("no priced move in {event:?}"));
    let number_after = |word: &str| -> f64 {
        let rest = &reason[reason.find(word).unwrap() + word.len()..];
        rest.split_whitespace().next().unwrap().parse().unwrap()
    };
    (number_after(" saves "), number_after("the move takes "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_behind_a_slow_link_draws_the_agent_when_the_saving_pays_for_the_move() {
    let dir = tempfile::tempdir().unwrap();
    let (hosts, _relay, to_beijing) = a_slow_link_to_singapore(dir.path(), 20.0).await;
    let moved = attach(&to_beijing, "follower", "singapore").await;
    // Singapore reaches Shanghai directly (only its peers' traffic to it
    // crosses the relay), so by measurement Shanghai is as close to the
    // user as Singapore itself, and cheaper to move to: either is a move
    // toward the user.
    let target = moved
        .decision
        .strip_prefix("moved to ")
        .unwrap_or_else(|| panic!("no move: {moved:?}"))
        .to_owned();
    assert!(
        ["singapore", "shanghai"].contains(&target.as_str()),
        "{moved:?}"
    );
    let (saving, cost) = saving_and_cost(&moved);
    // 20 requests, each saving the measured 100 ms round trip.
    assert!((1.8..5.0).contains(&saving), "{moved:?}");
    assert!(saving > cost, "{moved:?}");
    if target == "singapore" {
        // The move crosses the slow link: its round trips are in its cost.
        assert!(cost > 0.3, "{moved:?}");
    }
    assert_eq!(
        invoke(&to_beijing, "follower", b"notes").await,
        (b"where I began".to_vec(), target)
    );
    // The user goes straight back: the move back would pay as well, but an
    // agent that just moved stays its minimum dwell time (30 s).
    let back = attach(&to_beijing, "follower", "beijing").await;
    assert_eq!(back.decision, "stay", "{back:?}");
    assert!(
        back.reasons
            .iter()
            .any(|r| r.contains("stays at least 30 s")),
        "{back:?}"
    );
    for h in hosts {
        h.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_behind_a_slow_link_does_not_draw_the_agent_when_the_move_costs_more() {
    let dir = tempfile::tempdir().unwrap();
    // One request before the next decision: one round trip saved does not
    // pay for a move that takes four.
    let (hosts, _relay, to_beijing) = a_slow_link_to_singapore(dir.path(), 1.0).await;
    let stay = attach(&to_beijing, "follower", "singapore").await;
    assert_eq!(stay.decision, "stay", "{stay:?}");
    let (saving, cost) = saving_and_cost(&stay);
    assert!((0.09..0.25).contains(&saving), "{stay:?}");
    assert!(saving < cost, "{stay:?}");
    assert_eq!(
        invoke(&to_beijing, "follower", b"notes").await,
        (b"where I began".to_vec(), "beijing".to_owned())
    );
    for h in hosts {
        h.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_hosts_checked_every_second_for_a_minute_report_no_pressure() {
    let dir = tempfile::tempdir().unwrap();
    // The default safety margin: a host with under 10% of a resource free
    // has its agents checked, and says so in the events.
    let every_second = |c: HostConfig| HostConfig {
        alm: edgehost_fleet::config::AlmSettings {
            check_ms: 1000,
            safety_fraction: 0.1,
            ..c.alm
        },
        ..c
    };
    new_fleet(dir.path());
    let alpha = start_host_with(
        dir.path(),
        "beijing",
        vec![],
        (39.90, 116.40),
        20.0,
        every_second,
    )
    .await;
    let beta = start_host_with(
        dir.path(),
        "shanghai",
        vec![alpha.addr.to_string()],
        (31.23, 121.47),
        20.0,
        every_second,
    )
    .await;
    let client = client_endpoint(dir.path(), "ops");
    let (to_alpha, _) = connect(&client, alpha.addr).await.unwrap();
    wait_until_peers(&to_alpha, 2).await;
    deploy_follower(&to_alpha).await;
    tokio::time::sleep(std::time::Duration::from_secs(60)).await;
    let events = match call(&to_alpha, &Request::Events).await.unwrap() {
        Response::Events(events) => events,
        other => panic!("{other:?}"),
    };
    assert!(
        events
            .iter()
            .all(|e| !e.reasons.iter().any(|r| r.contains("running short"))),
        "{events:?}"
    );
    // The host process's own load is measured (the hosts of this test
    // binary share one process, so it counts them all).
    match call(&to_alpha, &Request::Status).await.unwrap() {
        Response::Status(r) => {
            let cpu = r.status.process_cpu_percent;
            assert!(cpu > 0.0, "{cpu}");
        }
        other => panic!("{other:?}"),
    }
    for h in [beta, alpha] {
        h.stop().await;
    }
}
