//! The baselines of the paper's evaluation: Greedy, Random and Polling
//! (first-fit). The strong baseline, local search on the objective, is in
//! [`crate::local`].
//!
//! All three walk the agents in instance order and only ever put an agent
//! where eq. 11 and the agent limit still hold; when an agent fits nowhere
//! they fail with [`Error::NoFeasiblePlan`] instead of returning a plan that
//! breaks a limit.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::constraint::Capacity;
use crate::model::{Instance, Plan};
use crate::{Error, Result};

fn stuck(name: &str, instance: &Instance, a: usize) -> Error {
    Error::NoFeasiblePlan(format!(
        "{name}: no server has room for agent {a} ({})",
        instance.agents[a].name
    ))
}

/// Greedy: each agent goes to the server with the highest score, where the
/// score is the geometric mean of the ratios free capacity / demand over
/// memory, storage, bandwidth and compute (how many more copies of the
/// agent the server could take), computed on the memory, storage and
/// bandwidth left at that moment and on the server's free compute rate
/// (gigacycles per second over the agent's gigacycles). Demands of zero are left out of the mean. Ties go to the lower index.
pub fn greedy(instance: &Instance) -> Result<Plan> {
    instance.validate()?;
    let mut cap = Capacity::new(instance);
    let compute_left: Vec<f64> = instance
        .servers
        .iter()
        .map(|s| s.compute_remaining_gcps())
        .collect();
    let mut assignment = Vec::with_capacity(instance.agents.len());
    for (a, agent) in instance.agents.iter().enumerate() {
        let d = agent.demand;
        let mut best: Option<(usize, f64)> = None;
        for (e, &free_compute) in compute_left.iter().enumerate() {
            if !(instance.runs_on(a, e) && cap.fits(e, d)) {
                continue;
            }
            let room = cap.room(e);
            let pairs = [
                (room.memory_gb, d.memory_gb),
                (room.storage_gb, d.storage_gb),
                (room.bandwidth_mbps, d.bandwidth_mbps),
                (free_compute, agent.compute_gcyc),
            ];
            let (sum, n) = pairs
                .iter()
                .filter(|(_, demand)| *demand > 0.0)
                .fold((0.0, 0usize), |(s, n), (free, demand)| {
                    (s + (free.max(1e-12) / demand).ln(), n + 1)
                });
            let score = if n == 0 { 0.0 } else { sum / n as f64 };
            if best.is_none_or(|(_, b)| score > b) {
                best = Some((e, score));
            }
        }
        let (e, _) = best.ok_or_else(|| stuck("greedy", instance, a))?;
        cap.take(e, d);
        assignment.push(e);
    }
    Ok(Plan::new(assignment))
}

/// Random: each agent goes to a server drawn uniformly among those that
/// still have room for it (seeded).
pub fn random(instance: &Instance, seed: u64) -> Result<Plan> {
    instance.validate()?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut cap = Capacity::new(instance);
    let mut open = Vec::with_capacity(instance.servers.len());
    let mut assignment = Vec::with_capacity(instance.agents.len());
    for (a, agent) in instance.agents.iter().enumerate() {
        open.clear();
        open.extend(
            (0..instance.servers.len())
                .filter(|&e| instance.runs_on(a, e) && cap.fits(e, agent.demand)),
        );
        if open.is_empty() {
            return Err(stuck("random", instance, a));
        }
        let e = open[rng.random_range(0..open.len())];
        cap.take(e, agent.demand);
        assignment.push(e);
    }
    Ok(Plan::new(assignment))
}

/// Polling, first-fit as the paper defines it: agents are deployed one
/// after the other, each on the first server, in index order, that still
/// has room for it. (An earlier version scanned round-robin from the
/// server after the previous agent's, which spreads agents instead.)
pub fn polling(instance: &Instance) -> Result<Plan> {
    instance.validate()?;
    let n = instance.servers.len();
    let mut cap = Capacity::new(instance);
    let mut assignment = Vec::with_capacity(instance.agents.len());
    for (a, agent) in instance.agents.iter().enumerate() {
        let e = (0..n)
            .find(|&e| instance.runs_on(a, e) && cap.fits(e, agent.demand))
            .ok_or_else(|| stuck("polling", instance, a))?;
        cap.take(e, agent.demand);
        assignment.push(e);
    }
    Ok(Plan::new(assignment))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::tiny_instance;

    #[test]
    fn polling_fills_the_first_server_and_greedy_prefers_room() {
        let mut inst = tiny_instance();
        assert_eq!(polling(&inst).expect("polling").assignment, vec![0, 0]);
        // With room for one agent only, the second spills to the next server.
        inst.servers[0].max_agents = 1;
        assert_eq!(polling(&inst).expect("polling").assignment, vec![0, 1]);
        let inst = tiny_instance();
        // Server 0 has twice the memory and four times the free compute.
        assert_eq!(greedy(&inst).expect("greedy").assignment[0], 0);
    }

    #[test]
    fn random_is_seeded_and_feasible() {
        let inst = tiny_instance();
        for seed in 0..20 {
            let plan = random(&inst, seed).expect("random");
            assert_eq!(plan, random(&inst, seed).expect("random"));
            crate::constraint::check(&inst, &plan).expect("feasible");
        }
    }

    #[test]
    fn baselines_fail_cleanly_when_full() {
        let mut inst = tiny_instance();
        for s in &mut inst.servers {
            s.max_agents = s.hosted;
        }
        assert!(matches!(greedy(&inst), Err(Error::NoFeasiblePlan(_))));
        assert!(matches!(polling(&inst), Err(Error::NoFeasiblePlan(_))));
        assert!(matches!(random(&inst, 1), Err(Error::NoFeasiblePlan(_))));
    }
}
