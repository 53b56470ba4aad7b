//! A latency-first policy: place every agent where its task finishes
//! soonest, whatever that costs in resources.
//!
//! The reference policy balances deployment delay, compute load, spare
//! room on each server and communication between dependent agents. This
//! one looks at time alone:
//!
//! - heuristic: `1 / (delay + 1 ms)`, where `delay` is what one request
//!   waits for the agent on that server (reaching it from the user's server,
//!   computing at the server's free rate) plus the one-off time to ship its
//!   state there and start it. Spare room does not count;
//! - objective: the total latency of all tasks (transmit, migration,
//!   initiation, processing), with no resource cost in it. `plan-cost`
//!   reports the reference breakdown with that objective;
//! - migration fitness: the reference net gain (the trait's default).
#![cfg(target_family = "wasm")]

use edgehost_policy::placement::cost::{init_time_s, report, ship_time_s};
use edgehost_policy::placement::gain::expected_delay_s;
use edgehost_policy::{Instance, Plan, PlanReport, Policy, PolicyError};

struct LatencyFirst;

/// The objective of one plan: its summed task latency, with the terms set
/// so that they add up to it.
fn latency_report(instance: &Instance, plan: &Plan) -> PlanReport {
    let mut r = report(instance, plan);
    let l = r.latency;
    r.objective.deployment_s = l.tra + l.mig + l.ini;
    r.objective.compute_s = l.pro;
    r.objective.dependency_s = 0.0;
    r.objective.total = l.total;
    r
}

impl Policy for LatencyFirst {
    fn score(instance: &Instance) -> Result<Vec<f64>, PolicyError> {
        let mut out = Vec::with_capacity(instance.agents.len() * instance.servers.len());
        for (a, agent) in instance.agents.iter().enumerate() {
            let user = instance.tasks[agent.task].user_server;
            for (e, server) in instance.servers.iter().enumerate() {
                let delay = expected_delay_s(instance, a, e, user)
                    + ship_time_s(instance, a, e)
                    + init_time_s(server.hosted + 1, &instance.params);
                out.push(1.0 / (delay + 1e-3));
            }
        }
        Ok(out)
    }

    fn objectives(instance: &Instance, plans: &[Plan]) -> Result<Vec<f64>, PolicyError> {
        Ok(plans
            .iter()
            .map(|p| latency_report(instance, p).objective.total)
            .collect())
    }

    fn plan_cost(instance: &Instance, plan: &Plan) -> Result<PlanReport, PolicyError> {
        Ok(latency_report(instance, plan))
    }
}

edgehost_policy::export_policy!(LatencyFirst);
