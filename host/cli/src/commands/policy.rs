//! `edgehost policy`: work with policy plugins.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use edgehost_runtime::PolicyRuntimeBuilder;
use edgehost_runtime::policy::check::{self, CheckOptions};

use super::default_cache_dir;

/// Work with policy plugins (placement heuristics and cost models).
#[derive(Args)]
pub struct PolicyCommand {
    #[command(subcommand)]
    action: PolicyAction,
}

#[derive(Subcommand)]
enum PolicyAction {
    /// Check that a plugin conforms: world and version, answers of the right
    /// shape, finite values, determinism, speed on a large matrix and
    /// behaviour on hostile inputs. Exits with 1 if any check fails.
    Check(CheckArgs),
    /// Swap the placement policy of every reachable host of a running fleet.
    Set(super::policy_set::SetArgs),
}

#[derive(Args)]
struct CheckArgs {
    /// The plugin component (.wasm).
    file: PathBuf,
    /// Budget for scoring a 1,000 agents x 100 servers matrix, milliseconds.
    #[arg(long, default_value_t = 50.0)]
    max_score_ms: f64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Where compiled artifacts are cached.
    #[arg(long, env = "EDGEHOST_CACHE_DIR", value_name = "DIR")]
    cache_dir: Option<PathBuf>,
}

impl PolicyCommand {
    /// Runs the chosen action.
    pub fn execute(self) -> Result<()> {
        match self.action {
            PolicyAction::Check(args) => args.execute(),
            PolicyAction::Set(args) => args.execute(),
        }
    }
}

impl CheckArgs {
    fn execute(self) -> Result<()> {
        let bytes = std::fs::read(&self.file)
            .with_context(|| format!("reading {}", self.file.display()))?;
        let name = self
            .file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "plugin".to_owned());
        let runtime = PolicyRuntimeBuilder::new(self.cache_dir.unwrap_or_else(default_cache_dir))
            .build()
            .context("starting the policy runtime")?;
        let options = CheckOptions {
            max_score_ms: self.max_score_ms,
            ..CheckOptions::default()
        };
        let report = check::run(&runtime, &bytes, &name, &options);
        if self.json {
            outln!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            match &report.info {
                Some(info) => outln!(
                    "policy check {} ({}, {} bytes)",
                    self.file.display(),
                    info.digest,
                    info.size
                ),
                None => outln!("policy check {}", self.file.display()),
            }
            for item in &report.items {
                outln!(
                    "  {:<4}  {:<15} {}",
                    if item.passed { "ok" } else { "FAIL" },
                    item.name,
                    item.detail
                );
            }
        }
        let failed = report.items.iter().filter(|i| !i.passed).count();
        if report.passed() {
            if !self.json {
                outln!("passed: all {} checks", report.items.len());
            }
            Ok(())
        } else {
            Err(crate::exit::outcome(
                crate::exit::Code::Refused,
                format!(
                    "{}: {failed} of {} checks failed",
                    self.file.display(),
                    report.items.len()
                ),
            ))
        }
    }
}
