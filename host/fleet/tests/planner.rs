//! The Python planner agent with an LLM: a valid plan from the LLM is
//! used; garbage, or an answer that comes too late, falls back to the
//! rule-based plan, which says why.

// Test helpers unwrap freely: a failure is the test failing.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use edgehost_fleet::client::{call, connect, upload};
use edgehost_fleet::config::LlmSettings;
use edgehost_fleet::protocol::{Digest, Request, Response};
use serde_json::Value;
use support::{client_endpoint, host_config, invoke, new_fleet, spawn, stub_llm_after};

/// Plans `prompt` (for an image file) on a host whose LLM answers
/// `answer` after `delay`.
async fn plan_with(answer: &'static str, delay: Duration, prompt: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    new_fleet(dir.path());
    let host = spawn(edgehost_fleet::HostConfig {
        llm: Some(LlmSettings {
            endpoint: stub_llm_after(answer, delay),
            model: "stub".into(),
            api_key_env: None,
            timeout_ms: 1_000,
        }),
        // One compile of the 18 MB component serves every scenario.
        cache_dir: Some(
            std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("planner-cache"),
        ),
        ..host_config(dir.path(), "alpha")
    })
    .await;
    let (conn, _) = connect(&client_endpoint(dir.path(), "ops"), host.addr)
        .await
        .unwrap();
    let bytes = std::fs::read(edgehost_tests::PYTHON_PLANNER_AGENT).unwrap();
    let digest = Digest::of(&bytes);
    upload(&conn, digest, &bytes, |_| {}).await.unwrap();
    let deployed = call(
        &conn,
        &Request::Deploy {
            name: "planner".parse().unwrap(),
            digest,
            config: vec![],
        },
    )
    .await
    .unwrap();
    assert!(
        matches!(deployed, Response::Deployed { .. }),
        "{deployed:?}"
    );
    let task = serde_json::json!({
        "prompt": prompt,
        "file": {"name": "photo.png", "bytes": 30_000},
    });
    let (reply, _) = invoke(&conn, "planner", task.to_string().as_bytes()).await;
    host.stop().await;
    serde_json::from_slice(&reply).unwrap()
}

fn actions(plan: &Value) -> Vec<(&str, &str)> {
    plan["subtasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["action"].as_str().unwrap(), s["agent"].as_str().unwrap()))
        .collect()
}

/// The scenarios run one after the other: the first compiles the planner,
/// the others load it from the cache.
#[tokio::test]
async fn the_planner_uses_a_valid_llm_plan_and_falls_back_from_a_bad_or_late_one() {
    a_valid_llm_plan_is_used().await;
    garbage_from_the_llm_falls_back_to_rules().await;
    a_late_llm_falls_back_to_rules().await;
}

async fn a_valid_llm_plan_is_used() {
    let plan = plan_with(
        r#"Here is the plan: {"subtasks": [{"id": "d", "action": "describe", "needs": []},
           {"id": "q", "action": "query", "needs": ["d"], "k": 3},
           {"id": "a", "action": "add", "needs": ["d"]}]}"#,
        Duration::ZERO,
        "find similar photos, then keep this one",
    )
    .await;
    assert_eq!(plan["planner"], "llm", "{plan:#}");
    assert_eq!(
        actions(&plan),
        [
            ("describe", "features"),
            ("query", "index"),
            ("add", "index")
        ]
    );
    assert_eq!(plan["subtasks"][1]["k"], 3);
    assert_eq!(plan["subtasks"][0]["demand"]["cpu_millicores"], 500);
}

async fn garbage_from_the_llm_falls_back_to_rules() {
    // Prose, then a plan that queries before describing.
    for answer in [
        "I would search the index for it.",
        r#"{"subtasks": [{"id": "q", "action": "query", "needs": []}]}"#,
        r#"{"subtasks": [{"id": "x", "action": "format-disk", "needs": []}]}"#,
    ] {
        let plan = plan_with(answer, Duration::ZERO, "find images like this").await;
        assert_eq!(plan["planner"], "rules", "{plan:#}");
        assert!(
            plan["note"].as_str().unwrap().contains("refused"),
            "{plan:#}"
        );
        assert_eq!(
            actions(&plan),
            [("describe", "features"), ("query", "index")]
        );
    }
}

async fn a_late_llm_falls_back_to_rules() {
    let plan = plan_with(
        r#"{"subtasks": [{"id": "s", "action": "stats", "needs": []}]}"#,
        Duration::from_secs(3),
        "index this photo",
    )
    .await;
    assert_eq!(plan["planner"], "rules", "{plan:#}");
    assert!(
        plan["note"].as_str().unwrap().contains("LLM failed"),
        "{plan:#}"
    );
    assert_eq!(actions(&plan), [("describe", "features"), ("add", "index")]);
}
