//! A policy plugin to copy: the reference policy, plus a price for every
//! server switched on.
//!
//! Each server that hosts at least one agent costs [`SERVER_ON_S`] seconds
//! in the objective (think of its idle power), so plans that use fewer
//! servers win when the rest is close; and the heuristic leans towards
//! servers with the most memory left, where more agents can join.
//!
//! To make your own: copy this crate, rename it in `Cargo.toml`, change the
//! methods of [`Policy`] you want to change and delete the rest (each one
//! you leave out is the reference implementation). `docs/plugins.md` says
//! how to build, check and install it, and what every field means.
#![cfg(target_family = "wasm")]

use edgehost_policy::{Instance, Plan, PlanReport, Policy, PolicyError, reference};

/// What keeping one server switched on costs in the objective, seconds.
const SERVER_ON_S: f64 = 5.0;

/// The policy. It keeps no state: the host may call it from fresh
/// instances, any number of times, and expects the same answers.
struct ServersCost;

/// How many distinct servers `plan` uses.
fn servers_on(instance: &Instance, plan: &Plan) -> f64 {
    let mut on = vec![false; instance.servers.len()];
    for &e in &plan.assignment {
        on[e] = true;
    }
    on.iter().filter(|&&used| used).count() as f64
}

impl Policy for ServersCost {
    /// One score per (agent, server), row-major: every server of agent 0,
    /// then every server of agent 1, and so on. Finite, not negative,
    /// larger is better. Here: the reference score, times one plus the
    /// fraction of the server's memory left after taking the agent.
    fn score(instance: &Instance) -> Result<Vec<f64>, PolicyError> {
        let mut scores = reference::score(instance)?;
        let servers = instance.servers.len();
        for (a, agent) in instance.agents.iter().enumerate() {
            for (e, server) in instance.servers.iter().enumerate() {
                let left = server.remaining().memory_gb - agent.demand.memory_gb;
                let fraction = if server.capacity.memory_gb > 0.0 {
                    (left / server.capacity.memory_gb).clamp(0.0, 1.0)
                } else {
                    0.0
                };
                scores[a * servers + e] *= 1.0 + fraction;
            }
        }
        Ok(scores)
    }

    /// The objective of each plan (lower is better): the reference
    /// objective plus the price of the servers it switches on.
    fn objectives(instance: &Instance, plans: &[Plan]) -> Result<Vec<f64>, PolicyError> {
        let mut values = reference::objectives(instance, plans)?;
        for (value, plan) in values.iter_mut().zip(plans) {
            *value += SERVER_ON_S * servers_on(instance, plan);
        }
        Ok(values)
    }

    /// The breakdown of one plan: the reference one, with the servers'
    /// price counted as deployment delay so the terms still add up.
    fn plan_cost(instance: &Instance, plan: &Plan) -> Result<PlanReport, PolicyError> {
        let mut report = reference::plan_cost(instance, plan)?;
        let extra = SERVER_ON_S * servers_on(instance, plan);
        report.objective.deployment_s += extra;
        report.objective.total += extra;
        Ok(report)
    }
}

edgehost_policy::export_policy!(ServersCost);
