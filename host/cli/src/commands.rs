//! The subcommands of `edgehost`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;

mod inspect;
mod run;
mod sim;
mod status;

pub use inspect::InspectCommand;
pub use run::RunCommand;
pub use sim::SimCommand;
pub use status::StatusCommand;

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
}

impl Command {
    /// Runs the chosen subcommand.
    pub fn execute(self) -> Result<()> {
        match self {
            Command::Inspect(c) => c.execute(),
            Command::Run(c) => c.execute(),
            Command::Status(c) => c.execute(),
            Command::Sim(c) => c.execute(),
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
