//! The subcommands of `edgehost`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Subcommand;
use edgehost_runtime::{AgentInstance, RuntimeBuilder, Services};

mod client;
mod completions;
mod dashboard;
mod events;
mod fleet;
mod inspect;
mod invoke;
mod migrate;
mod model;
mod policy;
mod policy_set;
mod ps;
mod push;
mod run;
mod serve;
mod sim;
mod status;
mod task;
mod up;

pub use completions::{CompletionsCommand, ManCommand};
pub use dashboard::DashboardCommand;
pub use events::{ClientCommand, EventsCommand};
pub use fleet::FleetCommand;
pub use inspect::InspectCommand;
pub use invoke::{InvokeCommand, ReleaseCommand};
pub use migrate::MigrateCommand;
pub use model::ModelCommand;
pub use policy::PolicyCommand;
pub use ps::PsCommand;
pub use push::PushCommand;
pub use run::RunCommand;
pub use serve::ServeCommand;
pub use sim::SimCommand;
pub use status::StatusCommand;
pub use task::TaskCommand;
pub use up::UpCommand;

/// All subcommands.
#[derive(Subcommand)]
pub enum Command {
    /// Show what a component is: agent, policy or neither, its world,
    /// imports, exports, size and digest.
    Inspect(InspectCommand),
    /// Run an agent locally: init, optionally import state, handle one
    /// request, optionally export state.
    Run(RunCommand),
    /// Show this machine's resources as the placement engine sees them.
    Status(StatusCommand),
    /// Compare placement algorithms on seeded scenarios; sweep servers or
    /// tasks and chart the paper's figures.
    Sim(SimCommand),
    /// Create a fleet CA and issue host and client certificates.
    Fleet(FleetCommand),
    /// Run this machine's host: join the fleet, run agents, route calls.
    Serve(ServeCommand),
    /// Deploy an agent: check it, let AntLLM choose a host, upload, deploy.
    Push(PushCommand),
    /// List the fleet's hosts and agents.
    Ps(PsCommand),
    /// Call an agent wherever it runs.
    Invoke(InvokeCommand),
    /// Stop an agent and remove it from its host.
    Release(ReleaseCommand),
    /// Move an agent to another host, shipping only its state.
    Migrate(MigrateCommand),
    /// Report where a user is attached now (ALM may move its agents).
    Client(ClientCommand),
    /// Show the migration decisions ALM made, with their reasons.
    Events(EventsCommand),
    /// Show what each host measured about itself and its links: the
    /// figures the cost model prices with, and which are still defaults.
    Model(ModelCommand),
    /// Start a fleet of N hosts on this machine, for demos and tests.
    Up(UpCommand),
    /// Run a user's task across the fleet's agents (`task run`), list
    /// recent tasks (`task list`), write test images (`task images`).
    Task(TaskCommand),
    /// Work with policy plugins: `policy check FILE` runs the conformance
    /// checks.
    Policy(PolicyCommand),
    /// Serve a live web dashboard of the fleet (read-only).
    Dashboard(DashboardCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish,
    /// powershell).
    Completions(CompletionsCommand),
    /// Write the manual pages.
    Man(ManCommand),
}

impl Command {
    /// Runs the chosen subcommand.
    pub fn execute(self) -> Result<()> {
        match self {
            Command::Inspect(c) => c.execute(),
            Command::Run(c) => c.execute(),
            Command::Status(c) => c.execute(),
            Command::Sim(c) => c.execute(),
            Command::Fleet(c) => c.execute(),
            Command::Serve(c) => c.execute(),
            Command::Push(c) => c.execute(),
            Command::Ps(c) => c.execute(),
            Command::Invoke(c) => c.execute(),
            Command::Release(c) => c.execute(),
            Command::Migrate(c) => c.execute(),
            Command::Client(c) => c.execute(),
            Command::Events(c) => c.execute(),
            Command::Model(c) => c.execute(),
            Command::Task(c) => c.execute(),
            Command::Up(c) => c.execute(),
            Command::Policy(c) => c.execute(),
            Command::Dashboard(c) => c.execute(),
            Command::Completions(c) => c.execute(),
            Command::Man(c) => c.execute(),
        }
    }
}

/// Where compiled artifacts are cached when no `--cache-dir` is given:
/// `$XDG_CACHE_HOME/edgehost`, else `~/.cache/edgehost`, else a directory
/// under the system's temporary directory.
pub fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("edgehost");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(home).join(".cache").join("edgehost");
    }
    std::env::temp_dir().join("edgehost-cache")
}

/// Compiles (or loads from the artifact cache in `cache_dir`, by default
/// [`default_cache_dir`]) the agent component `bytes`, read from `file`, and
/// starts one instance named `name` with no host services.
pub fn start_locally(
    cache_dir: Option<PathBuf>,
    file: &Path,
    bytes: &[u8],
    name: &str,
) -> Result<AgentInstance> {
    let runtime = RuntimeBuilder::new(cache_dir.unwrap_or_else(default_cache_dir)).build()?;
    let component = runtime
        .load(bytes)
        .with_context(|| file.display().to_string())?;
    let agent = runtime.instantiate(&component, name, Services::default())?;
    Ok(agent)
}
