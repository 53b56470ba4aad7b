//! The edgehost decision engine: where to place AI agents on edge servers,
//! and when to move them.
//!
//! It implements AntLLM: the cost model of agent deployment (transmit,
//! migration, initiation and processing latency; CPU, storage and
//! communication cost), ALP — an ant colony that places every agent of a set
//! of tasks under the servers' memory, storage, bandwidth and agent-count
//! limits — and ALM — an ant colony that decides which agents follow their
//! users or leave an overloaded server, moving only when the net gain is
//! positive. A large language model may then propose a better plan through
//! the [`refine::Refiner`] trait; its proposal is checked and used only if it
//! is feasible and not worse.
//!
//! Main types:
//! * [`model::Instance`] (agents, servers, tasks, [`topology::Topology`]) and
//!   [`model::Plan`];
//! * [`cost`]: one function per equation, [`cost::report`] and
//!   [`cost::ead_objective`]; [`gain`], the migration gain built on them;
//!   the [`cost_model::CostModel`] trait, where a plugin replaces both;
//! * [`heuristic::Heuristic`], the per-decision heuristic matrix;
//! * [`policy::Policy`], the heuristic and cost model in use, falling back to
//!   the native ones when a plug-in fails;
//! * [`colony::Alp`], [`migration::Alm`], [`baseline`] (Greedy, Random,
//!   Polling), [`local::LocalSearch`] (greedy on the objective plus moves
//!   and swaps), [`exact::Optimal`] (branch and bound, small instances);
//! * [`bound::Bounder`]: a lower bound on the objective for every plan (the
//!   optimum where the exact solver fits, a Lagrangian bound above);
//! * [`separable::Separable`], the objective split per agent, server and
//!   dependency, shared by the exact solver, local search and the bound;
//! * [`scenario::Scenario`], seeded instances in the paper's setting.
//!
//! Modules import in one direction only, bottom up: `topology` (sites,
//! links) → `model` (the instance, plans, cost constants) → `constraint`
//! → `cost` (eqs. 1-10, the EAD objective) → `gain` (the EAM migration
//! gain) → `separable` → `heuristic` → `cost_model` → `policy` →
//! `pheromone` → the algorithms (`colony`, `migration`, `baseline`,
//! `local`, `exact`, `bound`, `refine`) → `scenario`. No module imports
//! one above it (test modules take fixtures from `scenario`).
//!
//! The crate is pure computation. It has no async runtime, no network, no
//! files and no clock: randomness comes from seeds passed in (ChaCha, so a
//! seed gives the same plan on every machine), and callers time what they
//! want timed. It knows nothing of Wasm; policy plug-ins and LLM clients
//! live behind its traits in other crates.
//!
//! Modelling choices where the paper leaves room are documented next to the
//! code: T_init grows linearly with the agents on the server; the EAD
//! requirement that dependent agents share a server is relaxed into the
//! theta-weighted communication term (kept literally, it makes that term
//! always zero and any task larger than one server infeasible); ants that
//! get stuck are discarded, not repaired.

pub mod algorithm;
pub mod baseline;
pub mod bound;
pub mod colony;
pub mod constraint;
pub mod cost;
pub mod cost_model;
pub mod exact;
pub mod gain;
pub mod heuristic;
pub mod local;
pub mod migration;
pub mod model;
pub mod pheromone;
pub mod policy;
pub mod refine;
pub mod scenario;
pub mod separable;
pub mod topology;

pub use algorithm::Algorithm;
pub use bound::{BoundMethod, Bounder, LowerBound};
pub use colony::{Alp, AlpOutcome, AlpParams};
pub use constraint::{Limit, Violation};
pub use cost::PlanReport;
pub use cost_model::{CostModel, NativeCostModel};
pub use exact::Optimal;
pub use gain::MigrationContext;
pub use heuristic::{Heuristic, HeuristicMatrix, NativeHeuristic};
pub use local::LocalSearch;
pub use migration::{Alm, AlmParams, MigrationPlan};
pub use model::{Agent, CostParams, Dependency, Instance, Plan, Resources, Server, Site, Task};
pub use policy::Policy;
pub use refine::{Refiner, Verdict};
pub use scenario::{Scenario, ScenarioConfig};
pub use topology::Topology;

/// Everything that can go wrong in a decision.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The instance is inconsistent (bad index, negative capacity, ...).
    #[error("invalid instance: {0}")]
    InvalidInstance(String),
    /// A plan has the wrong shape for its instance.
    #[error("invalid plan: {0}")]
    InvalidPlan(String),
    /// Algorithm parameters out of range.
    #[error("invalid parameters: {0}")]
    InvalidParameters(String),
    /// A plan breaks eq. 11 or the agent limit.
    #[error("plan breaks a limit: {0}")]
    Infeasible(Violation),
    /// No plan satisfying the constraints was found.
    #[error("no feasible plan: {0}")]
    NoFeasiblePlan(String),
    /// The exact solver refuses the instance.
    #[error(
        "instance too large for the exact solver: {agents} agents on {servers} servers \
         (it accepts at most {max_agents} agents and {max_servers} servers)"
    )]
    TooLarge {
        /// Agents in the instance.
        agents: usize,
        /// Servers in the instance.
        servers: usize,
        /// The solver's agent limit.
        max_agents: usize,
        /// The solver's server limit.
        max_servers: usize,
    },
    /// The exact solver ran out of its search budget.
    #[error("exact search stopped after {nodes} nodes without proving an optimum")]
    SearchLimit {
        /// The budget.
        nodes: u64,
    },
    /// A plugged-in heuristic or cost model failed or answered nonsense.
    #[error("policy plug-in failed: {0}")]
    Plugin(String),
    /// The refiner could not be reached or did not answer in time.
    #[error("refiner unavailable: {0}")]
    RefinerUnavailable(String),
    /// The refiner answered something that is not a usable plan.
    #[error("refiner answer unusable: {0}")]
    RefinerAnswer(String),
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
