//! What the LLM is shown: the instance, the constraints, the colony's plan
//! and the exact shape its answer must take.
//!
//! The prompt stays small on a large fleet: every agent lists its
//! [`TOP_K`] best servers with their scores, only the servers that appear
//! in some list are described, and pairwise links are given in full only
//! up to [`MAX_LINKED_SERVERS`] servers.

use edgehost_placement::gain::total_net_gain_s;
use edgehost_placement::model::Instance;
use edgehost_placement::refine::{Purpose, RefineRequest};
use edgehost_placement::separable::Separable;
use serde::Serialize;
use serde_json::{Value, json};

/// The answer format, quoted verbatim in the system message.
pub const ANSWER_FORMAT: &str = r#"{"placement": {"<agent name>": "<server name>", ...}, "rationale": "<one or two sentences>"}"#;

/// Candidate servers shown per agent (the scheduler's choice and, for a
/// placement, the server holding the agent's state are added when they are
/// not among them). The prompt grows with agents times this, not with
/// servers squared.
pub const TOP_K: usize = 5;

/// Most servers whose round trips and bandwidths are all listed; above
/// this, only the links between the servers the scheduler's plan puts
/// dependent agents on are.
pub const MAX_LINKED_SERVERS: usize = 12;

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
struct CandidateView<'a> {
    server: &'a str,
    /// Placement: the agent's own cost there, seconds (lower is better).
    #[serde(skip_serializing_if = "Option::is_none")]
    cost_s: Option<f64>,
    /// Migration: the net gain of moving only this agent there, seconds
    /// (higher is better; its current server shows 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    gain_s: Option<f64>,
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
    candidates: Vec<CandidateView<'a>>,
}

fn round(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Each agent's best servers with their scores, best first: for a
/// placement its stand-alone cost (shipping, start-up among the running
/// agents, weighted compute), for a migration the net gain of moving it
/// alone. `keep` servers are added to every agent's list when missing.
fn shortlists(
    instance: &Instance,
    purpose: &Purpose<'_>,
    plan: &[usize],
) -> Vec<Vec<(usize, f64)>> {
    let split = Separable::new(instance);
    let n_e = instance.servers.len();
    (0..instance.agents.len())
        .map(|a| {
            let mut scored: Vec<(usize, f64)> = match purpose {
                Purpose::Placement => (0..n_e)
                    .map(|e| (e, split.fixed(a, e) + split.start_up_step(e, 0)))
                    .collect(),
                Purpose::Migration { before, context } => (0..n_e)
                    .map(|e| {
                        let mut after = (*before).clone();
                        after.assignment[a] = e;
                        // Lower is better everywhere below: negate the gain.
                        (e, -total_net_gain_s(instance, before, context, &after))
                    })
                    .collect(),
            };
            scored.sort_by(|x, y| x.1.total_cmp(&y.1).then(x.0.cmp(&y.0)));
            let mut keep = vec![plan[a]];
            match purpose {
                Purpose::Placement => keep.extend(instance.agents[a].origin),
                Purpose::Migration { before, .. } => keep.push(before.assignment[a]),
            }
            let mut top: Vec<(usize, f64)> = scored.iter().copied().take(TOP_K).collect();
            for e in keep {
                if !top.iter().any(|&(s, _)| s == e) {
                    top.extend(scored.iter().copied().find(|&(s, _)| s == e));
                }
            }
            top
        })
        .collect()
}

/// The instance as the LLM sees it: each agent's demands and candidate
/// servers, the free resources of the servers that appear anywhere, the
/// links between them (or, on a large fleet, those the plan's dependencies
/// use) and the tasks with their users' servers.
pub fn instance_view(instance: &Instance, purpose: &Purpose<'_>, plan: &[usize]) -> Value {
    let lists = shortlists(instance, purpose, plan);
    let n_e = instance.servers.len();
    let mut shown = vec![false; n_e];
    for list in &lists {
        for &(e, _) in list {
            shown[e] = true;
        }
    }
    for t in &instance.tasks {
        shown[t.user_server] = true;
    }
    let servers: Vec<ServerView<'_>> = instance
        .servers
        .iter()
        .zip(&shown)
        .filter(|&(_, &on)| on)
        .map(|(s, _)| {
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
    let migration = matches!(purpose, Purpose::Migration { .. });
    let agents: Vec<AgentView<'_>> = instance
        .agents
        .iter()
        .zip(&lists)
        .map(|(a, list)| AgentView {
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
            candidates: list
                .iter()
                .map(|&(e, v)| CandidateView {
                    server: &instance.servers[e].name,
                    cost_s: (!migration).then(|| round(v)),
                    gain_s: migration.then(|| round(-v)),
                })
                .collect(),
        })
        .collect();
    let shown_ids: Vec<usize> = (0..n_e).filter(|&e| shown[e]).collect();
    let mut pairs: Vec<(usize, usize)> = Vec::new();
    if shown_ids.len() <= MAX_LINKED_SERVERS {
        for (i, &x) in shown_ids.iter().enumerate() {
            for &y in &shown_ids[i + 1..] {
                pairs.push((x, y));
            }
        }
    } else {
        for (a, agent) in instance.agents.iter().enumerate() {
            for d in &agent.depends_on {
                let (x, y) = (plan[a].min(plan[d.agent]), plan[a].max(plan[d.agent]));
                if x != y && !pairs.contains(&(x, y)) {
                    pairs.push((x, y));
                }
            }
        }
    }
    let links: Vec<Value> = pairs
        .iter()
        .map(|&(i, j)| {
            json!({
                "between": [instance.servers[i].name, instance.servers[j].name],
                "rtt_ms": round(instance.topology.rtt_s(i, j) * 1000.0),
                "bandwidth_mbps": round(instance.topology.bandwidth_mbps(i, j)),
                "hops": instance.topology.hops(i, j),
            })
        })
        .collect();
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
    let p = &instance.params;
    let system = format!(
        "You improve decisions of an edge-computing scheduler that places AI agents on edge servers. \
         You are given the servers, the agents with their best candidate servers, the tasks, the links \
         and the scheduler's current plan. \
         Hard constraints on every server: the memory_gb, storage_gb and bandwidth_mbps of the agents \
         placed there must not exceed its free amounts, and it must not receive more agents than \
         agent_slots_free. Every agent must be placed on exactly one server, by name; choose among \
         its candidates. \
         Reply with one JSON object and nothing else, of exactly this shape: {ANSWER_FORMAT}. \
         If you cannot improve the plan, return it unchanged."
    );
    let (goal, extra) = match request.purpose {
        Purpose::Placement => (
            format!(
                "Goal: minimise the deployment objective (seconds, currently {:.3}). Each candidate's \
                 cost_s is the agent's own cost on that server: shipping its state there, starting up \
                 ({} s + {} s per agent running there; each further agent placed on the same server \
                 adds {} s to every agent started there) and its compute over compute_free_gcps. \
                 Add {} times, per dependency, the round trip plus volume_mb * 8 / link bandwidth when \
                 the two agents are on different servers.",
                request.score, p.init_base_s, p.init_per_agent_s, p.init_per_agent_s, p.theta
            ),
            Value::Null,
        ),
        Purpose::Migration { before, context } => (
            format!(
                "The users have moved. Goal: maximise the net gain (seconds, currently {:.3}) of moving agents \
                 away from the current deployment: per-request delay saved over {} requests, minus each \
                 move's migration time, minus {} s per MB of state moved, minus {} times the extra \
                 dependency communication, plus {} s per percentage point of memory, storage or \
                 bandwidth freed on a server short of it. Each candidate's gain_s is the net gain of \
                 moving only that agent there. Only move an agent if that move on its own gains time.",
                request.score,
                context.horizon_requests,
                context.gamma_s_per_mb,
                context.theta_dep,
                context.pressure_s_per_point
            ),
            json!({
                "current_deployment": plan_view(instance, &before.assignment),
                "users_now_on": context.user_servers.iter().map(|&e| instance.servers[e].name.as_str()).collect::<Vec<_>>(),
            }),
        ),
    };
    let user = json!({
        "goal": goal,
        "instance": instance_view(instance, &request.purpose, &request.plan.assignment),
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
        // The start-up constants are the instance's, not the defaults.
        let mut slow = inst.clone();
        slow.params.init_base_s = 2.5;
        let (_, user) = messages(&RefineRequest {
            instance: &slow,
            ..request
        });
        assert!(user.contains("(2.5 s + 0.2 s per agent"), "{user}");
        // Candidates are the agent's servers by its own cost, best first.
        let c = v["instance"]["agents"][0]["candidates"]
            .as_array()
            .expect("candidates");
        assert_eq!(c.len(), 2);
        assert!(c[0]["cost_s"].as_f64() <= c[1]["cost_s"].as_f64());
    }

    #[test]
    fn the_prompt_grows_with_agents_not_with_servers_squared() {
        use edgehost_placement::scenario::{Scenario, ScenarioConfig};
        let size = |servers: usize| {
            let inst = Scenario::new(ScenarioConfig {
                servers,
                tasks: 0,
                agents: Some(50),
                max_agents_per_server: 10,
                capacity_scale: 2.0,
                warm_fraction: 0.5,
            })
            .generate(1)
            .expect("scenario");
            let plan = Plan::new((0..50).map(|a| a % servers).collect());
            let request = RefineRequest {
                instance: &inst,
                plan: &plan,
                score: 1.0,
                purpose: Purpose::Placement,
            };
            let (_, user) = messages(&request);
            let v: Value = serde_json::from_str(&user).expect("JSON");
            for agent in v["instance"]["agents"].as_array().expect("agents") {
                // Its best TOP_K, plus the plan's server when not among them.
                let n = agent["candidates"].as_array().expect("candidates").len();
                assert!((TOP_K..=TOP_K + 1).contains(&n), "{n}");
            }
            user.len()
        };
        let (small, large) = (size(20), size(200));
        // Ten times the servers: the full matrix would be 100 times the
        // links; the compact prompt stays within twice the size.
        assert!(large < 2 * small, "{small} -> {large}");
    }

    #[test]
    fn migration_candidates_carry_single_move_gains() {
        use edgehost_placement::MigrationContext;
        let inst = tiny_instance();
        let before = Plan::new(vec![0, 0]);
        let context = MigrationContext::new(vec![1]);
        let request = RefineRequest {
            instance: &inst,
            plan: &before,
            score: 0.0,
            purpose: Purpose::Migration {
                before: &before,
                context: &context,
            },
        };
        let (_, user) = messages(&request);
        let v: Value = serde_json::from_str(&user).expect("JSON");
        let c = v["instance"]["agents"][0]["candidates"]
            .as_array()
            .expect("candidates");
        // Staying is on the list at zero gain.
        assert!(
            c.iter()
                .any(|x| x["server"] == "alpha" && x["gain_s"].as_f64() == Some(0.0)),
            "{c:?}"
        );
        assert!(c.iter().all(|x| x.get("cost_s").is_none()));
    }
}
