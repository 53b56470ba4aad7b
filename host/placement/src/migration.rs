//! ALM, the ant-colony migration of Algorithm 2.
//!
//! A migration decision starts from a running deployment. It is *triggered*
//! for an agent when its user has moved more than `hop_threshold` hops away
//! from the agent's server, or when the agent's server is short of
//! resources (its free fraction of memory, storage, bandwidth or compute is
//! under `safety_fraction`). For every triggered agent the colony picks a
//! target among "stay" and the neighbouring servers N(e_a) (eq. 14), prices
//! each ant's migration plan with the EAM net gain ([`crate::gain`]: delay,
//! move time, dependency damage, the load its own moves add and the
//! pressure it relieves), subtracts a penalty for every move to a server
//! without room (eq. 15), evaporates (eq. 16) and reinforces the best
//! plan's targets (eq. 17). Trails, the roulette and the parameter checks
//! are ALP's ([`crate::pheromone`]).
//!
//! The colony's best plan is then pruned: moves to servers without room are
//! dropped, then moves whose marginal net gain (the plan's gain minus the
//! gain without that move) is not positive are dropped one at a time, worst
//! first, until every remaining move pays for itself. ALM therefore never
//! recommends a migration with a negative net gain.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::constraint::{Capacity, Limit};
use crate::gain::MigrationContext;
use crate::model::{Instance, Plan};
use crate::pheromone::{ColonyParams, Pheromone, roulette};
use crate::policy::Policy;
use crate::{Error, Result};

/// Why an agent is a migration candidate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum TriggerReason {
    /// The user is `hops` away, more than the threshold.
    UserMoved {
        /// Hops between the user's server and the agent's.
        hops: u32,
    },
    /// The agent's server is short of a resource.
    ResourcePressure {
        /// The resource.
        limit: Limit,
        /// Its free fraction.
        free_fraction: f64,
    },
}

impl std::fmt::Display for TriggerReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TriggerReason::UserMoved { hops } => write!(f, "user moved {hops} hop(s) away"),
            TriggerReason::ResourcePressure {
                limit,
                free_fraction,
            } => write!(
                f,
                "{} running short: {:.0}% free",
                format!("{limit:?}").to_lowercase(),
                free_fraction * 100.0
            ),
        }
    }
}

/// A triggered agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trigger {
    /// The agent.
    pub agent: usize,
    /// Why.
    pub reason: TriggerReason,
}

/// One recommended migration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Move {
    /// The agent.
    pub agent: usize,
    /// Its server now.
    pub from: usize,
    /// Its new server.
    pub to: usize,
    /// Its marginal net gain in the final plan, seconds (always positive).
    pub net_gain_s: f64,
}

/// What ALM recommends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MigrationPlan {
    /// The deployment after the moves.
    pub deployment: Plan,
    /// The moves (empty: stay put).
    pub moves: Vec<Move>,
    /// Total net gain of the moves, seconds (zero when there are none).
    pub net_gain_s: f64,
    /// What triggered the decision.
    pub triggers: Vec<Trigger>,
    /// Moves of the colony's best plan that were dropped, with why.
    pub dropped: Vec<String>,
    /// Policy fallbacks that happened during the run.
    pub fallbacks: Vec<String>,
}

/// Parameters of ALM's colony.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlmParams {
    /// Ants per iteration.
    pub ants: usize,
    /// Iterations.
    pub iterations: usize,
    /// Pheromone weight (eq. 14).
    pub alpha: f64,
    /// Heuristic weight (eq. 14).
    pub beta: f64,
    /// Evaporation (eq. 16), in `(0, 1]`.
    pub rho: f64,
    /// Reinforcement constant Q (eq. 17).
    pub q: f64,
    /// Fitness penalty per move to a server without room, seconds (eq. 15).
    pub penalty_s: f64,
}

impl AlmParams {
    /// Refuses parameters that make the colony meaningless, with the same
    /// rules as ALP's, and a negative or non-finite penalty.
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
        if self.penalty_s.is_finite() && self.penalty_s >= 0.0 {
            Ok(())
        } else {
            Err(Error::InvalidParameters(format!(
                "penalty_s must be finite and not negative: {}",
                self.penalty_s
            )))
        }
    }
}

impl Default for AlmParams {
    fn default() -> Self {
        Self {
            ants: 10,
            iterations: 20,
            alpha: 1.0,
            beta: 2.0,
            rho: 0.1,
            q: 1.0,
            penalty_s: 1000.0,
        }
    }
}

/// The agents a decision must consider, with why (an agent listed once,
/// for the first reason found).
pub fn triggers(
    instance: &Instance,
    deployment: &Plan,
    context: &MigrationContext,
) -> Vec<Trigger> {
    let mut room = Capacity::new(instance);
    for (a, &e) in deployment.assignment.iter().enumerate() {
        room.take(e, instance.agents[a].demand);
    }
    let pressure: Vec<Option<(Limit, f64)>> = instance
        .servers
        .iter()
        .enumerate()
        .map(|(e, s)| {
            let r = room.room(e);
            let frac = |left: f64, cap: f64| if cap > 0.0 { left / cap } else { 1.0 };
            let fractions = [
                (Limit::Memory, frac(r.memory_gb, s.capacity.memory_gb)),
                (Limit::Storage, frac(r.storage_gb, s.capacity.storage_gb)),
                (
                    Limit::Bandwidth,
                    frac(r.bandwidth_mbps, s.capacity.bandwidth_mbps),
                ),
                // Measured utilisation already includes running agents.
                (Limit::Compute, 1.0 - s.cpu_busy),
            ];
            fractions
                .into_iter()
                .filter(|&(_, f)| f < context.safety_fraction)
                .min_by(|x, y| x.1.total_cmp(&y.1))
        })
        .collect();
    let mut out = Vec::new();
    for (a, &e) in deployment.assignment.iter().enumerate() {
        let user = context.user_servers[instance.agents[a].task];
        let hops = instance.topology.hops(user, e);
        if hops > context.hop_threshold {
            out.push(Trigger {
                agent: a,
                reason: TriggerReason::UserMoved { hops },
            });
        } else if let Some((limit, free_fraction)) = pressure[e] {
            out.push(Trigger {
                agent: a,
                reason: TriggerReason::ResourcePressure {
                    limit,
                    free_fraction,
                },
            });
        }
    }
    out
}

/// N(e_a): the servers agent `a`, on `from`, may move to: its
/// neighbourhood, less the servers of an architecture it cannot run on.
pub fn candidates(
    instance: &Instance,
    context: &MigrationContext,
    a: usize,
    from: usize,
) -> Vec<usize> {
    (0..instance.servers.len())
        .filter(|&e| {
            e != from
                && instance.runs_on(a, e)
                && (context.neighbourhood_hops == 0
                    || instance.topology.hops(from, e) <= context.neighbourhood_hops)
        })
        .collect()
}

/// Moves of `after` (relative to `before`) that do not fit, in agent order:
/// each move takes its room from the deployment as it stands after the
/// previous moves.
fn misfits(instance: &Instance, before: &Plan, after: &Plan) -> Vec<usize> {
    let mut room = Capacity::new(instance);
    for (a, &e) in before.assignment.iter().enumerate() {
        room.take(e, instance.agents[a].demand);
    }
    let mut out = Vec::new();
    for (a, (&from, &to)) in before.assignment.iter().zip(&after.assignment).enumerate() {
        if from == to {
            continue;
        }
        let d = instance.agents[a].demand;
        room.give_back(from, d);
        if instance.runs_on(a, to) && room.fits(to, d) {
            room.take(to, d);
        } else {
            room.take(from, d);
            out.push(a);
        }
    }
    out
}

/// The ALM solver.
#[derive(Clone, Copy, Debug, Default)]
pub struct Alm {
    /// Its parameters.
    pub params: AlmParams,
}

impl Alm {
    /// ALM with the given parameters.
    pub fn new(params: AlmParams) -> Self {
        Self { params }
    }

    /// Decides which agents of `deployment` to move, if any. Deterministic
    /// under `seed`.
    pub fn plan(
        &self,
        instance: &Instance,
        deployment: &Plan,
        context: &MigrationContext,
        policy: &Policy,
        seed: u64,
    ) -> Result<MigrationPlan> {
        instance.validate()?;
        deployment.check_shape(instance)?;
        context.validate(instance)?;
        let p = self.params;
        p.validate()?;
        let mut fallbacks = Vec::new();
        let triggered = triggers(instance, deployment, context);
        // Staying where it is is always the first choice of a triggered
        // agent: an ant may pick it like any target.
        let movers: Vec<(usize, Vec<usize>)> = triggered
            .iter()
            .map(|t| {
                let from = deployment.assignment[t.agent];
                let mut choices = vec![from];
                choices.extend(candidates(instance, context, t.agent, from));
                (t.agent, choices)
            })
            .filter(|(_, c)| c.len() > 1)
            .collect();
        let stay = MigrationPlan {
            deployment: deployment.clone(),
            moves: Vec::new(),
            net_gain_s: 0.0,
            triggers: triggered.clone(),
            dropped: Vec::new(),
            fallbacks: Vec::new(),
        };
        if movers.is_empty() {
            return Ok(stay);
        }

        // Heuristic: each single move priced on its own, in one batch.
        let mut singles = Vec::new();
        for (a, cands) in &movers {
            for &c in cands {
                let mut after = deployment.clone();
                after.assignment[*a] = c;
                singles.push(after);
            }
        }
        let single_gain =
            policy.migration_gains(instance, deployment, context, &singles, &mut fallbacks)?;
        let mut eta: Vec<Vec<f64>> = Vec::with_capacity(movers.len());
        let mut k = 0;
        for (_, cands) in &movers {
            let gains = &single_gain[k..k + cands.len()];
            k += cands.len();
            let best = gains.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let s = best.abs().max(1.0);
            eta.push(gains.iter().map(|g| 1.0 / (1.0 + (best - g) / s)).collect());
        }
        let mut tau = Pheromone::ragged(movers.iter().map(|(_, c)| c.len()), 1.0);
        let mut weights: Vec<f64> = Vec::new();

        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut best: Option<(Vec<usize>, f64)> = None;
        for _ in 0..p.iterations {
            let mut choices: Vec<Vec<usize>> = Vec::with_capacity(p.ants);
            let mut plans = Vec::with_capacity(p.ants);
            for _ in 0..p.ants {
                let mut pick = Vec::with_capacity(movers.len());
                let mut after = deployment.clone();
                for (m, (a, cands)) in movers.iter().enumerate() {
                    weights.clear();
                    let mut total = 0.0;
                    for (t, h) in tau.row(m).iter().zip(&eta[m]) {
                        total += t.powf(p.alpha) * h.powf(p.beta);
                        weights.push(total);
                    }
                    // Every weight is positive (eta is in (0, 1], tau
                    // stays positive); "stay" is the fallback regardless.
                    let chosen = roulette(&weights, &mut rng).unwrap_or(0);
                    pick.push(chosen);
                    after.assignment[*a] = cands[chosen];
                }
                choices.push(pick);
                plans.push(after);
            }
            let gains =
                policy.migration_gains(instance, deployment, context, &plans, &mut fallbacks)?;
            let fitness: Vec<f64> = plans
                .iter()
                .zip(&gains)
                .map(|(plan, g)| g - p.penalty_s * misfits(instance, deployment, plan).len() as f64)
                .collect();
            let Some((ib, &ib_fit)) = fitness.iter().enumerate().max_by(|x, y| x.1.total_cmp(y.1))
            else {
                continue;
            };
            if best.as_ref().is_none_or(|(_, f)| ib_fit > *f) {
                best = Some((choices[ib].clone(), ib_fit));
            }
            // Eq. 16: evaporation after the ants' traversal.
            tau.evaporate(p.rho);
            // Eq. 17: reinforce the best plan's targets by Q / (1 + Cost),
            // Cost being its fitness shortfall from the best seen, scaled.
            if let Some((gb, gb_fit)) = &best {
                let s = gb_fit.abs().max(1.0);
                for (pick, fit) in [(&choices[ib], ib_fit), (gb, *gb_fit)] {
                    let cost = ((gb_fit - fit) / s).max(0.0);
                    tau.reinforce_choices(pick, p.q / (1.0 + cost));
                }
            }
        }
        let Some((pick, _)) = best else {
            return Ok(stay);
        };

        // Prune: no move to a full server, no move that does not pay.
        let mut after = deployment.clone();
        for (m, (a, cands)) in movers.iter().enumerate() {
            after.assignment[*a] = cands[pick[m]];
        }
        let mut dropped = Vec::new();
        for a in misfits(instance, deployment, &after) {
            dropped.push(format!(
                "{}: no room on {}",
                instance.agents[a].name, instance.servers[after.assignment[a]].name
            ));
            after.assignment[a] = deployment.assignment[a];
        }
        let marginals = loop {
            let moved: Vec<usize> = (0..after.assignment.len())
                .filter(|&a| after.assignment[a] != deployment.assignment[a])
                .collect();
            if moved.is_empty() {
                break Vec::new();
            }
            let mut batch = vec![after.clone()];
            for &a in &moved {
                let mut without = after.clone();
                without.assignment[a] = deployment.assignment[a];
                batch.push(without);
            }
            let g =
                policy.migration_gains(instance, deployment, context, &batch, &mut fallbacks)?;
            let marginal: Vec<(usize, f64)> = moved
                .iter()
                .enumerate()
                .map(|(i, &a)| (a, g[0] - g[i + 1]))
                .collect();
            let mut losers: Vec<(usize, f64)> = marginal
                .iter()
                .copied()
                .filter(|&(_, m)| m <= 0.0 || g[0] <= 0.0)
                .collect();
            if losers.is_empty() {
                break marginal;
            }
            losers.sort_by(|x, y| x.1.total_cmp(&y.1).then(x.0.cmp(&y.0)));
            // Revert the worst move whose reversal keeps every other move
            // within capacity (undoing one half of a swap may not).
            let undo = losers.iter().find(|&&(a, _)| {
                let mut trial = after.clone();
                trial.assignment[a] = deployment.assignment[a];
                misfits(instance, deployment, &trial).is_empty()
            });
            match undo {
                Some(&(a, m)) => {
                    dropped.push(format!(
                        "{}: marginal net gain {m:.3} s does not pay for the move",
                        instance.agents[a].name
                    ));
                    after.assignment[a] = deployment.assignment[a];
                }
                None => {
                    dropped.push(
                        "the remaining moves do not pay and cannot be undone one by one; staying put"
                            .into(),
                    );
                    after = deployment.clone();
                }
            }
        };
        let net_gain_s = if marginals.is_empty() {
            0.0
        } else {
            policy
                .migration_gains(
                    instance,
                    deployment,
                    context,
                    std::slice::from_ref(&after),
                    &mut fallbacks,
                )?
                .first()
                .copied()
                .unwrap_or(0.0)
        };
        let moves = marginals
            .into_iter()
            .map(|(agent, net_gain_s)| Move {
                agent,
                from: deployment.assignment[agent],
                to: after.assignment[agent],
                net_gain_s,
            })
            .collect();
        Ok(MigrationPlan {
            deployment: after,
            moves,
            net_gain_s,
            triggers: triggered,
            dropped,
            fallbacks,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::colony::Alp;
    use crate::gain::{shortage_points, total_net_gain_s};
    use crate::scenario::{Scenario, ScenarioConfig};

    fn placed(seed: u64) -> (Instance, Plan) {
        let inst = Scenario::new(ScenarioConfig::default())
            .generate(seed)
            .expect("scenario");
        let plan = Alp::default()
            .place(&inst, &Policy::native(), seed)
            .expect("placement")
            .plan;
        (inst, plan)
    }

    #[test]
    fn no_trigger_no_move() {
        let (inst, plan) = placed(1);
        // Users attached to the servers their entry agents run on: within H_th.
        let users = inst
            .tasks
            .iter()
            .map(|t| plan.assignment[t.agents[0]])
            .collect();
        let ctx = MigrationContext {
            hop_threshold: 100,
            ..MigrationContext::new(users)
        };
        let m = Alm::default()
            .plan(&inst, &plan, &ctx, &Policy::native(), 1)
            .expect("alm");
        assert!(m.triggers.is_empty());
        assert!(m.moves.is_empty());
        assert_eq!(m.deployment, plan);
    }

    #[test]
    fn users_moving_far_trigger_only_paying_moves() {
        for seed in 0..10 {
            let (inst, plan) = placed(seed);
            // Every user moves to the server farthest from its entry agent.
            let users: Vec<usize> = inst
                .tasks
                .iter()
                .map(|t| {
                    let e = plan.assignment[t.agents[0]];
                    (0..inst.servers.len())
                        .max_by_key(|&s| inst.topology.hops(e, s))
                        .unwrap_or(0)
                })
                .collect();
            let ctx = MigrationContext {
                hop_threshold: 1,
                ..MigrationContext::new(users)
            };
            let m = Alm::default()
                .plan(&inst, &plan, &ctx, &Policy::native(), seed)
                .expect("alm");
            assert!(!m.triggers.is_empty());
            crate::constraint::check(&inst, &m.deployment).expect("feasible after moves");
            for mv in &m.moves {
                assert!(mv.net_gain_s > 0.0, "seed {seed}: {mv:?}");
            }
            if !m.moves.is_empty() {
                assert!(m.net_gain_s > 0.0);
                let g = total_net_gain_s(&inst, &plan, &ctx, &m.deployment);
                assert!((g - m.net_gain_s).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn resource_pressure_triggers() {
        let (mut inst, plan) = placed(2);
        let e = plan.assignment[0];
        let cap = inst.servers[e].capacity.memory_gb;
        inst.servers[e].used.memory_gb = cap
            - 0.01
            - plan
                .assignment
                .iter()
                .enumerate()
                .filter(|&(_, &s)| s == e)
                .map(|(a, _)| inst.agents[a].demand.memory_gb)
                .sum::<f64>();
        let users = inst
            .tasks
            .iter()
            .map(|t| plan.assignment[t.agents[0]])
            .collect();
        let ctx = MigrationContext {
            hop_threshold: 100,
            ..MigrationContext::new(users)
        };
        let t = triggers(&inst, &plan, &ctx);
        let on_e: Vec<&Trigger> = t.iter().filter(|t| plan.assignment[t.agent] == e).collect();
        assert!(!on_e.is_empty());
        assert!(on_e.iter().all(|t| matches!(
            t.reason,
            TriggerReason::ResourcePressure {
                limit: Limit::Memory,
                ..
            }
        )));
    }

    #[test]
    fn alm_relieves_a_short_server_when_relief_is_priced() {
        let (mut inst, plan) = placed(2);
        let e = plan.assignment[0];
        let on_e = |p: &Plan| p.assignment.iter().filter(|&&s| s == e).count();
        let placed_memory: f64 = (0..plan.assignment.len())
            .filter(|&a| plan.assignment[a] == e)
            .map(|a| inst.agents[a].demand.memory_gb)
            .sum();
        inst.servers[e].used.memory_gb = inst.servers[e].capacity.memory_gb - 0.01 - placed_memory;
        // Every user where its entry agent runs: only pressure triggers.
        let users: Vec<usize> = inst
            .tasks
            .iter()
            .map(|t| plan.assignment[t.agents[0]])
            .collect();
        let ctx = |price: f64| MigrationContext {
            hop_threshold: 100,
            pressure_s_per_point: price,
            ..MigrationContext::new(users.clone())
        };
        let relieved = Alm::default()
            .plan(&inst, &plan, &ctx(1000.0), &Policy::native(), 4)
            .expect("alm");
        assert!(on_e(&relieved.deployment) < on_e(&plan), "{relieved:?}");
        assert!(
            shortage_points(&inst, &relieved.deployment, 0.1) < shortage_points(&inst, &plan, 0.1)
        );
        // Unpriced, relief is worth nothing: any move must pay by delay.
        let unpriced = Alm::default()
            .plan(&inst, &plan, &ctx(0.0), &Policy::native(), 4)
            .expect("alm");
        let g = total_net_gain_s(&inst, &plan, &ctx(0.0), &unpriced.deployment);
        assert!(unpriced.moves.is_empty() || g > 0.0, "{g}");
        assert!(unpriced.moves.iter().all(|m| m.net_gain_s > 0.0));
    }

    #[test]
    fn bad_colony_parameters_are_refused() {
        let (inst, plan) = placed(1);
        let ctx = MigrationContext::new(vec![0; inst.tasks.len()]);
        for params in [
            AlmParams {
                alpha: f64::NAN,
                ..AlmParams::default()
            },
            AlmParams {
                beta: -1.0,
                ..AlmParams::default()
            },
            AlmParams {
                penalty_s: f64::INFINITY,
                ..AlmParams::default()
            },
        ] {
            assert!(matches!(
                Alm::new(params).plan(&inst, &plan, &ctx, &Policy::native(), 1),
                Err(Error::InvalidParameters(_))
            ));
        }
    }

    #[test]
    fn gain_of_staying_is_zero() {
        let (inst, plan) = placed(3);
        let ctx = MigrationContext::new(vec![0; inst.tasks.len()]);
        assert_eq!(total_net_gain_s(&inst, &plan, &ctx, &plan), 0.0);
    }
}
