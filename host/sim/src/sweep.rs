//! Sweeps over the number of servers or tasks (the paper's Fig. 2-5): mean
//! latency parts and resource costs per algorithm at every point, CSV
//! output, and the reductions AntLLM achieves against the baselines.

use std::fmt::Write as _;
use std::path::Path;

use edgehost_placement::cost::CostParams;
use edgehost_placement::{Algorithm, Scenario, ScenarioConfig};
use serde::Serialize;

use crate::run::{AlgorithmResult, Refined, Runner};

use crate::{Error, Result};

/// What varies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SweepAxis {
    /// The number of edge servers (Fig. 2 and 3).
    Servers,
    /// The number of tasks (Fig. 4 and 5).
    Tasks,
    /// The percentage of agents whose state already lives on their user's
    /// server; at 0 no plan migrates anything.
    Warm,
}

impl SweepAxis {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Servers => "servers",
            Self::Tasks => "tasks",
            Self::Warm => "warm",
        }
    }

    /// What the swept value means, for chart axes and titles.
    pub fn label(self) -> &'static str {
        match self {
            Self::Servers => "number of servers",
            Self::Tasks => "number of tasks",
            Self::Warm => "% of agents with warm state",
        }
    }

    /// The default points: 2 to 8 servers, 1 to 5 tasks, or 0 to 75% warm.
    pub fn default_values(self) -> Vec<usize> {
        match self {
            Self::Servers => (2..=8).collect(),
            Self::Tasks => (1..=5).collect(),
            Self::Warm => vec![0, 25, 50, 75],
        }
    }
}

/// Means of one algorithm at one point of a sweep.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SweepPoint {
    /// The value of the swept quantity.
    pub value: usize,
    /// The algorithm.
    pub algorithm: Option<Algorithm>,
    /// Seeds averaged (those where every compared algorithm found a plan).
    pub runs: usize,
    /// Of those seeds, how many this algorithm could not solve (only the
    /// exact solver refuses instances). A point with unsolved seeds is not
    /// comparable and is left out of charts and reductions.
    pub unsolved: usize,
    /// Mean EAD objective.
    pub objective: f64,
    /// Mean transmit latency, s.
    pub tra: f64,
    /// Mean migration latency, s.
    pub mig: f64,
    /// Mean initiation latency, s.
    pub ini: f64,
    /// Mean processing latency, s.
    pub pro: f64,
    /// Mean total latency, s.
    pub total: f64,
    /// Mean CPU cost, s.
    pub cpu: f64,
    /// Mean storage cost, GB.
    pub storage: f64,
    /// Mean communication cost, MB.
    pub comm: f64,
    /// Mean total resource cost.
    pub cost_total: f64,
    /// Mean decision time, ms.
    pub solve_ms: f64,
    /// Mean lower bound on the objective (the optimum where the exact
    /// solver fits, a Lagrangian bound above).
    pub lower_bound: f64,
    /// Mean gap of this algorithm's objective to the bound, as a fraction.
    pub gap: f64,
    /// With an LLM refiner (antllm only): runs where the LLM's plan was
    /// better, accepted but no better, and rejected.
    pub llm_better: usize,
    /// See `llm_better`.
    pub llm_unchanged: usize,
    /// See `llm_better`.
    pub llm_rejected: usize,
    /// Runs where a policy plugin failed and the built-in policy decided.
    pub fallbacks: usize,
}

impl SweepPoint {
    /// Whether the point averages every comparable seed.
    pub fn is_complete(&self) -> bool {
        self.runs > 0 && self.unsolved == 0
    }
}

/// A sweep's settings.
#[derive(Clone, Debug)]
pub struct Sweep {
    /// What varies.
    pub axis: SweepAxis,
    /// Its values.
    pub values: Vec<usize>,
    /// Servers when sweeping tasks.
    pub servers: usize,
    /// Tasks when sweeping servers.
    pub tasks: usize,
    /// Fraction of warm agents when sweeping servers or tasks.
    pub warm_fraction: f64,
    /// First seed; `repeats` consecutive seeds are averaged per point.
    pub seed: u64,
    /// Seeds per point.
    pub repeats: u64,
    /// Algorithms compared.
    pub algorithms: Vec<Algorithm>,
    /// Cost constants replacing the defaults (a live fleet's calibration).
    pub params: Option<CostParams>,
}

impl Sweep {
    /// Runs the sweep. At each point, only seeds where every algorithm
    /// except Optimal found a plan are averaged, so the means compare the
    /// same instances; Optimal is averaged over those of them it could
    /// solve (it refuses large instances).
    pub fn run(&self, runner: &Runner<'_>) -> Result<Vec<SweepPoint>> {
        let mut points = Vec::new();
        for &value in &self.values {
            let base = ScenarioConfig {
                servers: self.servers,
                tasks: self.tasks,
                warm_fraction: self.warm_fraction,
                ..ScenarioConfig::default()
            };
            let config = match self.axis {
                SweepAxis::Servers => ScenarioConfig {
                    servers: value,
                    ..base
                },
                SweepAxis::Tasks => ScenarioConfig {
                    tasks: value,
                    ..base
                },
                SweepAxis::Warm => ScenarioConfig {
                    warm_fraction: value as f64 / 100.0,
                    ..base
                },
            };
            let mut per_algorithm: Vec<Vec<AlgorithmResult>> =
                vec![Vec::new(); self.algorithms.len()];
            let mut comparable_seeds = 0;
            for seed in self.seed..self.seed + self.repeats {
                let mut instance = Scenario::new(config).generate(seed)?;
                if let Some(params) = self.params {
                    instance.params = params;
                }
                let results = runner.run_all(&self.algorithms, &instance, seed);
                let comparable = results
                    .iter()
                    .all(|r| r.feasible || r.algorithm == Algorithm::Optimal);
                if comparable {
                    comparable_seeds += 1;
                    for (slot, r) in per_algorithm.iter_mut().zip(results) {
                        if r.feasible {
                            slot.push(r);
                        }
                    }
                }
            }
            for (&algorithm, results) in self.algorithms.iter().zip(&per_algorithm) {
                let mut point = mean_point(value, algorithm, results);
                point.unsolved = comparable_seeds - results.len();
                points.push(point);
            }
        }
        Ok(points)
    }
}

fn mean_point(value: usize, algorithm: Algorithm, results: &[AlgorithmResult]) -> SweepPoint {
    let mut p = SweepPoint {
        value,
        algorithm: Some(algorithm),
        runs: results.len(),
        ..SweepPoint::default()
    };
    if results.is_empty() {
        return p;
    }
    let n = results.len() as f64;
    for r in results {
        let (Some(l), Some(c)) = (r.latency, r.cost) else {
            continue;
        };
        p.objective += r.objective.unwrap_or(0.0) / n;
        p.tra += l.tra / n;
        p.mig += l.mig / n;
        p.ini += l.ini / n;
        p.pro += l.pro / n;
        p.total += l.total / n;
        p.cpu += c.cpu / n;
        p.storage += c.storage / n;
        p.comm += c.comm / n;
        p.cost_total += c.total / n;
        p.solve_ms += r.solve_ms / n;
        p.lower_bound += r.lower_bound.unwrap_or(0.0) / n;
        p.gap += r.gap.unwrap_or(0.0) / n;
        if !r.fallbacks.is_empty() {
            p.fallbacks += 1;
        }
        match r.refined {
            Some(Refined::Better) => p.llm_better += 1,
            Some(Refined::Unchanged) => p.llm_unchanged += 1,
            Some(Refined::Rejected) => p.llm_rejected += 1,
            None => {}
        }
    }
    p
}

/// Writes the points as CSV, one row per point and algorithm.
pub fn write_csv(path: &Path, axis: SweepAxis, points: &[SweepPoint]) -> Result<()> {
    let mut out = format!(
        "{},algorithm,runs,unsolved,objective,tra,mig,ini,pro,total,cpu,storage,comm,cost_total,solve_ms,lower_bound,gap,llm_better,llm_unchanged,llm_rejected\n",
        axis.name()
    );
    for p in points {
        let name = p.algorithm.map_or("", Algorithm::name);
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "{},{name},{},{},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.4},{:.6},{:.6},{},{},{}",
            p.value,
            p.runs,
            p.unsolved,
            p.objective,
            p.tra,
            p.mig,
            p.ini,
            p.pro,
            p.total,
            p.cpu,
            p.storage,
            p.comm,
            p.cost_total,
            p.solve_ms,
            p.lower_bound,
            p.gap,
            p.llm_better,
            p.llm_unchanged,
            p.llm_rejected
        );
    }
    std::fs::write(path, out).map_err(|cause| Error::Io {
        path: path.to_path_buf(),
        cause,
    })
}

/// AntLLM against one baseline, averaged over the sweep's points.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Reduction {
    /// The baseline.
    pub baseline: Algorithm,
    /// Mean relative reduction of the total delay, percent.
    pub delay_pct: f64,
    /// Mean relative reduction of the total resource cost, percent.
    pub cost_pct: f64,
    /// Mean relative reduction of the EAD objective, percent.
    pub objective_pct: f64,
    /// Points where AntLLM's mean objective is strictly lower.
    pub objective_wins: usize,
    /// Points compared.
    pub points: usize,
}

/// AntLLM's reductions against Greedy, Polling, Random and local search
/// (those present).
pub fn reductions(points: &[SweepPoint]) -> Vec<Reduction> {
    let find = |value: usize, a: Algorithm| {
        points
            .iter()
            .find(|p| p.value == value && p.algorithm == Some(a) && p.is_complete())
    };
    let mut values: Vec<usize> = points.iter().map(|p| p.value).collect();
    values.dedup();
    let mut out = Vec::new();
    for baseline in [
        Algorithm::Greedy,
        Algorithm::Polling,
        Algorithm::Random,
        Algorithm::LocalSearch,
    ] {
        let mut r = Reduction {
            baseline,
            delay_pct: 0.0,
            cost_pct: 0.0,
            objective_pct: 0.0,
            objective_wins: 0,
            points: 0,
        };
        for &v in &values {
            let (Some(ant), Some(base)) = (find(v, Algorithm::AntLlm), find(v, baseline)) else {
                continue;
            };
            let rel = |a: f64, b: f64| if b > 0.0 { (b - a) / b * 100.0 } else { 0.0 };
            r.delay_pct += rel(ant.total, base.total);
            r.cost_pct += rel(ant.cost_total, base.cost_total);
            r.objective_pct += rel(ant.objective, base.objective);
            if ant.objective < base.objective {
                r.objective_wins += 1;
            }
            r.points += 1;
        }
        if r.points > 0 {
            let n = r.points as f64;
            r.delay_pct /= n;
            r.cost_pct /= n;
            r.objective_pct /= n;
            out.push(r);
        }
    }
    out
}

/// The reductions in the paper's words: against the paper's three
/// baselines, then against local search, then each algorithm's mean gap to
/// the lower bound.
pub fn summary(axis: SweepAxis, reductions: &[Reduction], points: &[SweepPoint]) -> String {
    let (paper, strong): (Vec<&Reduction>, Vec<&Reduction>) = reductions
        .iter()
        .partition(|r| r.baseline != Algorithm::LocalSearch);
    let mut out = if paper.is_empty() {
        format!(
            "sweep over {}: none of the paper's baselines to compare AntLLM with",
            axis.name()
        )
    } else {
        let n = paper.len() as f64;
        let mean = |f: fn(&Reduction) -> f64| paper.iter().map(|r| f(r)).sum::<f64>() / n;
        let each = |f: fn(&Reduction) -> f64| {
            paper
                .iter()
                .map(|r| format!("{} {:.2}%", r.baseline, f(r)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let wins = paper
            .iter()
            .map(|r| format!("{} {}/{}", r.baseline, r.objective_wins, r.points))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "Varying the {}: AntLLM reduces the total delay by {:.2}% on average compared with \
             the baselines ({}), and the resource cost by {:.2}% ({}). Its EAD objective is {:.2}% lower \
             ({}); points where it is lowest: {}.",
            axis.label(),
            mean(|r| r.delay_pct),
            each(|r| r.delay_pct),
            mean(|r| r.cost_pct),
            each(|r| r.cost_pct),
            mean(|r| r.objective_pct),
            each(|r| r.objective_pct),
            wins
        )
    };
    for r in strong {
        let _ = write!(
            out,
            "\nAgainst local-search (greedy on the objective plus moves and swaps): total delay {:.2}%, \
             resource cost {:.2}%, EAD objective {:.2}% lower; AntLLM lowest at {}/{} points.",
            r.delay_pct, r.cost_pct, r.objective_pct, r.objective_wins, r.points
        );
    }
    let mut gaps = Vec::new();
    let mut algorithms: Vec<Algorithm> = points.iter().filter_map(|p| p.algorithm).collect();
    algorithms.dedup();
    algorithms.sort();
    algorithms.dedup();
    for a in algorithms {
        let mine: Vec<&SweepPoint> = points
            .iter()
            .filter(|p| p.algorithm == Some(a) && p.is_complete())
            .collect();
        if !mine.is_empty() {
            let mean = mine.iter().map(|p| p.gap).sum::<f64>() / mine.len() as f64;
            gaps.push(format!("{a} {:.2}%", mean * 100.0));
        }
    }
    if !gaps.is_empty() {
        let _ = write!(
            out,
            "\nMean gap to the lower bound on the objective: {}.",
            gaps.join(", ")
        );
    }
    let count = |f: fn(&SweepPoint) -> usize| points.iter().map(f).sum::<usize>();
    let (better, unchanged, rejected) = (
        count(|p| p.llm_better),
        count(|p| p.llm_unchanged),
        count(|p| p.llm_rejected),
    );
    if better + unchanged + rejected > 0 {
        let _ = write!(
            out,
            "\nLLM refinement of AntLLM's plans: better {better}, unchanged {unchanged}, rejected {rejected} (of {}).",
            better + unchanged + rejected
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_sweep_produces_every_point_and_a_summary() {
        let sweep = Sweep {
            axis: SweepAxis::Tasks,
            values: vec![1, 2],
            servers: 4,
            tasks: 2,
            warm_fraction: 0.5,
            seed: 1,
            repeats: 2,
            algorithms: vec![Algorithm::AntLlm, Algorithm::Greedy, Algorithm::Random],
            params: None,
        };
        let runner = Runner::default();
        let points = sweep.run(&runner).expect("sweep");
        assert_eq!(points.len(), 6);
        assert!(points.iter().all(|p| p.runs == 2 && p.total > 0.0));
        let r = reductions(&points);
        assert_eq!(r.len(), 2);
        let text = summary(SweepAxis::Tasks, &r, &points);
        assert!(text.contains("AntLLM reduces the total delay by"), "{text}");
        assert!(text.contains("Mean gap to the lower bound"), "{text}");
        // Every point has a bound, at most each algorithm's objective.
        for p in &points {
            assert!(p.lower_bound > 0.0 && p.lower_bound <= p.objective + 1e-9);
            assert!((0.0..1.0).contains(&p.gap));
        }

        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("s.csv");
        write_csv(&path, SweepAxis::Tasks, &points).expect("csv");
        let csv = std::fs::read_to_string(&path).expect("read csv");
        assert_eq!(csv.lines().count(), 7);
        assert!(csv.starts_with("tasks,algorithm,"));
    }
}
