//! `edgehost sim`: runs the placement algorithms of `edgehost-placement` on
//! seeded scenarios in the paper's setting and reports what they cost.
//!
//! One run prints, per algorithm, the EAD objective, the latency breakdown
//! (transmit, migration, initiation, processing, total), the resource cost
//! breakdown (CPU, storage, communication, total) and the decision time —
//! as a table, or with `--json` as a JSON array and nothing else on stdout.
//! `--sweep servers|tasks` varies one dimension, averages several seeds per
//! point, writes CSV files and SVG charts laid out like the paper's
//! Fig. 2-5, and prints AntLLM's reductions against the baselines.
//!
//! Main types: [`SimCommand`] (the `clap` arguments, the only place that
//! uses `anyhow`), [`run::Runner`], [`sweep::Sweep`], [`chart`]. The
//! decisions themselves are pure and live in `edgehost-placement`; this
//! crate adds the clock, the files, the optional LLM client and the
//! optional policy plugins (`--heuristic`, `--cost-model`, loaded through
//! `edgehost-runtime`). It does not
//! talk to real hosts.

pub mod chart;
pub mod migrate;
pub mod run;
pub mod sweep;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use edgehost_advisor::{AdvisorConfig, LlmRefiner};
use edgehost_placement::cost::CostParams;
use edgehost_placement::refine::Refiner;
use edgehost_placement::{Algorithm, AlpParams, Optimal, Policy, Scenario, ScenarioConfig};
use edgehost_runtime::{PolicyComponent, PolicyRuntimeBuilder, plugin_policy};

use crate::run::{AlgorithmResult, Runner};
use crate::sweep::{Sweep, SweepAxis};

/// Everything that can go wrong in a simulation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The decision engine refused something.
    #[error(transparent)]
    Placement(#[from] edgehost_placement::Error),
    /// A file could not be written.
    #[error("cannot write {}: {cause}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why (in the message, not a separate source).
        cause: std::io::Error,
    },
    /// A chart could not be drawn.
    #[error("cannot draw chart: {0}")]
    Chart(String),
}

/// A policy plugin given to `sim` failed in some of its decisions, where
/// the built-in policy decided instead: the results are not the plugin's.
/// The results are printed first; this is the command's error after them.
#[derive(Debug, thiserror::Error)]
#[error(
    "the policy plugin failed in {failed} of {decisions} decisions and the built-in policy decided those (see `fallbacks`)"
)]
pub struct PluginFailed {
    /// Decisions where the plugin failed at least once.
    pub failed: usize,
    /// Decisions that used the plugin.
    pub decisions: usize,
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn parse_algorithm(s: &str) -> Result<Algorithm, String> {
    s.parse()
        .map_err(|e: edgehost_placement::Error| e.to_string())
}

/// Simulate placement decisions on seeded scenarios (four sites by default:
/// Beijing, Shanghai, Guiyang, Singapore) and compare algorithms.
#[derive(Args, Debug, Clone)]
pub struct SimCommand {
    /// Number of edge servers (sites beyond the first four are generated).
    #[arg(long, default_value_t = 4)]
    pub servers: usize,
    /// Number of CBIR tasks (4 to 7 dependent agents each).
    #[arg(long, default_value_t = 2)]
    pub tasks: usize,
    /// Seed of the scenario and of the randomised algorithms.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Algorithms to run, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        value_parser = parse_algorithm,
        default_value = "antllm,local-search,greedy,polling,random,optimal"
    )]
    pub algorithms: Vec<Algorithm>,
    /// Print only a JSON array on stdout: one object per algorithm, or per
    /// sweep point and algorithm.
    #[arg(long)]
    pub json: bool,
    /// Directory for result files (sweeps default to `sim-out`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Percentage of agents whose state already lives on their user's
    /// server (0: nothing to migrate, every agent starts cold).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub warm: u32,
    /// Vary the number of servers, of tasks, or the warm percentage; write
    /// CSV and SVG charts.
    #[arg(long, value_enum)]
    pub sweep: Option<SweepAxis>,
    /// Evaluate ALM instead of placement: place with ALP, move every user
    /// to another server, then compare ALM's decision with staying and
    /// with re-placing by each algorithm of `--algorithms` (averaged over
    /// `--repeats` seeds).
    #[arg(long, conflicts_with = "sweep")]
    pub after_move: bool,
    /// Values of the swept quantity, comma-separated (default: 2-8
    /// servers, 1-5 tasks, or 0,25,50,75 % warm).
    #[arg(long, value_delimiter = ',')]
    pub points: Option<Vec<usize>>,
    /// Seeds averaged per sweep point (`--seed`, `--seed`+1, ...).
    #[arg(long, default_value_t = 10)]
    pub repeats: u64,
    /// Include each algorithm's plan (server per agent) in the JSON.
    #[arg(long)]
    pub plans: bool,
    /// ALP: ants per iteration.
    #[arg(long, default_value_t = AlpParams::default().ants)]
    pub ants: usize,
    /// ALP: iterations.
    #[arg(long, default_value_t = AlpParams::default().iterations)]
    pub iterations: usize,
    /// ALP: pheromone weight alpha.
    #[arg(long, default_value_t = AlpParams::default().alpha)]
    pub alpha: f64,
    /// ALP: heuristic weight beta.
    #[arg(long, default_value_t = AlpParams::default().beta)]
    pub beta: f64,
    /// ALP: evaporation rate rho.
    #[arg(long, default_value_t = AlpParams::default().rho)]
    pub rho: f64,
    /// ALP: deposit constant Q.
    #[arg(long, default_value_t = AlpParams::default().q)]
    pub q: f64,
    /// OpenAI-compatible endpoint for LLM refinement of AntLLM's plan (none:
    /// AntLLM is ALP alone).
    #[arg(long)]
    pub llm_endpoint: Option<String>,
    /// Model name for the LLM endpoint.
    #[arg(long, default_value = "gpt-4o-mini")]
    pub llm_model: String,
    /// Environment variable holding the API key.
    #[arg(long, default_value = "OPENAI_API_KEY")]
    pub llm_api_key_env: String,
    /// LLM request timeout, milliseconds; a slower answer keeps ALP's plan.
    #[arg(long, default_value_t = 20_000)]
    pub llm_timeout_ms: u64,
    /// A policy plugin (.wasm) whose heuristic AntLLM uses instead of the
    /// native one. Results are still priced by the native cost model.
    #[arg(long, value_name = "FILE")]
    pub heuristic: Option<PathBuf>,
    /// A policy plugin (.wasm) whose cost model AntLLM minimises instead of
    /// the native one.
    #[arg(long, value_name = "FILE")]
    pub cost_model: Option<PathBuf>,
    /// Where compiled plugins are cached.
    #[arg(long, env = "EDGEHOST_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// A live fleet's calibration (`edgehost model --json > FILE`): its
    /// cost constants replace the documented defaults, so plans are priced
    /// as that fleet prices them.
    #[arg(long, value_name = "FILE")]
    pub model: Option<PathBuf>,
}

/// The cost constants of a fleet snapshot written by `edgehost model --json`.
pub fn load_model(path: &std::path::Path) -> anyhow::Result<CostParams> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let snapshot: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let params = snapshot.get("cost_params").cloned().ok_or_else(|| {
        anyhow::anyhow!(
            "{} has no cost_params: write it with `edgehost model --json`",
            path.display()
        )
    })?;
    let params: CostParams = serde_json::from_value(params)
        .with_context(|| format!("the cost_params of {}", path.display()))?;
    params
        .validate()
        .with_context(|| format!("the cost_params of {}", path.display()))?;
    Ok(params)
}

impl SimCommand {
    fn alp(&self) -> AlpParams {
        AlpParams {
            ants: self.ants,
            iterations: self.iterations,
            alpha: self.alpha,
            beta: self.beta,
            rho: self.rho,
            q: self.q,
            ..AlpParams::default()
        }
    }

    /// Runs the simulation and prints the results.
    pub fn execute(self) -> anyhow::Result<()> {
        if self.servers == 0 || self.tasks == 0 {
            bail!("--servers and --tasks must be at least 1");
        }
        if self.algorithms.is_empty() {
            bail!("--algorithms is empty");
        }
        self.alp().validate().context("invalid ALP parameters")?;
        let refiner = match &self.llm_endpoint {
            Some(endpoint) => {
                let mut config = AdvisorConfig::new(endpoint.clone(), self.llm_model.clone());
                config.api_key_env = Some(self.llm_api_key_env.clone());
                config.timeout = Duration::from_millis(self.llm_timeout_ms);
                Some(LlmRefiner::new(config).context("cannot set up the LLM client")?)
            }
            None => None,
        };
        let policy = self.plugin_policy()?;
        let params = self.model.as_deref().map(load_model).transpose()?;
        let runner = Runner {
            alp: self.alp(),
            optimal: Optimal::default(),
            refiner: refiner.as_ref().map(|r| r as &dyn Refiner),
            with_plans: self.plans,
            policy: policy.as_ref(),
        };
        if self.after_move {
            return self.after_move(&runner, params);
        }
        match self.sweep {
            Some(axis) => self.sweep(axis, &runner, params),
            None => self.single(&runner, params),
        }
    }

    /// The policy the plugins given by `--heuristic` and `--cost-model`
    /// make, or `None` when neither is given.
    fn plugin_policy(&self) -> anyhow::Result<Option<Policy>> {
        if self.heuristic.is_none() && self.cost_model.is_none() {
            return Ok(None);
        }
        let cache_dir = self.cache_dir.clone().unwrap_or_else(|| {
            std::env::var_os("XDG_CACHE_HOME")
                .filter(|d| !d.is_empty())
                .map(|d| PathBuf::from(d).join("edgehost"))
                .or_else(|| {
                    std::env::var_os("HOME")
                        .filter(|d| !d.is_empty())
                        .map(|h| PathBuf::from(h).join(".cache").join("edgehost"))
                })
                .unwrap_or_else(|| std::env::temp_dir().join("edgehost-cache"))
        });
        let runtime = PolicyRuntimeBuilder::new(cache_dir)
            .build()
            .context("cannot start the policy runtime")?;
        let load = |path: &Option<PathBuf>| -> anyhow::Result<Option<PolicyComponent>> {
            path.as_ref()
                .map(|p| {
                    runtime
                        .load_file(p)
                        .with_context(|| format!("cannot load the policy plugin {}", p.display()))
                })
                .transpose()
        };
        let heuristic = load(&self.heuristic)?;
        let cost_model = load(&self.cost_model)?;
        Ok(Some(plugin_policy(heuristic.as_ref(), cost_model.as_ref())))
    }

    fn single(&self, runner: &Runner<'_>, params: Option<CostParams>) -> anyhow::Result<()> {
        let mut instance = Scenario::new(ScenarioConfig {
            servers: self.servers,
            tasks: self.tasks,
            warm_fraction: f64::from(self.warm) / 100.0,
            ..ScenarioConfig::default()
        })
        .generate(self.seed)
        .context("cannot generate the scenario")?;
        if let Some(params) = params {
            instance.params = params;
        }
        let results: Vec<AlgorithmResult> = runner.run_all(&self.algorithms, &instance, self.seed);
        if let Some(dir) = &self.out {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            write_json(&dir.join("instance.json"), &instance)?;
            write_json(&dir.join("results.json"), &results)?;
        }
        if self.json {
            println!("{}", serde_json::to_string_pretty(&results)?);
            let decisions = results.iter().filter(|r| r.policy.is_some()).count();
            let failed = results.iter().filter(|r| !r.fallbacks.is_empty()).count();
            return plugin_verdict(runner, failed, decisions);
        }
        println!(
            "{} servers, {} tasks, {} agents, seed {}",
            instance.servers.len(),
            instance.tasks.len(),
            instance.agents.len(),
            self.seed
        );
        println!(
            "{:<12} {:>10} {:>7} | {:>8} {:>8} {:>8} {:>8} {:>9} | {:>8} {:>8} {:>8} {:>9} | {:>9}",
            "algorithm",
            "objective",
            "gap",
            "tra s",
            "mig s",
            "ini s",
            "pro s",
            "total s",
            "cpu s",
            "stor GB",
            "comm MB",
            "cost",
            "solve ms"
        );
        for r in &results {
            match (r.objective, r.latency, r.cost) {
                (Some(o), Some(l), Some(c)) => println!(
                    "{:<12} {o:>10.3} {:>7} | {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>9.2} | {:>8.2} {:>8.2} {:>8.2} {:>9.2} | {:>9.3}",
                    r.algorithm.name(),
                    r.gap
                        .map_or("-".to_string(), |g| format!("{:.2}%", g * 100.0)),
                    l.tra,
                    l.mig,
                    l.ini,
                    l.pro,
                    l.total,
                    c.cpu,
                    c.storage,
                    c.comm,
                    c.total,
                    r.solve_ms
                ),
                _ => println!(
                    "{:<12} no plan: {}",
                    r.algorithm.name(),
                    r.error.as_deref().unwrap_or("unknown")
                ),
            }
            if let Some(note) = &r.refinement {
                println!("          refinement: {note}");
            }
            for note in &r.fallbacks {
                println!("          fallback: {note}");
            }
        }
        let decisions = results.iter().filter(|r| r.policy.is_some()).count();
        let failed = results.iter().filter(|r| !r.fallbacks.is_empty()).count();
        if let Some(r) = results.iter().find(|r| r.lower_bound.is_some()) {
            let how = match r.bound_method {
                Some(edgehost_placement::BoundMethod::Optimum) => {
                    "the optimum, proven by exact search"
                }
                _ => "Lagrangian relaxation",
            };
            println!(
                "lower bound on the objective: {:.3} ({how}); gap = (objective - bound) / objective",
                r.lower_bound.unwrap_or_default()
            );
        }
        plugin_verdict(runner, failed, decisions)
    }

    fn after_move(&self, runner: &Runner<'_>, params: Option<CostParams>) -> anyhow::Result<()> {
        let eval = migrate::AfterMove {
            config: ScenarioConfig {
                servers: self.servers,
                tasks: self.tasks,
                warm_fraction: f64::from(self.warm) / 100.0,
                ..ScenarioConfig::default()
            },
            seed: self.seed,
            repeats: self.repeats.max(1),
            // The exact solver's targets would only repeat local search's
            // on the instances it can take.
            targets: self
                .algorithms
                .iter()
                .copied()
                .filter(|&a| a != Algorithm::Optimal)
                .collect(),
            params,
        };
        let results = eval.run(runner).context("evaluation failed")?;
        if let Some(dir) = &self.out {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            write_json(&dir.join("after-move.json"), &results)?;
        }
        if self.json {
            println!("{}", serde_json::to_string_pretty(&results)?);
            return Ok(());
        }
        println!(
            "{} servers, {} tasks, seeds {}..={}: ALP places, every user moves, then",
            self.servers,
            self.tasks,
            self.seed,
            self.seed + eval.repeats - 1
        );
        println!(
            "{:<13} {:>4} {:>7} {:>11} {:>9} {:>9} {:>11}",
            "strategy", "runs", "moved", "migration s", "state MB", "delay s", "horizon s"
        );
        for r in &results {
            println!(
                "{:<13} {:>4} {:>7.2} {:>11.3} {:>9.1} {:>9.3} {:>11.2}",
                r.strategy, r.runs, r.moved, r.migration_s, r.state_mb, r.delay_s, r.horizon_s
            );
        }
        print!("\n{}", migrate::summary(&results));
        Ok(())
    }

    fn sweep(
        &self,
        axis: SweepAxis,
        runner: &Runner<'_>,
        params: Option<CostParams>,
    ) -> anyhow::Result<()> {
        let sweep = Sweep {
            axis,
            values: self.points.clone().unwrap_or_else(|| axis.default_values()),
            servers: self.servers,
            tasks: self.tasks,
            warm_fraction: f64::from(self.warm) / 100.0,
            seed: self.seed,
            repeats: self.repeats.max(1),
            algorithms: self.algorithms.clone(),
            params,
        };
        match axis {
            SweepAxis::Warm if sweep.values.iter().any(|&v| v > 100) => {
                bail!("warm points are percentages, 0 to 100")
            }
            SweepAxis::Servers | SweepAxis::Tasks if sweep.values.contains(&0) => {
                bail!("sweep points must be at least 1")
            }
            _ => {}
        }
        let points = sweep.run(runner).context("sweep failed")?;
        let dir = self.out.clone().unwrap_or_else(|| PathBuf::from("sim-out"));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let csv = dir.join(format!("sweep-{}.csv", axis.name()));
        sweep::write_csv(&csv, axis, &points)?;
        let figures = chart::write_figures(&dir, axis, &points)?;
        let reductions = sweep::reductions(&points);
        let failed: usize = points.iter().map(|p| p.fallbacks).sum();
        let decisions: usize = points
            .iter()
            .filter(|p| p.algorithm == Some(Algorithm::AntLlm))
            .map(|p| p.runs)
            .sum();
        if self.json {
            // One object per point and algorithm; the reductions follow
            // from them and are printed in the text output.
            println!("{}", serde_json::to_string_pretty(&points)?);
            return plugin_verdict(runner, failed, decisions);
        }
        println!(
            "{:>7} {:<12} {:>4} {:>8} {:>10} {:>7} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>9}",
            axis.name(),
            "algorithm",
            "runs",
            "unsolved",
            "objective",
            "gap",
            "tra s",
            "mig s",
            "ini s",
            "pro s",
            "total s",
            "cost",
            "solve ms"
        );
        for p in &points {
            println!(
                "{:>7} {:<12} {:>4} {:>8} {:>10.3} {:>6.2}% {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>9.2} {:>9.2} {:>9.3}",
                p.value,
                p.algorithm.map_or("", Algorithm::name),
                p.runs,
                p.unsolved,
                p.objective,
                p.gap * 100.0,
                p.tra,
                p.mig,
                p.ini,
                p.pro,
                p.total,
                p.cost_total,
                p.solve_ms
            );
        }
        println!("\n{}", sweep::summary(axis, &reductions, &points));
        println!("\nwrote {}", csv.display());
        for f in figures {
            println!("wrote {}", dir.join(f).display());
        }
        plugin_verdict(runner, failed, decisions)
    }
}

/// An error after the results when a plugin was given and failed in some
/// decision.
fn plugin_verdict(runner: &Runner<'_>, failed: usize, decisions: usize) -> anyhow::Result<()> {
    if runner.policy.is_some() && failed > 0 {
        return Err(PluginFailed { failed, decisions }.into());
    }
    Ok(())
}

fn write_json(path: &std::path::Path, value: &impl serde::Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &std::path::Path, text: &str) -> PathBuf {
        let path = dir.join("fleet.json");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn a_fleet_snapshot_gives_its_cost_constants() {
        let dir = tempfile::tempdir().unwrap();
        let mut params = CostParams {
            init_base_s: 0.004,
            export_base_s: 0.0001,
            ..CostParams::default()
        };
        params.load_mb_per_s = 900.0;
        let snapshot = serde_json::json!({ "via": "beijing", "cost_params": params, "hosts": [] });
        let loaded = load_model(&write(dir.path(), &snapshot.to_string())).unwrap();
        assert_eq!(loaded, params);
    }

    #[test]
    fn a_snapshot_without_or_with_broken_constants_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let missing = load_model(&write(dir.path(), r#"{"hosts": []}"#)).unwrap_err();
        assert!(
            format!("{missing:#}").contains("no cost_params"),
            "{missing:#}"
        );
        let mut bad = serde_json::to_value(CostParams::default()).unwrap();
        bad["load_mb_per_s"] = serde_json::json!(-1.0);
        let broken = serde_json::json!({ "cost_params": bad }).to_string();
        assert!(load_model(&write(dir.path(), &broken)).is_err());
        assert!(load_model(&write(dir.path(), "not json")).is_err());
    }
}
