//! A policy plugin to copy. It prefers servers that keep the most memory
//! free after taking the agent, and keeps the reference cost model.
//!
//! To make your own: copy this crate, rename it in `Cargo.toml`, change the
//! methods of [`Policy`] you want to change and delete the rest (each one
//! you leave out is the reference implementation). `docs/plugins.md` says
//! how to build, check and install it, and what every field means.
#![cfg(target_family = "wasm")]

use edgehost_policy::{Instance, Plan, Policy, PolicyError, reference};

/// The policy. It keeps no state: the host may call it from fresh
/// instances, any number of times, and expects the same answers.
struct MostFreeMemory;

impl Policy for MostFreeMemory {
    /// One score per (agent, server), row-major: every server of agent 0,
    /// then every server of agent 1, and so on. Finite, not negative,
    /// larger is better.
    fn score(instance: &Instance) -> Result<Vec<f64>, PolicyError> {
        let mut scores = Vec::with_capacity(instance.agents.len() * instance.servers.len());
        for agent in &instance.agents {
            for server in &instance.servers {
                let free_after = server.remaining().memory_gb - agent.demand.memory_gb;
                let fraction = if server.capacity.memory_gb > 0.0 {
                    (free_after / server.capacity.memory_gb).clamp(0.0, 1.0)
                } else {
                    0.0
                };
                // Squared, so a roomy server is strongly preferred; a small
                // floor keeps every server possible.
                scores.push(fraction * fraction + 1e-3);
            }
        }
        Ok(scores)
    }

    /// The objective of each plan: here the reference one, unchanged. Add
    /// your own terms to it, or replace it.
    fn objectives(instance: &Instance, plans: &[Plan]) -> Result<Vec<f64>, PolicyError> {
        reference::objectives(instance, plans)
    }
}

edgehost_policy::export_policy!(MostFreeMemory);
