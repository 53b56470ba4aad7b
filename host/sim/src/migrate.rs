//! ALM evaluated after users move (`edgehost sim --after-move`).
//!
//! For each seed: the scenario is placed by ALP, then every task's user
//! moves to another server (a seeded draw), and every agent's state is
//! where ALP put it. Strategies answer the move:
//!
//! * `stay`: nothing moves;
//! * `alm`: ALM's decision (with LLM refinement when a refiner is given);
//! * each placement algorithm asked for (`--algorithms`), run again on the
//!   moved instance: its plan is the migration target of every agent. ALP
//!   and local search see where each state lives and price moving it;
//!   Greedy, Polling and Random do not.
//!
//! Each strategy is priced by the native model on the moved instance: the
//! migration cost (eq. 3 per moved agent, its round trips included, as
//! ALM prices it, plus the state shipped), the delay of one run of every
//! task afterwards (transmit plus processing: the agents are running), and
//! the total over the horizon (`horizon_requests` runs plus the
//! migration).

use std::fmt::Write as _;

use edgehost_placement::cost::report;
use edgehost_placement::gain::move_time_s;
use edgehost_placement::refine::refine_migration;
use edgehost_placement::{
    Algorithm, Alm, AlmParams, Alp, Instance, MigrationContext, Plan, Policy, Scenario,
    ScenarioConfig,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::Result;
use crate::run::{Refined, Runner};

/// The means of one strategy over the seeds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StrategyResult {
    /// `stay`, `alm`, or the placement algorithm whose plan was the target.
    pub strategy: String,
    /// Seeds averaged (those where every strategy had a plan).
    pub runs: usize,
    /// Mean agents moved.
    pub moved: f64,
    /// Mean migration time, seconds, summed over the moved agents.
    pub migration_s: f64,
    /// Mean state shipped, MB.
    pub state_mb: f64,
    /// Mean delay of one run of every task after the moves, seconds.
    pub delay_s: f64,
    /// Mean `horizon * delay + migration`, seconds.
    pub horizon_s: f64,
    /// With a refiner (ALM only): LLM answers better, unchanged, rejected.
    pub llm: Option<[usize; 3]>,
}

/// The evaluation's settings.
#[derive(Clone, Debug)]
pub struct AfterMove {
    /// The scenario (servers, tasks, warm fraction).
    pub config: ScenarioConfig,
    /// First seed.
    pub seed: u64,
    /// Seeds averaged.
    pub repeats: u64,
    /// Placement algorithms used as migration targets.
    pub targets: Vec<Algorithm>,
    /// Cost constants replacing the defaults.
    pub params: Option<edgehost_placement::cost::CostParams>,
}

/// What a strategy's plan costs on the moved instance.
fn price(instance: &Instance, before: &Plan, after: &Plan, horizon: f64) -> [f64; 5] {
    let mut on_server: Vec<usize> = instance.servers.iter().map(|s| s.hosted).collect();
    for &e in &after.assignment {
        on_server[e] += 1;
    }
    let (mut moved, mut migration, mut state) = (0.0, 0.0, 0.0);
    for (a, (&from, &to)) in before.assignment.iter().zip(&after.assignment).enumerate() {
        if from != to {
            moved += 1.0;
            migration += move_time_s(instance, a, from, to, on_server[to]);
            state += instance.agents[a].state_mb;
        }
    }
    let latency = report(instance, after).latency;
    let delay = latency.tra + latency.pro;
    [moved, migration, state, delay, horizon * delay + migration]
}

impl AfterMove {
    /// Runs the evaluation. `runner` supplies ALP's parameters, the policy
    /// and the refiner.
    pub fn run(&self, runner: &Runner<'_>) -> Result<Vec<StrategyResult>> {
        let native = Policy::native();
        let policy = runner.policy.unwrap_or(&native);
        let mut names = vec!["stay".to_owned(), "alm".to_owned()];
        names.extend(self.targets.iter().map(|a| a.name().to_owned()));
        let mut sums = vec![[0.0; 5]; names.len()];
        let mut llm = [0usize; 3];
        let mut runs = 0;
        for seed in self.seed..self.seed + self.repeats {
            let mut instance = Scenario::new(self.config).generate(seed)?;
            if let Some(params) = self.params {
                instance.params = params;
            }
            let Ok(placed) = Alp::new(runner.alp).place(&instance, policy, seed) else {
                continue;
            };
            let before = placed.plan;
            // Every state is where ALP put it; every user moves elsewhere.
            let mut moved = instance.clone();
            for (a, agent) in moved.agents.iter_mut().enumerate() {
                agent.origin = Some(before.assignment[a]);
            }
            let n_e = moved.servers.len();
            // Its own stream, so the users' moves do not depend on ALP.
            let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            for task in &mut moved.tasks {
                if n_e > 1 {
                    let step = rng.random_range(1..n_e);
                    task.user_server = (task.user_server + step) % n_e;
                }
            }
            let context =
                MigrationContext::new(moved.tasks.iter().map(|t| t.user_server).collect());
            let horizon = context.horizon_requests;
            let mut plans = vec![before.clone()];
            let colony =
                Alm::new(AlmParams::default()).plan(&moved, &before, &context, policy, seed)?;
            let decided = match runner.refiner {
                Some(r) => {
                    let (decided, verdict) =
                        refine_migration(&moved, &before, &context, &colony, r, policy);
                    let slot = match Refined::of(&verdict, true) {
                        Refined::Better => 0,
                        Refined::Unchanged => 1,
                        Refined::Rejected => 2,
                    };
                    llm[slot] += 1;
                    decided
                }
                None => colony,
            };
            plans.push(decided.deployment);
            let mut complete = true;
            for &target in &self.targets {
                match runner.run_one(target, &moved, seed).1 {
                    Some(plan) => plans.push(plan),
                    None => complete = false,
                }
            }
            if !complete {
                continue;
            }
            runs += 1;
            for (sum, plan) in sums.iter_mut().zip(&plans) {
                for (s, v) in sum.iter_mut().zip(price(&moved, &before, plan, horizon)) {
                    *s += v;
                }
            }
        }
        let n = runs.max(1) as f64;
        Ok(names
            .into_iter()
            .zip(sums)
            .map(|(strategy, s)| StrategyResult {
                llm: (strategy == "alm" && runner.refiner.is_some()).then_some(llm),
                strategy,
                runs,
                moved: s[0] / n,
                migration_s: s[1] / n,
                state_mb: s[2] / n,
                delay_s: s[3] / n,
                horizon_s: s[4] / n,
            })
            .collect())
    }
}

/// ALM against each other strategy, in words: migration cost (the
/// paper's measure, −11.5% on its testbed), delay afterwards and the total
/// over the horizon.
pub fn summary(results: &[StrategyResult]) -> String {
    let Some(alm) = results.iter().find(|r| r.strategy == "alm") else {
        return String::new();
    };
    let rel = |a: f64, b: f64| if b > 0.0 { (b - a) / b * 100.0 } else { 0.0 };
    let mut out = String::new();
    for r in results.iter().filter(|r| r.strategy != "alm") {
        let migration = if r.migration_s > 0.0 {
            format!(
                "migration time {:+.1}%",
                -rel(alm.migration_s, r.migration_s)
            )
        } else {
            format!("{} moves nothing", r.strategy)
        };
        let _ = writeln!(
            out,
            "ALM against {}: {migration}, delay afterwards {:+.1}%, total over the horizon {:+.1}% (negative: ALM lower)",
            r.strategy,
            -rel(alm.delay_s, r.delay_s),
            -rel(alm.horizon_s, r.horizon_s),
        );
    }
    if let Some([better, unchanged, rejected]) = alm.llm {
        let _ = writeln!(
            out,
            "LLM refinement of ALM's decisions: better {better}, unchanged {unchanged}, rejected {rejected}"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alm_never_loses_to_staying_over_the_horizon() {
        let eval = AfterMove {
            config: ScenarioConfig::default(),
            seed: 1,
            repeats: 4,
            targets: vec![Algorithm::Greedy, Algorithm::LocalSearch],
            params: None,
        };
        let runner = Runner::default();
        let results = eval.run(&runner).expect("evaluation");
        let names: Vec<&str> = results.iter().map(|r| r.strategy.as_str()).collect();
        assert_eq!(names, ["stay", "alm", "greedy", "local-search"]);
        assert!(results.iter().all(|r| r.runs == 4));
        let (stay, alm) = (&results[0], &results[1]);
        assert_eq!(stay.moved, 0.0);
        assert_eq!(stay.migration_s, 0.0);
        // ALM moves only what pays over the horizon.
        assert!(alm.horizon_s <= stay.horizon_s + 1e-9, "{alm:?} {stay:?}");
        let text = summary(&results);
        assert!(text.contains("ALM against greedy"), "{text}");
    }
}
