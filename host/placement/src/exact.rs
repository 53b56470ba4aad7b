//! Optimal: an exact branch-and-bound solver of the EAD objective for small
//! instances, the yardstick ALP is judged by.
//!
//! The native objective splits into per-agent terms (state shipping and
//! compute load), a per-server start-up term that grows with the agents
//! placed there, and pairwise dependency terms. Agents are branched in an
//! order that follows the dependency graph, servers tried cheapest first,
//! and a partial plan is pruned when its cost plus a lower bound on the rest
//! reaches the best plan known. The bound gives each unplaced agent its
//! cheapest server given what is placed so far; it is valid because adding
//! agents never lowers start-up costs and communication costs are never
//! negative. The solver prices plans with the native cost model only;
//! dependency links keep their direction, so an asymmetric topology is
//! priced as the objective prices it.

use serde::{Deserialize, Serialize};

use crate::constraint::{Capacity, check};
use crate::cost::ead_objective;
use crate::model::{Instance, Plan};
use crate::separable::Separable;
use crate::{Error, Result};

/// Size limits and the search budget.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Optimal {
    /// Most agents accepted.
    pub max_agents: usize,
    /// Most servers accepted.
    pub max_servers: usize,
    /// Most search nodes explored before giving up.
    pub node_limit: u64,
}

impl Default for Optimal {
    fn default() -> Self {
        Self {
            max_agents: 24,
            max_servers: 8,
            node_limit: 50_000_000,
        }
    }
}

/// The optimum and how much search it took.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExactOutcome {
    /// An optimal plan.
    pub plan: Plan,
    /// Its EAD objective.
    pub objective: f64,
    /// Search nodes explored.
    pub nodes: u64,
}

struct Search<'a> {
    split: Separable<'a>,
    order: Vec<usize>,
    n_e: usize,
    pos: Vec<Option<usize>>,
    count: Vec<usize>,
    cap: Capacity,
    best: f64,
    best_plan: Option<Vec<usize>>,
    nodes: u64,
    limit: u64,
}

impl Search<'_> {
    /// Cost of putting agent `a` on server `e` given the current partial plan.
    fn delta(&self, a: usize, e: usize) -> f64 {
        self.split.fixed(a, e)
            + self.split.start_up_step(e, self.count[e])
            + self.split.links_cost(a, e, |b| self.pos[b])
    }

    fn cheapest(&self, a: usize) -> f64 {
        let d = self.split.instance().agents[a].demand;
        (0..self.n_e)
            .filter(|&e| self.split.instance().runs_on(a, e) && self.cap.fits(e, d))
            .map(|e| self.delta(a, e))
            .fold(f64::INFINITY, f64::min)
    }

    fn descend(&mut self, depth: usize, cost: f64) -> Result<()> {
        self.nodes += 1;
        if self.nodes > self.limit {
            return Err(Error::SearchLimit { nodes: self.limit });
        }
        if depth == self.order.len() {
            if cost < self.best {
                self.best = cost;
                self.best_plan = Some(self.pos.iter().map(|p| p.unwrap_or(0)).collect());
            }
            return Ok(());
        }
        let a = self.order[depth];
        let mut rest = 0.0;
        for &b in &self.order[depth + 1..] {
            rest += self.cheapest(b);
            if !rest.is_finite() {
                // Some later agent fits nowhere already: dead branch.
                return Ok(());
            }
        }
        let d = self.split.instance().agents[a].demand;
        let mut options: Vec<(f64, usize)> = (0..self.n_e)
            .filter(|&e| self.split.instance().runs_on(a, e) && self.cap.fits(e, d))
            .map(|e| (self.delta(a, e), e))
            .collect();
        options.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
        for (delta, e) in options {
            if cost + delta + rest >= self.best - 1e-12 {
                break;
            }
            self.pos[a] = Some(e);
            self.count[e] += 1;
            self.cap.take(e, d);
            let r = self.descend(depth + 1, cost + delta);
            self.cap.give_back(e, d);
            self.count[e] -= 1;
            self.pos[a] = None;
            r?;
        }
        Ok(())
    }
}

/// Branching order: connected components of the dependency graph one after
/// the other, each walked breadth-first from its most connected agent,
/// heaviest links first, so dependency costs enter the bound early.
fn branching_order(split: &Separable<'_>) -> Vec<usize> {
    let n = split.instance().agents.len();
    let weight = |a: usize| -> f64 { split.links(a).iter().map(|l| l.volume_mb).sum() };
    let mut seen = vec![false; n];
    let mut order = Vec::with_capacity(n);
    let mut roots: Vec<usize> = (0..n).collect();
    roots.sort_by(|&x, &y| weight(y).total_cmp(&weight(x)).then(x.cmp(&y)));
    for root in roots {
        if seen[root] {
            continue;
        }
        seen[root] = true;
        let mut queue = std::collections::VecDeque::from([root]);
        while let Some(a) = queue.pop_front() {
            order.push(a);
            let mut next: Vec<(usize, f64)> = split
                .links(a)
                .iter()
                .filter(|l| !seen[l.other])
                .map(|l| (l.other, l.volume_mb))
                .collect();
            next.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
            for (b, _) in next {
                if !seen[b] {
                    seen[b] = true;
                    queue.push_back(b);
                }
            }
        }
    }
    order
}

impl Optimal {
    /// Finds a plan of minimum EAD objective, or says why it cannot: the
    /// instance is over the size limits ([`Error::TooLarge`]), the search
    /// budget ran out ([`Error::SearchLimit`]) or no plan satisfies the
    /// constraints ([`Error::NoFeasiblePlan`]).
    pub fn solve(&self, instance: &Instance) -> Result<ExactOutcome> {
        self.solve_from(instance, None)
    }

    /// Like [`Optimal::solve`], starting from a known feasible plan (ALP's,
    /// say): only plans strictly better than it are searched, which prunes
    /// from the first node. The incumbent is returned when nothing beats
    /// it. An incumbent of the wrong shape or that breaks a limit is
    /// refused.
    pub fn solve_from(
        &self,
        instance: &Instance,
        incumbent: Option<&Plan>,
    ) -> Result<ExactOutcome> {
        instance.validate()?;
        let n_a = instance.agents.len();
        let n_e = instance.servers.len();
        if n_a > self.max_agents || n_e > self.max_servers {
            return Err(Error::TooLarge {
                agents: n_a,
                servers: n_e,
                max_agents: self.max_agents,
                max_servers: self.max_servers,
            });
        }
        let split = Separable::new(instance);
        let (best, best_plan) = match incumbent {
            Some(plan) => {
                check(instance, plan)?;
                // A hair above, so that rounding in the sums cannot prune
                // a plan that equals it.
                let v = split.total(&plan.assignment);
                (v + 1e-9 * v.abs().max(1.0), Some(plan.assignment.clone()))
            }
            None => (f64::INFINITY, None),
        };
        let order = branching_order(&split);
        let mut search = Search {
            split,
            order,
            n_e,
            pos: vec![None; n_a],
            count: vec![0; n_e],
            cap: Capacity::new(instance),
            best,
            best_plan,
            nodes: 0,
            limit: self.node_limit,
        };
        search.descend(0, 0.0)?;
        let nodes = search.nodes;
        let plan = Plan::new(search.best_plan.ok_or_else(|| {
            Error::NoFeasiblePlan("no assignment satisfies the constraints".into())
        })?);
        let objective = ead_objective(instance, &plan).total;
        Ok(ExactOutcome {
            plan,
            objective,
            nodes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::tiny_instance;

    /// Every assignment of a small instance, the slow way.
    fn brute_force(instance: &Instance) -> Option<f64> {
        let n_a = instance.agents.len();
        let n_e = instance.servers.len();
        let mut best: Option<f64> = None;
        let total = n_e.pow(u32::try_from(n_a).expect("small"));
        for code in 0..total {
            let mut c = code;
            let assignment = (0..n_a)
                .map(|_| {
                    let e = c % n_e;
                    c /= n_e;
                    e
                })
                .collect();
            let plan = Plan::new(assignment);
            if crate::constraint::check(instance, &plan).is_ok() {
                let v = ead_objective(instance, &plan).total;
                best = Some(best.map_or(v, |b: f64| b.min(v)));
            }
        }
        best
    }

    #[test]
    fn matches_brute_force_on_small_instances() {
        use crate::scenario::{Scenario, ScenarioConfig};
        for seed in 0..8 {
            let inst = Scenario::new(ScenarioConfig {
                servers: 3,
                tasks: 1,
                ..ScenarioConfig::default()
            })
            .generate(seed)
            .expect("scenario");
            let exact = Optimal::default().solve(&inst).expect("solvable");
            let brute = brute_force(&inst).expect("feasible");
            assert!(
                (exact.objective - brute).abs() < 1e-9,
                "seed {seed}: {} vs {brute}",
                exact.objective
            );
            crate::constraint::check(&inst, &exact.plan).expect("feasible");
        }
        let tiny = tiny_instance();
        let exact = Optimal::default().solve(&tiny).expect("solvable");
        assert!((exact.objective - brute_force(&tiny).expect("feasible")).abs() < 1e-9);
    }

    #[test]
    fn a_seeded_search_finds_the_same_optimum() {
        use crate::scenario::{Scenario, ScenarioConfig};
        for seed in 0..6 {
            let inst = Scenario::new(ScenarioConfig {
                servers: 4,
                tasks: 2,
                ..ScenarioConfig::default()
            })
            .generate(seed)
            .expect("scenario");
            let cold = Optimal::default().solve(&inst).expect("solvable");
            let greedy = crate::baseline::greedy(&inst).expect("greedy");
            let warm = Optimal::default()
                .solve_from(&inst, Some(&greedy))
                .expect("solvable");
            assert!((cold.objective - warm.objective).abs() < 1e-9);
            assert!(warm.nodes <= cold.nodes, "{} > {}", warm.nodes, cold.nodes);
            // Seeded with the optimum itself, it proves it and keeps it.
            let again = Optimal::default()
                .solve_from(&inst, Some(&cold.plan))
                .expect("solvable");
            assert!((again.objective - cold.objective).abs() < 1e-9);
        }
    }

    #[test]
    fn asymmetric_links_are_priced_in_their_direction() {
        let mut inst = tiny_instance();
        inst.topology = crate::topology::Topology::from_measurements(
            &[vec![0.0, 5.0], vec![0.001, 0.0]],
            &[vec![1.0, 0.5], vec![1000.0, 1.0]],
            &[vec![0, 1], vec![1, 0]],
        )
        .expect("topology");
        let exact = Optimal::default().solve(&inst).expect("solvable");
        assert!((exact.objective - brute_force(&inst).expect("feasible")).abs() < 1e-9);
    }

    #[test]
    fn refuses_large_instances() {
        let inst = tiny_instance();
        let small = Optimal {
            max_agents: 1,
            ..Optimal::default()
        };
        match small.solve(&inst) {
            Err(e @ Error::TooLarge { .. }) => assert!(e.to_string().contains("2 agents")),
            other => panic!("expected TooLarge, got {other:?}"),
        }
        let tight = Optimal {
            node_limit: 1,
            ..Optimal::default()
        };
        assert!(matches!(tight.solve(&inst), Err(Error::SearchLimit { .. })));
    }
}
