//! ALP, the ant-colony placement of Algorithm 1.
//!
//! Each ant walks the agents in instance order (task by task) and picks a
//! server for each with probability proportional to
//! `tau[a][e]^alpha * eta[a][e]^beta` (eq. 12), among the servers that still
//! have room for the agent (eq. 11 and the agent limit are checked at every
//! step, so an ant never takes an infeasible choice). An ant that reaches an
//! agent no server can take is *stuck*: its partial plan is discarded, not
//! repaired, and counted in [`AlpOutcome::ants_discarded`]. The plans of an
//! iteration are priced in one batch, the pheromone evaporates and the
//! iteration's best and the best-so-far plans reinforce their trails (eq. 13,
//! deposit `Q / C`), with MAX-MIN bounds keeping every trail alive.
//!
//! The heuristic matrix comes from the [`crate::heuristic::Heuristic`] once
//! per decision. On top of it an ant weighs a *dependency affinity* that
//! depends on its own partial plan: for a server `e`, `(s / (s + theta *
//! X))^beta`, where `X` is the communication time to the dependencies the
//! ant has already placed and `s` the agent's cheapest stand-alone cost. It
//! is native arithmetic over the topology, not a heuristic call, and can be
//! switched off ([`AlpParams::dependency_affinity`]).

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::constraint::Capacity;
use crate::cost::{init_time_s, ship_time_s};
use crate::local::LocalSearch;
use crate::model::{Instance, Plan};
use crate::pheromone::{ColonyParams, Pheromone, roulette};
use crate::policy::Policy;
use crate::{Error, Result};

/// Parameters of ALP.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlpParams {
    /// Ants per iteration (m).
    pub ants: usize,
    /// Iterations.
    pub iterations: usize,
    /// Weight of the pheromone in eq. 12.
    pub alpha: f64,
    /// Weight of the heuristic in eq. 12.
    pub beta: f64,
    /// Evaporation rate in eq. 13, in `(0, 1]`.
    pub rho: f64,
    /// Deposit constant Q in eq. 13: a plan of cost C deposits Q / C.
    pub q: f64,
    /// Lower pheromone bound as a fraction of the upper one.
    pub tau_min_ratio: f64,
    /// Stop after this many iterations without a better plan (0: never).
    pub patience: usize,
    /// Whether ants weigh the communication to dependencies they already
    /// placed (see the module docs).
    pub dependency_affinity: bool,
    /// Candidate list length: with more servers than this, an ant chooses
    /// an agent's server among the agent's `candidates` most attractive
    /// servers by heuristic. When none of those has room it chooses among
    /// the first `candidates` servers with room in the fleet-wide order of
    /// attractiveness (0: always every server).
    #[serde(default = "default_candidates")]
    pub candidates: usize,
    /// Whether the colony's best plan is finished by local search (moves
    /// and swaps, [`crate::local::LocalSearch::improve`]) and the result
    /// kept when the policy's objective prices it lower.
    #[serde(default = "default_polish")]
    pub polish: bool,
}

fn default_polish() -> bool {
    AlpParams::default().polish
}

fn default_candidates() -> usize {
    AlpParams::default().candidates
}

impl Default for AlpParams {
    fn default() -> Self {
        Self {
            ants: 16,
            iterations: 40,
            alpha: 1.0,
            beta: 2.0,
            rho: 0.1,
            q: 1.0,
            tau_min_ratio: 0.05,
            patience: 0,
            dependency_affinity: true,
            candidates: 16,
            polish: true,
        }
    }
}

impl AlpParams {
    /// Rejects parameters that make the colony meaningless.
    pub fn validate(&self) -> Result<()> {
        ColonyParams {
            ants: self.ants,
            iterations: self.iterations,
            alpha: self.alpha,
            beta: self.beta,
            rho: self.rho,
            q: self.q,
        }
        .validate()?;
        if (0.0..=1.0).contains(&self.tau_min_ratio) {
            Ok(())
        } else {
            Err(Error::InvalidParameters(format!(
                "tau_min_ratio must be in [0, 1]: {}",
                self.tau_min_ratio
            )))
        }
    }
}

/// What ALP found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlpOutcome {
    /// The best plan.
    pub plan: Plan,
    /// Its objective.
    pub objective: f64,
    /// Best objective of each iteration's ants (`INFINITY` when all were stuck).
    pub iteration_best: Vec<f64>,
    /// Ants that completed a plan.
    pub ants_completed: usize,
    /// Ants that got stuck and whose plans were discarded.
    pub ants_discarded: usize,
    /// How much the local-search finish lowered the colony's best
    /// objective (0 when it found nothing better or was off).
    pub polish_gain: f64,
    /// Policy fallbacks that happened during the run.
    pub fallbacks: Vec<String>,
}

/// The ALP solver.
#[derive(Clone, Copy, Debug, Default)]
pub struct Alp {
    /// Its parameters.
    pub params: AlpParams,
}

/// `x^p` with the common integer exponents done by multiplication, which
/// keeps `powf` out of the inner loop for the default parameters.
fn pow(x: f64, p: f64) -> f64 {
    if p == 1.0 {
        x
    } else if p == 2.0 {
        x * x
    } else if p == 0.0 {
        1.0
    } else if p == 3.0 {
        x * x * x
    } else {
        x.powf(p)
    }
}

impl Alp {
    /// ALP with the given parameters.
    pub fn new(params: AlpParams) -> Self {
        Self { params }
    }

    /// Places every agent of `instance`. Deterministic: the same instance,
    /// policy and seed give the same outcome.
    pub fn place(&self, instance: &Instance, policy: &Policy, seed: u64) -> Result<AlpOutcome> {
        self.params.validate()?;
        instance.validate()?;
        let p = self.params;
        let n_a = instance.agents.len();
        let n_e = instance.servers.len();
        let mut fallbacks = Vec::new();
        let eta = policy.heuristic_matrix(instance, &mut fallbacks)?;
        let eta_beta: Vec<f64> = (0..n_a)
            .flat_map(|a| {
                eta.row(a)
                    .iter()
                    .map(|&v| pow(v, p.beta))
                    .collect::<Vec<_>>()
            })
            .collect();

        // Dependencies each agent has to ones placed before it (lower index).
        let neighbours = instance.neighbours();
        let earlier: Vec<Vec<(usize, f64)>> = neighbours
            .iter()
            .enumerate()
            .map(|(a, ns)| ns.iter().copied().filter(|&(n, _)| n < a).collect())
            .collect();
        let scale: Vec<f64> = (0..n_a)
            .map(|a| {
                let agent = &instance.agents[a];
                instance
                    .servers
                    .iter()
                    .enumerate()
                    .map(|(e, s)| {
                        ship_time_s(instance, a, e)
                            + init_time_s(s.hosted + 1, &instance.params)
                            + instance.params.compute_weight * agent.compute_gcyc
                                / s.compute_remaining_gcps()
                    })
                    .fold(f64::INFINITY, f64::min)
                    .max(1e-3)
            })
            .collect();

        // Candidate lists: each agent's servers by falling heuristic, cut
        // at `candidates`, kept in index order so sampling is reproducible.
        let k = if p.candidates > 0 && p.candidates < n_e {
            p.candidates
        } else {
            n_e
        };
        let every: Vec<usize> = (0..n_e).collect();
        // The fallback order when an agent's own list is full: servers by
        // falling mean attraction over the agents, index order on ties.
        let fleet_order: Vec<usize> = if k < n_e {
            let mut mean = vec![0.0; n_e];
            for row in eta_beta.chunks_exact(n_e) {
                for (m, v) in mean.iter_mut().zip(row) {
                    *m += v;
                }
            }
            let mut order = every.clone();
            order.sort_by(|&x, &y| mean[y].total_cmp(&mean[x]).then(x.cmp(&y)));
            order
        } else {
            Vec::new()
        };
        let mut fallback: Vec<usize> = Vec::with_capacity(k);
        let candidates: Vec<usize> = if k < n_e {
            let mut out = Vec::with_capacity(n_a * k);
            let mut order: Vec<usize> = Vec::with_capacity(n_e);
            for a in 0..n_a {
                let row = &eta_beta[a * n_e..(a + 1) * n_e];
                order.clear();
                order.extend(0..n_e);
                order.select_nth_unstable_by(k - 1, |&x, &y| {
                    row[y].total_cmp(&row[x]).then(x.cmp(&y))
                });
                let mut top = order[..k].to_vec();
                top.sort_unstable();
                out.extend(top);
            }
            out
        } else {
            Vec::new()
        };

        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let base = Capacity::new(instance);
        let mut tau = Pheromone::new(n_a, n_e, 1.0);
        // tau^alpha * eta^beta, refreshed once per iteration (on the
        // candidate cells only when there are candidate lists).
        let mut attraction = eta_beta.clone();
        let mut weights: Vec<f64> = Vec::with_capacity(n_e);
        let mut open: Vec<usize> = Vec::with_capacity(n_e);
        let mut best: Option<(Plan, f64)> = None;
        let mut out = AlpOutcome {
            plan: Plan::new(Vec::new()),
            objective: f64::INFINITY,
            iteration_best: Vec::with_capacity(p.iterations),
            ants_completed: 0,
            ants_discarded: 0,
            polish_gain: 0.0,
            fallbacks: Vec::new(),
        };
        let mut since_improvement = 0;
        let theta = instance.params.theta;
        // Round trips and 8 / bandwidth per server pair, zero on the
        // diagonal, so the inner loop needs neither a branch nor a division.
        let topo = &instance.topology;
        let mut rtt = vec![0.0; n_e * n_e];
        let mut bits_time = vec![0.0; n_e * n_e];
        for e in 0..n_e {
            for f in 0..n_e {
                if e != f {
                    rtt[f * n_e + e] = topo.rtt_s(e, f);
                    bits_time[f * n_e + e] = 8.0 / topo.bandwidth_mbps(e, f);
                }
            }
        }
        let mut placed_deps: Vec<(usize, f64)> = Vec::new();

        for _ in 0..p.iterations {
            let mut plans: Vec<Plan> = Vec::with_capacity(p.ants);
            for _ in 0..p.ants {
                let mut cap = base.clone();
                // Servers before this position in `fleet_order` have no
                // slot left for the rest of this ant's walk.
                let mut first_open = 0;
                let mut assignment = vec![0usize; n_a];
                let mut stuck = false;
                for a in 0..n_a {
                    let demand = instance.agents[a].demand;
                    placed_deps.clear();
                    if p.dependency_affinity {
                        placed_deps.extend(
                            earlier[a]
                                .iter()
                                .map(|&(n, vol)| (assignment[n] * n_e, vol)),
                        );
                    }
                    let s = scale[a];
                    let shortlist = if k < n_e {
                        &candidates[a * k..(a + 1) * k]
                    } else {
                        &every[..]
                    };
                    // Cumulative weights over the servers with room; the
                    // fleet-wide fallback when no candidate has room. Off
                    // the candidate list the attraction is computed afresh.
                    let mut total = 0.0;
                    for pass in 0..2 {
                        if pass == 1 {
                            if total > 0.0 || k == n_e {
                                break;
                            }
                            while first_open < n_e && cap.slots(fleet_order[first_open]) == 0 {
                                first_open += 1;
                            }
                            fallback.clear();
                            fallback.extend(
                                fleet_order[first_open..]
                                    .iter()
                                    .copied()
                                    .filter(|&e| instance.runs_on(a, e) && cap.fits(e, demand))
                                    .take(k),
                            );
                        }
                        let servers = if pass == 0 { shortlist } else { &fallback[..] };
                        weights.clear();
                        open.clear();
                        total = 0.0;
                        for &e in servers {
                            if !(instance.runs_on(a, e) && cap.fits(e, demand)) {
                                continue;
                            }
                            let mut v = if pass == 0 {
                                attraction[a * n_e + e]
                            } else {
                                pow(tau.get(a, e), p.alpha) * eta_beta[a * n_e + e]
                            };
                            if !placed_deps.is_empty() {
                                let mut extra = 0.0;
                                for &(f, vol) in &placed_deps {
                                    extra += rtt[f + e] + vol * bits_time[f + e];
                                }
                                v *= pow(s / (s + theta * extra), p.beta);
                            }
                            total += v;
                            weights.push(total);
                            open.push(e);
                        }
                    }
                    let Some(i) = roulette(&weights, &mut rng) else {
                        stuck = true;
                        break;
                    };
                    let e = open[i];
                    cap.take(e, demand);
                    assignment[a] = e;
                }
                if stuck {
                    out.ants_discarded += 1;
                } else {
                    out.ants_completed += 1;
                    plans.push(Plan::new(assignment));
                }
            }

            if plans.is_empty() {
                out.iteration_best.push(f64::INFINITY);
                since_improvement += 1;
            } else {
                let costs = policy.objectives(instance, &plans, &mut fallbacks)?;
                let (ib, &ib_cost) = costs
                    .iter()
                    .enumerate()
                    .min_by(|x, y| x.1.total_cmp(y.1))
                    .ok_or_else(|| Error::Plugin("empty objective batch".into()))?;
                out.iteration_best.push(ib_cost);
                let first = best.is_none();
                if best.as_ref().is_none_or(|(_, c)| ib_cost < *c) {
                    best = Some((plans[ib].clone(), ib_cost));
                    since_improvement = 0;
                } else {
                    since_improvement += 1;
                }
                if let Some((gb_plan, gb_cost)) = &best {
                    let deposit = |c: f64| p.q / c.max(1e-9);
                    let tau_max = deposit(*gb_cost) / p.rho;
                    if first {
                        tau.fill(tau_max);
                    }
                    tau.evaporate(p.rho);
                    tau.reinforce(&plans[ib], deposit(ib_cost));
                    tau.reinforce(gb_plan, deposit(*gb_cost));
                    tau.clamp(tau_max * p.tau_min_ratio, tau_max);
                    if k < n_e {
                        for (a, shortlist) in candidates.chunks_exact(k).enumerate() {
                            for &e in shortlist {
                                let i = a * n_e + e;
                                attraction[i] = pow(tau.levels()[i], p.alpha) * eta_beta[i];
                            }
                        }
                    } else {
                        for ((w, &t), &h) in attraction.iter_mut().zip(tau.levels()).zip(&eta_beta)
                        {
                            *w = pow(t, p.alpha) * h;
                        }
                    }
                }
            }
            if p.patience > 0 && since_improvement >= p.patience {
                break;
            }
        }

        let (mut plan, mut objective) = best.ok_or_else(|| {
            Error::NoFeasiblePlan(format!(
                "every one of {} ants got stuck",
                out.ants_discarded
            ))
        })?;
        if p.polish {
            let polished = LocalSearch::default().improve(instance, &plan)?;
            if polished != plan {
                let cost =
                    policy.objectives(instance, std::slice::from_ref(&polished), &mut fallbacks)?;
                if let Some(&c) = cost.first().filter(|&&c| c < objective) {
                    out.polish_gain = objective - c;
                    plan = polished;
                    objective = c;
                }
            }
        }
        out.plan = plan;
        out.objective = objective;
        out.fallbacks = fallbacks;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{Scenario, ScenarioConfig};

    #[test]
    fn finds_a_feasible_plan_and_is_seeded() {
        let inst = Scenario::new(ScenarioConfig::default())
            .generate(3)
            .expect("scenario");
        let alp = Alp::default();
        let a = alp.place(&inst, &Policy::native(), 11).expect("placement");
        let b = alp.place(&inst, &Policy::native(), 11).expect("placement");
        assert_eq!(a, b);
        crate::constraint::check(&inst, &a.plan).expect("feasible");
        let best_ant = a
            .iteration_best
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min);
        assert!(a.objective <= best_ant);
        assert_eq!(a.ants_completed + a.ants_discarded, 16 * 40);
    }

    #[test]
    fn short_candidate_lists_still_fill_a_tight_fleet() {
        // 60 agents on 30 servers of two slots each: every slot is taken,
        // so most agents find their two-server list full and must fall
        // back to the fleet-wide order.
        let inst = Scenario::new(ScenarioConfig {
            servers: 30,
            tasks: 0,
            agents: Some(60),
            max_agents_per_server: 2,
            capacity_scale: 4.0,
            warm_fraction: 0.5,
        })
        .generate(5)
        .expect("scenario");
        let alp = Alp::new(AlpParams {
            candidates: 2,
            ants: 4,
            iterations: 5,
            ..AlpParams::default()
        });
        let out = alp.place(&inst, &Policy::native(), 3).expect("placement");
        crate::constraint::check(&inst, &out.plan).expect("feasible");
        assert_eq!(out.ants_discarded, 0);
    }

    #[test]
    fn the_local_search_finish_never_makes_a_plan_worse() {
        let inst = Scenario::new(ScenarioConfig {
            servers: 12,
            tasks: 0,
            agents: Some(80),
            max_agents_per_server: 10,
            capacity_scale: 2.0,
            warm_fraction: 0.5,
        })
        .generate(9)
        .expect("scenario");
        let colony = AlpParams {
            ants: 4,
            iterations: 5,
            polish: false,
            ..AlpParams::default()
        };
        let plain = Alp::new(colony)
            .place(&inst, &Policy::native(), 1)
            .expect("alp");
        let polished = Alp::new(AlpParams {
            polish: true,
            ..colony
        })
        .place(&inst, &Policy::native(), 1)
        .expect("alp");
        assert_eq!(plain.polish_gain, 0.0);
        // Same seed, same colony: the finish starts from the same plan.
        assert!((polished.objective + polished.polish_gain - plain.objective).abs() < 1e-9);
        assert!(polished.objective <= plain.objective);
        // A short colony on 80 agents leaves moves for the finish to find.
        assert!(polished.polish_gain > 0.0);
        crate::constraint::check(&inst, &polished.plan).expect("feasible");
    }

    #[test]
    fn stuck_everywhere_is_an_error() {
        let mut inst = crate::scenario::tiny_instance();
        for s in &mut inst.servers {
            s.max_agents = s.hosted;
        }
        assert!(matches!(
            Alp::default().place(&inst, &Policy::native(), 1),
            Err(Error::NoFeasiblePlan(_))
        ));
    }

    #[test]
    fn bad_parameters_are_refused() {
        let alp = Alp::new(AlpParams {
            rho: 0.0,
            ..AlpParams::default()
        });
        let inst = crate::scenario::tiny_instance();
        assert!(matches!(
            alp.place(&inst, &Policy::native(), 1),
            Err(Error::InvalidParameters(_))
        ));
    }
}
