//! The LLM refiner over real HTTP, against a stub chat-completions server
//! on 127.0.0.1 that each test starts for itself.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use edgehost_advisor::{AdvisorConfig, LlmRefiner};
use edgehost_placement::cost::ead_objective;
use edgehost_placement::refine::{KeptReason, Verdict, refine_migration, refine_placement};
use edgehost_placement::{
    Alm, Alp, AlpParams, Instance, MigrationContext, Optimal, Plan, Policy, Scenario,
    ScenarioConfig, baseline,
};
use serde_json::{Value, json};

/// What the stub received: the request line, headers and body.
struct Received {
    head: String,
    body: Value,
}

/// Serves one request: answers `status` with `body` after `delay`, and
/// reports what it received.
fn stub(status: u16, body: String, delay: Duration) -> (String, mpsc::Receiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let Ok((stream, _)) = listener.accept() else {
            return;
        };
        let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
        let mut head = String::new();
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
            head.push_str(&line);
        }
        let mut raw = vec![0; length];
        let _ = reader.read_exact(&mut raw);
        let _ = tx.send(Received {
            head,
            body: serde_json::from_slice(&raw).unwrap_or(Value::Null),
        });
        thread::sleep(delay);
        let mut stream = stream;
        let _ = write!(
            stream,
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
    });
    (format!("http://{addr}"), rx)
}

/// A chat completion whose message content is `content`.
fn completion(content: &str) -> String {
    json!({
        "id": "stub",
        "object": "chat.completion",
        "choices": [{ "index": 0, "message": { "role": "assistant", "content": content }, "finish_reason": "stop" }],
    })
    .to_string()
}

/// The answer format for `plan`.
fn answer(instance: &Instance, plan: &Plan) -> String {
    let placement: serde_json::Map<String, Value> = plan
        .assignment
        .iter()
        .enumerate()
        .map(|(a, &e)| {
            (
                instance.agents[a].name.clone(),
                Value::String(instance.servers[e].name.clone()),
            )
        })
        .collect();
    json!({ "placement": placement, "rationale": "stub" }).to_string()
}

fn refiner(endpoint: String, timeout: Duration) -> LlmRefiner {
    let mut config = AdvisorConfig::new(endpoint, "stub-model");
    config.timeout = timeout;
    // Cargo sets this variable for test processes; it stands in for a key.
    config.api_key_env = Some("CARGO_PKG_NAME".into());
    LlmRefiner::new(config).expect("client")
}

fn instance() -> Instance {
    Scenario::new(ScenarioConfig::default())
        .generate(4)
        .expect("scenario")
}

/// A deliberately weak colony (one ant, no local-search finish), so the
/// optimum is a real improvement.
fn weak_plan(inst: &Instance) -> (Plan, f64) {
    let out = Alp::new(AlpParams {
        ants: 1,
        iterations: 1,
        polish: false,
        ..AlpParams::default()
    })
    .place(inst, &Policy::native(), 1)
    .expect("placement");
    (out.plan, out.objective)
}

#[test]
fn better_answer_is_accepted() {
    let inst = instance();
    let (plan, objective) = weak_plan(&inst);
    let best = Optimal::default().solve(&inst).expect("optimum");
    assert!(
        best.objective < objective,
        "the stub must offer an improvement"
    );
    let (url, rx) = stub(
        200,
        completion(&format!("```json\n{}\n```", answer(&inst, &best.plan))),
        Duration::ZERO,
    );
    let r = refine_placement(
        &inst,
        &plan,
        objective,
        &refiner(url, Duration::from_secs(5)),
        &Policy::native(),
    );
    assert_eq!(r.plan, best.plan);
    assert!(
        matches!(r.verdict, Verdict::Accepted { .. }),
        "{:?}",
        r.verdict
    );
    assert!((r.objective - best.objective).abs() < 1e-9);

    let got = rx.recv().expect("request received");
    assert!(got.head.starts_with("POST /v1/chat/completions"));
    assert!(
        got.head
            .to_ascii_lowercase()
            .contains("authorization: bearer edgehost-advisor")
    );
    assert_eq!(got.body["model"], "stub-model");
    assert_eq!(got.body["response_format"]["type"], "json_object");
    // The answer is capped: a model that does not stop is cut off rather
    // than generating until the request times out.
    let cap = got.body["max_tokens"].as_u64().expect("max_tokens is set");
    assert!(
        (inst.agents.len() as u64 * 12..=inst.agents.len() as u64 * 24 + 192).contains(&cap),
        "{cap}"
    );
    let user: Value = serde_json::from_str(
        got.body["messages"][1]["content"]
            .as_str()
            .expect("user message"),
    )
    .expect("user message is JSON");
    assert_eq!(
        user["scheduler_plan"][&inst.agents[0].name],
        inst.servers[plan.assignment[0]].name
    );
}

#[test]
fn malformed_answer_keeps_the_colony_plan() {
    let inst = instance();
    let (plan, objective) = weak_plan(&inst);
    for body in [
        completion("I would move the planner to Singapore."),
        completion("{\"placement\": {\"t0.planner\": \"beijing\"}}"),
        "not json at all".to_string(),
        json!({ "choices": [] }).to_string(),
    ] {
        let (url, _rx) = stub(200, body.clone(), Duration::ZERO);
        let r = refine_placement(
            &inst,
            &plan,
            objective,
            &refiner(url, Duration::from_secs(5)),
            &Policy::native(),
        );
        assert_eq!(r.plan, plan);
        assert!(
            matches!(r.verdict, Verdict::Kept(KeptReason::Malformed(_))),
            "{body}: {:?}",
            r.verdict
        );
    }
}

#[test]
fn infeasible_answer_keeps_the_colony_plan() {
    let inst = instance();
    let (plan, objective) = weak_plan(&inst);
    // Everything on the first server: more agents than its ten slots or
    // more memory than it has.
    let all_on_one = Plan::new(vec![0; inst.agents.len()]);
    assert!(edgehost_placement::constraint::check(&inst, &all_on_one).is_err());
    let (url, _rx) = stub(200, completion(&answer(&inst, &all_on_one)), Duration::ZERO);
    let r = refine_placement(
        &inst,
        &plan,
        objective,
        &refiner(url, Duration::from_secs(5)),
        &Policy::native(),
    );
    assert_eq!(r.plan, plan);
    assert!(
        matches!(r.verdict, Verdict::Kept(KeptReason::Infeasible(_))),
        "{:?}",
        r.verdict
    );
}

#[test]
fn worse_answer_keeps_the_colony_plan() {
    let inst = instance();
    let best = Optimal::default().solve(&inst).expect("optimum");
    let worse = baseline::polling(&inst).expect("polling");
    assert!(ead_objective(&inst, &worse).total > best.objective);
    let (url, _rx) = stub(200, completion(&answer(&inst, &worse)), Duration::ZERO);
    let r = refine_placement(
        &inst,
        &best.plan,
        best.objective,
        &refiner(url, Duration::from_secs(5)),
        &Policy::native(),
    );
    assert_eq!(r.plan, best.plan);
    assert!(
        matches!(r.verdict, Verdict::Kept(KeptReason::Worse { .. })),
        "{:?}",
        r.verdict
    );
}

#[test]
fn slow_answer_times_out() {
    let inst = instance();
    let (plan, objective) = weak_plan(&inst);
    let best = Optimal::default().solve(&inst).expect("optimum");
    let (url, _rx) = stub(
        200,
        completion(&answer(&inst, &best.plan)),
        Duration::from_secs(3),
    );
    let r = refine_placement(
        &inst,
        &plan,
        objective,
        &refiner(url, Duration::from_millis(300)),
        &Policy::native(),
    );
    assert_eq!(r.plan, plan);
    match r.verdict {
        Verdict::Kept(KeptReason::Unavailable(m)) => assert!(m.contains("timed out"), "{m}"),
        other => panic!("expected a timeout, got {other:?}"),
    }
}

#[test]
fn refused_connection_and_http_errors_keep_the_colony_plan() {
    let inst = instance();
    let (plan, objective) = weak_plan(&inst);
    // A port that was just free: nothing listens there now.
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port();
    let r = refine_placement(
        &inst,
        &plan,
        objective,
        &refiner(format!("http://127.0.0.1:{port}"), Duration::from_secs(2)),
        &Policy::native(),
    );
    assert_eq!(r.plan, plan);
    assert!(
        matches!(r.verdict, Verdict::Kept(KeptReason::Unavailable(_))),
        "{:?}",
        r.verdict
    );

    let (url, _rx) = stub(500, "{\"error\": \"overloaded\"}".into(), Duration::ZERO);
    let r = refine_placement(
        &inst,
        &plan,
        objective,
        &refiner(url, Duration::from_secs(5)),
        &Policy::native(),
    );
    match r.verdict {
        Verdict::Kept(KeptReason::Unavailable(m)) => assert!(m.contains("500"), "{m}"),
        other => panic!("expected an HTTP error, got {other:?}"),
    }
}

#[test]
fn migration_answers_are_validated_too() {
    let inst = instance();
    let policy = Policy::native();
    let placed = Alp::default().place(&inst, &policy, 3).expect("placement");
    // Every user moves to the server farthest from its entry agent.
    let users: Vec<usize> = inst
        .tasks
        .iter()
        .map(|t| {
            let e = placed.plan.assignment[t.agents[0]];
            (0..inst.servers.len())
                .max_by_key(|&s| inst.topology.hops(e, s))
                .unwrap_or(0)
        })
        .collect();
    let ctx = MigrationContext {
        hop_threshold: 1,
        ..MigrationContext::new(users)
    };
    let colony = Alm::default()
        .plan(&inst, &placed.plan, &ctx, &policy, 3)
        .expect("alm");
    assert!(
        colony.net_gain_s > 0.0,
        "the users' move must pay to follow"
    );
    // The LLM suggests staying put: zero gain, worse than the colony's.
    let (url, rx) = stub(
        200,
        completion(&answer(&inst, &placed.plan)),
        Duration::ZERO,
    );
    let (decision, verdict) = refine_migration(
        &inst,
        &placed.plan,
        &ctx,
        &colony,
        &refiner(url, Duration::from_secs(5)),
        &policy,
    );
    assert_eq!(decision, colony);
    assert!(
        matches!(verdict, Verdict::Kept(KeptReason::Worse { .. })),
        "{verdict:?}"
    );
    let got = rx.recv().expect("request received");
    let user: Value = serde_json::from_str(
        got.body["messages"][1]["content"]
            .as_str()
            .expect("user message"),
    )
    .expect("user message is JSON");
    assert!(user["migration"]["current_deployment"].is_object());
}
