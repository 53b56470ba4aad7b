//! Lower bounds on the EAD objective, so that every plan can say how far
//! from optimal it may be.
//!
//! Where the instance fits the exact solver ([`Optimal`]), the bound is the
//! optimum itself, found by a search seeded with the plan being judged.
//! Above that, or when the search budget runs out, it is a Lagrangian bound
//! ([`lagrangian`]): the one-server-per-agent equalities and the memory,
//! storage and bandwidth limits move into the objective with multipliers,
//! and what is left splits into one small problem per server that is solved
//! exactly (which agents to take, at most its free agent slots, under the
//! convex start-up term). Any multipliers give a valid bound (weak
//! duality); subgradient steps make it tighter. The dependency terms are
//! left out of the relaxation (they are never negative), so on instances
//! where dependencies cost much the Lagrangian gap overstates the true one.

use serde::{Deserialize, Serialize};

use crate::exact::Optimal;
use crate::model::{EPSILON, Instance, Plan};
use crate::separable::Separable;
use crate::{Error, Result};

/// How a bound was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BoundMethod {
    /// The proven optimum (exact search).
    Optimum,
    /// Lagrangian relaxation with subgradient steps.
    Lagrangian,
}

/// A lower bound on the objective of every feasible plan of an instance.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LowerBound {
    /// The bound, seconds of EAD objective.
    pub value: f64,
    /// How it was obtained.
    pub method: BoundMethod,
}

impl LowerBound {
    /// The relative gap of a plan's objective to this bound:
    /// `(objective − bound) / objective`, 0 for a plan proven optimal.
    pub fn gap(&self, objective: f64) -> f64 {
        if objective <= 0.0 {
            return 0.0;
        }
        ((objective - self.value) / objective).max(0.0)
    }
}

/// Settings of the bound.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bounder {
    /// The exact solver tried first (its node budget caps the time).
    pub optimal: Optimal,
    /// Most subgradient iterations of the Lagrangian bound.
    pub iterations: usize,
}

impl Default for Bounder {
    fn default() -> Self {
        Self {
            optimal: Optimal {
                node_limit: 2_000_000,
                ..Optimal::default()
            },
            iterations: 300,
        }
    }
}

impl Bounder {
    /// A lower bound on the objective of `instance`. `incumbent` is the
    /// best feasible plan known (it seeds the exact search and steers the
    /// subgradient steps); it must satisfy the limits.
    pub fn bound(&self, instance: &Instance, incumbent: Option<&Plan>) -> Result<LowerBound> {
        match self.optimal.solve_from(instance, incumbent) {
            Ok(o) => Ok(LowerBound {
                value: o.objective,
                method: BoundMethod::Optimum,
            }),
            Err(Error::TooLarge { .. } | Error::SearchLimit { .. }) => {
                let upper = incumbent.map(|p| Separable::new(instance).total(&p.assignment));
                Ok(LowerBound {
                    value: lagrangian(instance, upper, self.iterations)?,
                    method: BoundMethod::Lagrangian,
                })
            }
            Err(e) => Err(e),
        }
    }
}

/// Per server, which resources can bind: their room, and each agent's
/// demand as a share of it.
struct Limits {
    /// `[server][resource]`: whether the resource can bind at all.
    binding: Vec<[bool; 3]>,
    /// `[server][resource]`: room left.
    room: Vec<[f64; 3]>,
}

fn demand_of(instance: &Instance, a: usize) -> [f64; 3] {
    let d = instance.agents[a].demand;
    [d.memory_gb, d.storage_gb, d.bandwidth_mbps]
}

impl Limits {
    fn new(instance: &Instance) -> Self {
        let n_a = instance.agents.len();
        let mut total = [0.0; 3];
        for a in 0..n_a {
            for (t, d) in total.iter_mut().zip(demand_of(instance, a)) {
                *t += d;
            }
        }
        let mut binding = Vec::new();
        let mut room = Vec::new();
        for server in &instance.servers {
            let r = server.remaining();
            let r = [r.memory_gb, r.storage_gb, r.bandwidth_mbps];
            // A resource whose room exceeds what all agents together ask
            // can never bind on this server.
            binding.push(std::array::from_fn(|k| {
                total[k] > r[k] + EPSILON && r[k] > EPSILON
            }));
            room.push(r);
        }
        Self { binding, room }
    }
}

/// The Lagrangian lower bound (see the module docs), after at most
/// `iterations` subgradient steps. `upper` is the objective of a known
/// feasible plan, used to size the steps; without one a guess is used. The
/// result is a valid bound whatever the number of iterations.
pub fn lagrangian(instance: &Instance, upper: Option<f64>, iterations: usize) -> Result<f64> {
    instance.validate()?;
    let split = Separable::new(instance);
    let n_a = instance.agents.len();
    let n_e = instance.servers.len();
    let limits = Limits::new(instance);
    let slots: Vec<usize> = instance
        .servers
        .iter()
        .map(|s| s.slots_remaining())
        .collect();
    // Agent a may go to e only if it fits on the empty server; decided
    // once, not at every iteration.
    let room: Vec<_> = instance.servers.iter().map(|s| s.remaining()).collect();
    let fits: Vec<bool> = (0..n_a)
        .flat_map(|a| {
            let d = instance.agents[a].demand;
            (0..n_e)
                .map(|e| slots[e] > 0 && d.fits_in(room[e]))
                .collect::<Vec<_>>()
        })
        .collect();
    let allowed = |a: usize, e: usize| fits[a * n_e + e];
    // Multipliers of "each agent on exactly one server", started at each
    // agent's cheapest server alone: the bound then starts at the sum of
    // those, and only grows.
    let mut u = Vec::with_capacity(n_a);
    for a in 0..n_a {
        let cheapest = (0..n_e)
            .filter(|&e| allowed(a, e))
            .map(|e| split.fixed(a, e) + split.start_up(e, 1))
            .fold(f64::INFINITY, f64::min);
        if !cheapest.is_finite() {
            return Err(Error::NoFeasiblePlan(format!(
                "no server can ever take agent {a} ({})",
                instance.agents[a].name
            )));
        }
        u.push(cheapest);
    }
    let demands: Vec<[f64; 3]> = (0..n_a).map(|a| demand_of(instance, a)).collect();
    let mut lambda = vec![[0.0f64; 3]; n_e];
    let mut best = f64::NEG_INFINITY;
    let mut mu = 2.0;
    let mut stale = 0;
    let mut chosen = vec![0u32; n_a];
    let mut usage = vec![[0.0f64; 3]; n_e];
    let mut reduced: Vec<(f64, usize)> = Vec::with_capacity(n_a);
    for _ in 0..iterations.max(1) {
        chosen.fill(0);
        let mut value: f64 = u.iter().sum();
        for e in 0..n_e {
            let price = lambda[e];
            let room = limits.room[e];
            value -= (0..3)
                .filter(|&k| limits.binding[e][k])
                .map(|k| price[k])
                .sum::<f64>();
            reduced.clear();
            for a in 0..n_a {
                if !allowed(a, e) {
                    continue;
                }
                let mut r = split.fixed(a, e) - u[a];
                for k in 0..3 {
                    if limits.binding[e][k] {
                        r += price[k] * demands[a][k] / room[k];
                    }
                }
                if r < 0.0 {
                    reduced.push((r, a));
                }
            }
            // Only the most negative `slots` can be taken: select them,
            // then sort those few.
            let by_cost =
                |x: &(f64, usize), y: &(f64, usize)| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1));
            if reduced.len() > slots[e] && slots[e] > 0 {
                reduced.select_nth_unstable_by(slots[e] - 1, by_cost);
                reduced.truncate(slots[e]);
            }
            reduced.sort_by(by_cost);
            // Take the k most negative, k chosen to minimise the server's
            // start-up term plus their reduced costs.
            let mut best_k = 0;
            let mut best_v = 0.0;
            let mut prefix = 0.0;
            for (k, &(r, _)) in reduced.iter().enumerate().take(slots[e]) {
                prefix += r;
                let v = split.start_up(e, k + 1) + prefix;
                if v < best_v {
                    best_v = v;
                    best_k = k + 1;
                }
            }
            value += best_v;
            usage[e] = [0.0; 3];
            for &(_, a) in &reduced[..best_k] {
                chosen[a] += 1;
                for k in 0..3 {
                    usage[e][k] += demands[a][k] / room[k].max(EPSILON);
                }
            }
        }
        if best == f64::NEG_INFINITY || value > best + 1e-12 * best.abs().max(1.0) {
            best = value;
            stale = 0;
        } else {
            stale += 1;
            if stale >= 10 {
                mu /= 2.0;
                stale = 0;
            }
        }
        let target = upper.unwrap_or(best.abs() * 1.5 + 1.0);
        if target - best <= 1e-9 * target.abs().max(1.0) || mu < 1e-4 {
            break;
        }
        // Subgradient; a multiplier held at zero by its sign does not count.
        let mut norm = 0.0;
        for &c in &chosen {
            let g = 1.0 - f64::from(c);
            norm += g * g;
        }
        for e in 0..n_e {
            for k in 0..3 {
                if limits.binding[e][k] {
                    let g = usage[e][k] - 1.0;
                    if lambda[e][k] > 0.0 || g > 0.0 {
                        norm += g * g;
                    }
                }
            }
        }
        if norm <= 0.0 {
            // The relaxed answer satisfies every relaxed constraint: no
            // multiplier can raise the bound.
            break;
        }
        let step = mu * (target - value).max(0.0) / norm;
        for (ua, &c) in u.iter_mut().zip(&chosen) {
            *ua += step * (1.0 - f64::from(c));
        }
        for e in 0..n_e {
            for k in 0..3 {
                if limits.binding[e][k] {
                    lambda[e][k] = (lambda[e][k] + step * (usage[e][k] - 1.0)).max(0.0);
                }
            }
        }
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::colony::Alp;
    use crate::cost::ead_objective;
    use crate::policy::Policy;
    use crate::scenario::{Scenario, ScenarioConfig, tiny_instance};

    fn scenario(servers: usize, tasks: usize, seed: u64) -> Instance {
        Scenario::new(ScenarioConfig {
            servers,
            tasks,
            ..ScenarioConfig::default()
        })
        .generate(seed)
        .expect("scenario")
    }

    #[test]
    fn the_lagrangian_bound_never_exceeds_the_optimum() {
        let mut instances = vec![tiny_instance()];
        for seed in 0..8 {
            instances.push(scenario(4, 2, seed));
            instances.push(scenario(3, 1, seed));
        }
        for inst in &instances {
            let optimum = Optimal::default().solve(inst).expect("solvable").objective;
            let bound = lagrangian(inst, Some(optimum), 300).expect("bound");
            assert!(bound <= optimum + 1e-9 * optimum, "{bound} > {optimum}");
            // The trivial bound (every agent alone on its cheapest server)
            // is where the ascent starts; it must not end below it.
            let start = lagrangian(inst, Some(optimum), 1).expect("bound");
            assert!(bound >= start - 1e-9, "{bound} < {start}");
        }
    }

    #[test]
    fn the_ascent_tightens_the_bound_on_crowded_servers() {
        let mut tighter = 0;
        for seed in 0..8 {
            let inst = scenario(4, 3, seed);
            let alp = Alp::default()
                .place(&inst, &Policy::native(), seed)
                .expect("alp");
            let start = lagrangian(&inst, Some(alp.objective), 1).expect("bound");
            let end = lagrangian(&inst, Some(alp.objective), 300).expect("bound");
            assert!(end <= alp.objective + 1e-9);
            if end > start * 1.01 {
                tighter += 1;
            }
        }
        assert!(tighter > 0, "subgradient steps never raised the bound");
    }

    #[test]
    fn small_instances_are_bounded_by_their_optimum() {
        let inst = scenario(4, 2, 3);
        let alp = Alp::default()
            .place(&inst, &Policy::native(), 3)
            .expect("alp");
        let b = Bounder::default()
            .bound(&inst, Some(&alp.plan))
            .expect("bound");
        assert_eq!(b.method, BoundMethod::Optimum);
        let optimum = Optimal::default().solve(&inst).expect("solvable").objective;
        assert!((b.value - optimum).abs() < 1e-9);
        let gap = b.gap(ead_objective(&inst, &alp.plan).total);
        assert!((0.0..0.05).contains(&gap), "{gap}");
    }

    #[test]
    fn large_instances_get_a_lagrangian_bound() {
        let inst = scenario(10, 6, 1);
        let alp = Alp::default()
            .place(&inst, &Policy::native(), 1)
            .expect("alp");
        let b = Bounder::default()
            .bound(&inst, Some(&alp.plan))
            .expect("bound");
        assert_eq!(b.method, BoundMethod::Lagrangian);
        assert!(b.value > 0.0 && b.value <= alp.objective);
    }
}
