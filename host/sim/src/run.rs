//! Running the algorithms on one instance and collecting what they cost.

use std::time::Instant;

use edgehost_placement::cost::{Latency, ResourceCost};
use edgehost_placement::refine::{Refiner, Verdict, refine_placement};
use edgehost_placement::{
    Algorithm, Alp, AlpParams, BoundMethod, Bounder, Instance, LocalSearch, Optimal, Plan, Policy,
    baseline,
};
use serde::Serialize;

/// The latency breakdown as reported (seconds, summed over tasks).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct LatencyView {
    /// Transmit latency.
    pub tra: f64,
    /// Migration latency.
    pub mig: f64,
    /// Initiation latency.
    pub ini: f64,
    /// Processing latency.
    pub pro: f64,
    /// Total.
    pub total: f64,
}

impl From<Latency> for LatencyView {
    fn from(l: Latency) -> Self {
        Self {
            tra: l.tra,
            mig: l.mig,
            ini: l.ini,
            pro: l.pro,
            total: l.total,
        }
    }
}

/// The resource-cost breakdown as reported.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct CostView {
    /// CPU cost, seconds.
    pub cpu: f64,
    /// Storage cost, GB.
    pub storage: f64,
    /// Communication cost, MB.
    pub comm: f64,
    /// Weighted total.
    pub total: f64,
}

impl From<ResourceCost> for CostView {
    fn from(c: ResourceCost) -> Self {
        Self {
            cpu: c.cpu,
            storage: c.storage,
            comm: c.comm,
            total: c.total,
        }
    }
}

/// One algorithm's result on one instance.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AlgorithmResult {
    /// Which algorithm.
    pub algorithm: Algorithm,
    /// EAD objective of its plan (`null` when it found none).
    pub objective: Option<f64>,
    /// Whether it returned a plan (every returned plan satisfies eq. 11).
    pub feasible: bool,
    /// Latency of the plan (`null` when none).
    pub latency: Option<LatencyView>,
    /// Resource cost of the plan (`null` when none).
    pub cost: Option<CostView>,
    /// Wall-clock time of the decision, milliseconds.
    pub solve_ms: f64,
    /// Why there is no plan, when there is none.
    pub error: Option<String>,
    /// For antllm with a refiner: what the refinement did.
    pub refinement: Option<String>,
    /// For antllm with a refiner: the refinement in one word.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refined: Option<Refined>,
    /// The plan: server name per agent, in instance order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<Vec<String>>,
    /// The policy antllm decided with (`built-in`, or the plugins'
    /// heuristic and cost model); `null` for the other algorithms, which
    /// use no policy.
    pub policy: Option<String>,
    /// Where a policy plugin failed and the native policy decided instead
    /// (always present; empty when nothing failed).
    pub fallbacks: Vec<String>,
    /// A lower bound on the objective of every feasible plan of the
    /// instance (the same for every algorithm of a run; `null` when no
    /// algorithm found a plan).
    pub lower_bound: Option<f64>,
    /// How the bound was obtained: `optimum` (exact search seeded with the
    /// best plan found) or `lagrangian`.
    pub bound_method: Option<BoundMethod>,
    /// `(objective - lower_bound) / objective`: how far from optimal this
    /// plan may be at most (`null` without a plan or a bound).
    pub gap: Option<f64>,
}

/// What an LLM refinement did to a plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Refined {
    /// The LLM's plan replaced the colony's and scores better.
    Better,
    /// The LLM's plan was accepted but scores the same (usually the same
    /// plan, returned unchanged).
    Unchanged,
    /// The colony's plan stands: the answer was late, unreadable,
    /// infeasible, worse or (for a migration) had a move that does not pay.
    Rejected,
}

impl Refined {
    /// The one-word outcome of a verdict; `higher_is_better` for migration
    /// gains, lower for placement objectives.
    pub fn of(verdict: &Verdict, higher_is_better: bool) -> Self {
        match *verdict {
            Verdict::Accepted { colony, refined } => {
                let better = if higher_is_better {
                    refined > colony + 1e-9
                } else {
                    refined < colony - 1e-9
                };
                if better {
                    Self::Better
                } else {
                    Self::Unchanged
                }
            }
            Verdict::Kept(_) => Self::Rejected,
        }
    }
}

/// How to run the algorithms (by default: ALP's default parameters, no
/// refiner, no plans in results, the native policy).
#[derive(Default)]
pub struct Runner<'a> {
    /// ALP's parameters.
    pub alp: AlpParams,
    /// The exact solver's limits.
    pub optimal: Optimal,
    /// The LLM refiner for antllm, if any.
    pub refiner: Option<&'a dyn Refiner>,
    /// Include plans in results.
    pub with_plans: bool,
    /// The heuristic and cost model AntLLM decides with (`None`: the native
    /// ones). Results are always priced by the native cost model, so runs
    /// with different policies compare.
    pub policy: Option<&'a Policy>,
}

impl Runner<'_> {
    /// Runs every algorithm of `algorithms` on `instance`, then bounds the
    /// objective from below (seeding the exact search with the best plan
    /// found) and gives each result its gap to the bound.
    pub fn run_all(
        &self,
        algorithms: &[Algorithm],
        instance: &Instance,
        seed: u64,
    ) -> Vec<AlgorithmResult> {
        let mut results = Vec::with_capacity(algorithms.len());
        let mut best: Option<(f64, Plan)> = None;
        for &a in algorithms {
            let (result, plan) = self.run_one(a, instance, seed);
            if let (Some(v), Some(plan)) = (result.objective, plan)
                && best.as_ref().is_none_or(|(b, _)| v < *b)
            {
                best = Some((v, plan));
            }
            results.push(result);
        }
        let Some((_, incumbent)) = best else {
            return results;
        };
        // Every plan returned was checked against the limits, so the
        // incumbent is feasible; a bound that still fails is left out.
        if let Ok(bound) = Bounder::default().bound(instance, Some(&incumbent)) {
            for r in &mut results {
                r.lower_bound = Some(bound.value);
                r.bound_method = Some(bound.method);
                r.gap = r.objective.map(|v| bound.gap(v));
            }
        }
        results
    }

    /// Runs `algorithm` on `instance`; `seed` drives ALP and Random. The
    /// result carries no bound yet; the plan comes back beside it.
    pub(crate) fn run_one(
        &self,
        algorithm: Algorithm,
        instance: &Instance,
        seed: u64,
    ) -> (AlgorithmResult, Option<Plan>) {
        let native = Policy::native();
        let policy = self.policy.unwrap_or(&native);
        let start = Instant::now();
        let mut refinement = None;
        let mut refined_as = None;
        let mut fallbacks = Vec::new();
        let outcome: Result<Plan, String> = match algorithm {
            Algorithm::AntLlm => Alp::new(self.alp)
                .place(instance, policy, seed)
                .inspect(|o| fallbacks.clone_from(&o.fallbacks))
                .map(|o| match self.refiner {
                    Some(r) => {
                        let refined = refine_placement(instance, &o.plan, o.objective, r, policy);
                        refined_as = Some(Refined::of(&refined.verdict, false));
                        refinement = Some(match &refined.verdict {
                            Verdict::Accepted { colony, refined } => {
                                format!("accepted: {colony:.4} -> {refined:.4}")
                            }
                            Verdict::Kept(reason) => format!("kept the colony plan: {reason}"),
                        });
                        refined.plan
                    }
                    None => o.plan,
                })
                .map_err(|e| e.to_string()),
            Algorithm::Greedy => baseline::greedy(instance).map_err(|e| e.to_string()),
            Algorithm::Polling => baseline::polling(instance).map_err(|e| e.to_string()),
            Algorithm::Random => baseline::random(instance, seed).map_err(|e| e.to_string()),
            Algorithm::LocalSearch => LocalSearch::default()
                .place(instance)
                .map_err(|e| e.to_string()),
            Algorithm::Optimal => self
                .optimal
                .solve(instance)
                .map(|o| o.plan)
                .map_err(|e| e.to_string()),
        };
        let solve_ms = start.elapsed().as_secs_f64() * 1e3;
        match outcome {
            Ok(plan) => {
                let report = edgehost_placement::cost::report(instance, &plan);
                let result = AlgorithmResult {
                    algorithm,
                    objective: Some(report.objective.total),
                    feasible: true,
                    latency: Some(report.latency.into()),
                    cost: Some(report.cost.into()),
                    solve_ms,
                    error: None,
                    refinement,
                    refined: refined_as,
                    policy: (algorithm == Algorithm::AntLlm).then(|| policy.describe()),
                    fallbacks,
                    plan: self.with_plans.then(|| {
                        plan.assignment
                            .iter()
                            .map(|&e| instance.servers[e].name.clone())
                            .collect()
                    }),
                    lower_bound: None,
                    bound_method: None,
                    gap: None,
                };
                (result, Some(plan))
            }
            Err(error) => (
                AlgorithmResult {
                    algorithm,
                    objective: None,
                    feasible: false,
                    latency: None,
                    cost: None,
                    solve_ms,
                    error: Some(error),
                    refinement,
                    refined: refined_as,
                    plan: None,
                    policy: (algorithm == Algorithm::AntLlm).then(|| policy.describe()),
                    fallbacks,
                    lower_bound: None,
                    bound_method: None,
                    gap: None,
                },
                None,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgehost_placement::{Scenario, ScenarioConfig};

    #[test]
    fn every_algorithm_reports_a_breakdown() {
        let inst = Scenario::new(ScenarioConfig::default())
            .generate(1)
            .expect("scenario");
        let runner = Runner {
            with_plans: true,
            ..Runner::default()
        };
        let results = runner.run_all(&Algorithm::ALL, &inst, 1);
        let optimum = results
            .iter()
            .find(|r| r.algorithm == Algorithm::Optimal)
            .and_then(|r| r.objective)
            .expect("optimum");
        for r in results {
            let a = r.algorithm;
            assert!(r.feasible, "{a}: {:?}", r.error);
            // Four servers and two tasks fit the exact solver: the bound
            // is the optimum, and the optimum's gap is zero.
            assert_eq!(r.bound_method, Some(BoundMethod::Optimum));
            assert!((r.lower_bound.expect("bound") - optimum).abs() < 1e-9);
            let gap = r.gap.expect("gap");
            assert!((0.0..1.0).contains(&gap), "{a}: {gap}");
            if a == Algorithm::Optimal {
                assert!(gap < 1e-12);
            }
            let l = r.latency.expect("latency");
            assert!((l.tra + l.mig + l.ini + l.pro - l.total).abs() < 1e-9);
            assert_eq!(r.plan.as_ref().map(Vec::len), Some(inst.agents.len()));
        }
    }
}
