//! A deterministic fault simulator: several hosts' [`Core`]s, one seed.
//!
//! One schedule creates a few agents, then for a while lets clients write
//! to them and the operator migrate and release them, while the simulated
//! network delays, loses, duplicates and reorders messages, partitions
//! heal, and hosts crash (losing memory and every write not yet durable)
//! and restart. Then the network heals, every host comes back, and the
//! fleet must settle. The invariants ([`check`]) are checked after every
//! step and at the end. Everything random comes from the seed, so a failing
//! seed replays exactly.

mod check;
mod host;
mod world;

use std::time::Duration;

pub use world::World;

/// What one schedule did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Events processed.
    pub steps: u64,
    /// Writes answered `Done`.
    pub acknowledged: u64,
    /// Handoffs that committed.
    pub committed: u64,
    /// Handoffs that aborted.
    pub aborted: u64,
    /// Host crashes.
    pub crashes: u64,
    /// Partitions.
    pub partitions: u64,
    /// Agents released.
    pub released: u64,
}

/// An invariant that did not hold.
#[derive(Clone, Debug)]
pub struct Failure {
    /// The schedule's seed.
    pub seed: u64,
    /// The step it failed at.
    pub step: u64,
    /// The simulated time.
    pub at: Duration,
    /// What broke, on one line.
    pub what: String,
    /// The last events before it.
    pub trace: Vec<String>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "seed {} failed at step {} ({:?}): {}",
            self.seed, self.step, self.at, self.what
        )?;
        for line in &self.trace {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

/// How a schedule runs.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Keep this many of the last events for a failure's trace.
    pub trace: usize,
    /// Print every event as it happens.
    pub verbose: bool,
    /// Agree names and commit points through a registry of three hosts.
    /// Off, every host decides alone, and a create of an existing name on a
    /// host that does not know it makes a second owner (H2).
    pub registry: bool,
    /// Now and then create an agent that exists, on a host chosen at
    /// random. Off, the schedules are those of the simulator's first
    /// version, before there was a registry.
    pub create_again: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            trace: 60,
            verbose: false,
            registry: true,
            create_again: true,
        }
    }
}

/// Runs the schedule `seed`.
pub fn run(seed: u64, options: Options) -> Result<Summary, Box<Failure>> {
    World::new(seed, options).run()
}
