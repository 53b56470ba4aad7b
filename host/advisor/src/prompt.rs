//! What the LLM is shown: the instance, the constraints, the colony's plan
//! and the exact shape its answer must take.

use edgehost_placement::model::Instance;
use edgehost_placement::refine::{Purpose, RefineRequest};
use serde::Serialize;
use serde_json::{Value, json};

/// The answer format, quoted verbatim in the system message.
pub const ANSWER_FORMAT: &str = r#"{"placement": {"<agent name>": "<server name>", ...}, "rationale": "<one or two sentences>"}"#;

#[derive(Serialize)]
struct ServerView<'a> {
    name: &'a str,
    memory_free_gb: f64,
    storage_free_gb: f64,
    bandwidth_free_mbps: f64,
    agent_slots_free: usize,
    agents_running: usize,
    eta_free_mbps: f64,
    compute_free_gcps: f64,
    cores: u32,
}

#[derive(Serialize)]
struct DependencyView<'a> {
    agent: &'a str,
    volume_mb: f64,
}

#[derive(Serialize)]
struct AgentView<'a> {
    name: &'a str,
    task: &'a str,
    memory_gb: f64,
    storage_gb: f64,
    bandwidth_mbps: f64,
    compute_gcyc: f64,
    state_mb: f64,
    state_on: Option<&'a str>,
    depends_on: Vec<DependencyView<'a>>,
}

fn round(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// The instance as the LLM sees it: free resources per server, demands per
/// agent, round trips and bandwidths between servers, the users' servers.
pub fn instance_view(instance: &Instance) -> Value {
    let servers: Vec<ServerView<'_>> = instance
        .servers
        .iter()
        .map(|s| {
            let room = s.remaining();
            ServerView {
                name: &s.name,
                memory_free_gb: round(room.memory_gb),
                storage_free_gb: round(room.storage_gb),
                bandwidth_free_mbps: round(room.bandwidth_mbps),
                agent_slots_free: s.slots_remaining(),
                agents_running: s.hosted,
                eta_free_mbps: round(s.eta_remaining_mbps()),
                compute_free_gcps: round(s.compute_remaining_gcps()),
                cores: s.cores,
            }
        })
        .collect();
    let agents: Vec<AgentView<'_>> = instance
        .agents
        .iter()
        .map(|a| AgentView {
            name: &a.name,
            task: &instance.tasks[a.task].name,
            memory_gb: round(a.demand.memory_gb),
            storage_gb: round(a.demand.storage_gb),
            bandwidth_mbps: round(a.demand.bandwidth_mbps),
            compute_gcyc: round(a.compute_gcyc),
            state_mb: round(a.state_mb),
            state_on: a.origin.map(|o| instance.servers[o].name.as_str()),
            depends_on: a
                .depends_on
                .iter()
                .map(|d| DependencyView {
                    agent: &instance.agents[d.agent].name,
                    volume_mb: round(d.volume_mb),
                })
                .collect(),
        })
        .collect();
    let n = instance.servers.len();
    let mut links = Vec::new();
    for i in 0..n {
        for j in (i + 1)..n {
            links.push(json!({
                "between": [instance.servers[i].name, instance.servers[j].name],
                "rtt_ms": round(instance.topology.rtt_s(i, j) * 1000.0),
                "bandwidth_mbps": round(instance.topology.bandwidth_mbps(i, j)),
                "hops": instance.topology.hops(i, j),
            }));
        }
    }
    let tasks: Vec<Value> = instance
        .tasks
        .iter()
        .map(|t| {
            json!({
                "name": t.name,
                "prompt": t.prompt,
                "file_mb": round(t.file_mb),
                "user_server": instance.servers[t.user_server].name,
                "agents": t.agents.iter().map(|&a| instance.agents[a].name.as_str()).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({ "servers": servers, "agents": agents, "tasks": tasks, "links": links })
}

fn plan_view(instance: &Instance, assignment: &[usize]) -> Value {
    let map: serde_json::Map<String, Value> = assignment
        .iter()
        .enumerate()
        .map(|(a, &e)| {
            (
                instance.agents[a].name.clone(),
                Value::String(instance.servers[e].name.clone()),
            )
        })
        .collect();
    Value::Object(map)
}

/// The system and user messages for a request.
pub fn messages(request: &RefineRequest<'_>) -> (String, String) {
    let instance = request.instance;
    let system = format!(
        "You improve decisions of an edge-computing scheduler that places AI agents on edge servers. \
         You are given the servers, the agents, the tasks, the links and the scheduler's current plan. \
         Hard constraints on every server: the memory_gb, storage_gb and bandwidth_mbps of the agents \
         placed there must not exceed its free amounts, and it must not receive more agents than \
         agent_slots_free. Every agent must be placed on exactly one server, by name. \
         Reply with one JSON object and nothing else, of exactly this shape: {ANSWER_FORMAT}. \
         If you cannot improve the plan, return it unchanged."
    );
    let (goal, extra) = match request.purpose {
        Purpose::Placement => (
            format!(
                "Goal: minimise the deployment objective (seconds, currently {:.3}). It adds, per agent, \
                 the time to ship its state to its server (state_mb * 8 / eta_free_mbps, zero on the server \
                 that already holds the state) and its start-up time (0.8 s + 0.2 s per agent on that \
                 server); per server, the compute placed on it over compute_free_gcps; and, per dependency, \
                 the round trip plus volume_mb * 8 / link bandwidth when the two agents are on different servers.",
                request.score
            ),
            Value::Null,
        ),
        Purpose::Migration { before, context } => (
            format!(
                "The users have moved. Goal: maximise the net gain (seconds, currently {:.3}) of moving agents \
                 away from the current deployment: per-request delay saved over {} requests, minus each \
                 move's migration time, minus {} s per MB of state moved, minus {} times the extra \
                 dependency communication. Only move an agent if that move on its own gains time.",
                request.score, context.horizon_requests, context.gamma_s_per_mb, context.theta_dep
            ),
            json!({
                "current_deployment": plan_view(instance, &before.assignment),
                "users_now_on": context.user_servers.iter().map(|&e| instance.servers[e].name.as_str()).collect::<Vec<_>>(),
            }),
        ),
    };
    let user = json!({
        "goal": goal,
        "instance": instance_view(instance),
        "migration": extra,
        "scheduler_plan": plan_view(instance, &request.plan.assignment),
        "answer_format": ANSWER_FORMAT,
    })
    .to_string();
    (system, user)
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgehost_placement::Plan;
    use edgehost_placement::scenario::tiny_instance;

    #[test]
    fn prompt_names_everything_the_answer_needs() {
        let inst = tiny_instance();
        let plan = Plan::new(vec![0, 0]);
        let request = RefineRequest {
            instance: &inst,
            plan: &plan,
            score: 4.9,
            purpose: Purpose::Placement,
        };
        let (system, user) = messages(&request);
        assert!(system.contains(ANSWER_FORMAT));
        let v: Value = serde_json::from_str(&user).expect("user message is JSON");
        assert_eq!(v["scheduler_plan"]["worker"], "alpha");
        assert_eq!(v["instance"]["servers"][1]["agent_slots_free"], 9);
        assert_eq!(
            v["instance"]["agents"][1]["depends_on"][0]["agent"],
            "planner"
        );
        assert_eq!(v["instance"]["links"][0]["hops"], 2);
        assert!(v["goal"].as_str().expect("goal").contains("4.900"));
    }
}
