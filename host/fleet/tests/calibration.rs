//! The cost model priced from measurements: hosts time what they do, report
//! it, and a migration's prediction comes from those figures instead of the
//! paper's constants.

// Test helpers unwrap freely: a failure is the test failing.
#![allow(clippy::unwrap_used)]

use edgehost_fleet::HostConfig;
use edgehost_fleet::calibration::{Move, predict_migration};
use edgehost_fleet::client::{call, connect};
use edgehost_fleet::protocol::{HostModel, MigrationReport, Request, Response};

mod support;
use support::*;

async fn migrate(conn: &quinn::Connection, to: &str) -> MigrationReport {
    let request = Request::Migrate {
        name: "mem".parse().unwrap(),
        to: to.parse().unwrap(),
    };
    match call(conn, &request).await.unwrap() {
        Response::Migrated(report) => report,
        other => panic!("{other:?}"),
    }
}

async fn model_of(
    conn: &quinn::Connection,
) -> (HostModel, Vec<edgehost_fleet::protocol::AgentReport>) {
    match call(conn, &Request::Status).await.unwrap() {
        Response::Status(r) => (*r.model, r.agents),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_predicted_from_what_the_hosts_measured() {
    let pair = two_hosts().await;
    // Before anything ran, nothing is measured and the report says so.
    let (fresh, _) = model_of(&pair.to_a).await;
    assert_eq!(fresh.export, None);
    assert_eq!(fresh.import, None);

    call(
        &pair.to_a,
        &Request::Deploy {
            name: "mem".parse().unwrap(),
            digest: pair.digest,
            config: vec![],
        },
    )
    .await
    .unwrap();
    let note = format!("remember {}", "n".repeat(64 << 10));
    invoke(&pair.to_a, "mem", note.as_bytes()).await;

    // The first move is priced before the target has measured any import,
    // or this link any send: those parts are defaults, and marked so.
    let first = migrate(&pair.to_a, "beta").await;
    assert!(
        first.predicted_defaults.contains(&"transfer".to_owned()),
        "{first:?}"
    );
    assert!(!first.predicted_defaults.contains(&"export".to_owned()));

    // Warm-up moves, back and forth: each host exports, imports, starts
    // the agent and sends to the other.
    let mut last = first;
    for i in 0..5 {
        let (from, to) = if i % 2 == 0 {
            (&pair.to_b, "alpha")
        } else {
            (&pair.to_a, "beta")
        };
        last = migrate(from, to).await;
    }
    assert!(last.predicted_defaults.is_empty(), "{last:?}");

    // Each figure a host reports came from its own operations.
    let (model, _) = model_of(&pair.to_a).await;
    for (what, figure) in [
        ("export", model.export),
        ("import", model.import),
        ("start", model.start),
        ("cache load", model.cache_load),
    ] {
        let figure = figure.unwrap_or_else(|| panic!("no {what} figure: {model:?}"));
        assert!(figure.samples >= 2, "{what}: {figure:?}");
        assert!(figure.mean_ms > 0.0, "{what}: {figure:?}");
    }
    let link = model.link("beta").unwrap();
    assert!(link.rtt_ms > 0.0, "{link:?}");
    // Alpha sent the state three times (the first move, then every other
    // one), each over 16 KiB: a sample of the link's rate each.
    assert!(link.send.unwrap().samples >= 3, "{link:?}");
    // The agent lives on alpha after an odd number of moves back; a call
    // there is timed.
    invoke(&pair.to_a, "mem", b"remember timed").await;
    let (_, agents) = model_of(&pair.to_a).await;
    let timed = agents.iter().find(|a| a.name == "mem").unwrap();
    assert!(
        timed.processing.is_some_and(|e| e.samples >= 1),
        "{timed:?}"
    );

    // Priced from measurements, the prediction is of the measurement's
    // order; priced from the paper's constants, it is orders of magnitude
    // off (the reason calibration exists).
    let (defaults, _) = predict_migration(
        &HostModel::default(),
        &HostModel::default(),
        &Move {
            to: "beta",
            digest: &pair.digest,
            component_bytes: pair.bytes.len() as f64,
            state_bytes: last.state_bytes as f64,
            agents_on_target: 1,
            declared_mbps: 20.0,
        },
    );
    let measured = last.measured_ms.total_ms();
    let predicted = last.predicted_ms.total_ms();
    assert!(
        predicted > measured / 10.0 && predicted < measured * 10.0,
        "predicted {predicted} ms against {measured} ms measured: {last:?}"
    );
    assert!(
        defaults.total_ms() > measured * 10.0,
        "the defaults predict {} ms against {measured} ms",
        defaults.total_ms()
    );
    for h in [pair.a, pair.b] {
        h.stop().await;
    }
}

/// A link no migration has used is probed once it has been quiet for
/// `probe_ms`, so its pace is measured before a move needs it; with probes
/// off, nothing measures it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_link_is_probed_for_its_pace() {
    let dir = tempfile::tempdir().unwrap();
    new_fleet(dir.path());
    let probed = |name: &str, peers: Vec<String>, probe_ms: u64| HostConfig {
        peers,
        probe_ms,
        ..host_config(dir.path(), name)
    };
    let a = spawn(probed("alpha", vec![], 300)).await;
    let b = spawn(probed("beta", vec![a.addr.to_string()], 0)).await;
    let client = client_endpoint(dir.path(), "ops");
    let (to_a, _) = connect(&client, a.addr).await.unwrap();
    let (to_b, _) = connect(&client, b.addr).await.unwrap();
    wait_until_peers(&to_a, 2).await;

    let mut measured = None;
    for _ in 0..100 {
        let (model, _) = model_of(&to_a).await;
        measured = model.link("beta").and_then(|l| l.send);
        if measured.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let send = measured.expect("alpha never probed its link to beta");
    assert!(send.samples >= 1, "{send:?}");
    assert!(
        (send.mean_size - edgehost_fleet::calibration::PROBE_BYTES as f64).abs() < 1.0,
        "{send:?}"
    );
    // Beta, with probes off, has measured nothing of its link to alpha in
    // the same time.
    let (model, _) = model_of(&to_b).await;
    assert_eq!(model.link("alpha").and_then(|l| l.send), None);
    for h in [b, a] {
        h.stop().await;
    }
}
