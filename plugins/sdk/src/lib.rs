//! Write edgehost policy plugins in Rust.
//!
//! A policy is the heuristic and the cost model the placement engine uses to
//! decide where agents run and when they move. A plugin is a type that
//! implements [`Policy`]; [`export_policy!`] turns it into a WebAssembly
//! component of the `edgehost:policy/policy@0.1.0` world (build with
//! `cargo build --release --target wasm32-wasip2`, crate type `cdylib`).
//!
//! ```text
//! use edgehost_policy::{Instance, Policy, PolicyError};
//!
//! struct MostMemory;
//!
//! impl Policy for MostMemory {
//!     // Prefer the server with the most free memory; keep the reference
//!     // cost model (the other three methods have default bodies).
//!     fn score(instance: &Instance) -> Result<Vec<f64>, PolicyError> {
//!         let mut out = Vec::new();
//!         for _agent in &instance.agents {
//!             for server in &instance.servers {
//!                 out.push(server.remaining().memory_gb.max(0.0));
//!             }
//!         }
//!         Ok(out)
//!     }
//! }
//!
//! edgehost_policy::export_policy!(MostMemory);
//! ```
//!
//! The SDK turns the host's records into the engine's own types
//! ([`Instance`], [`Plan`], [`MigrationContext`]) after checking that they are
//! consistent (a broken instance is answered with
//! [`PolicyError::InvalidInput`] before your code runs), and turns your
//! answers back. Every method has a default body that is the engine's
//! reference implementation (module [`reference`]), so a plugin overrides
//! only what it changes. The whole decision engine is re-exported as
//! [`placement`]: its cost equations ([`placement::cost`]) and the reference
//! heuristic are there to build on.
//!
//! What the host checks in every answer (and treats as a fault if broken):
//! the number of values, that every value is finite, and that scores,
//! objectives and plan costs are not negative. Policies must be pure:
//! the same inputs must always give the same outputs, and the world gives
//! no clock, randomness, files or network to make them otherwise.
//!
//! This crate does not build or install plugins; see `docs/plugins.md`.

// The generated bindings name this crate by its path, as plugin crates do.
extern crate self as edgehost_policy;

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/policy",
        world: "policy",
        pub_export_macro: true,
        export_macro_name: "__export_policy_world",
        default_bindings_module: "::edgehost_policy::bindings",
        runtime_path: "::edgehost_policy::__wit_bindgen::rt",
    });
}

mod convert;
pub mod reference;

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

pub use bindings::edgehost::policy::types::PolicyError;
pub use edgehost_placement as placement;
pub use edgehost_placement::cost::PlanReport;
pub use edgehost_placement::{Instance, MigrationContext, Plan};

use bindings::edgehost::policy::types as wit;

/// What an edgehost policy plugin implements. Every method has a default
/// body: the engine's reference implementation.
///
/// The methods are associated functions (no `self`): a policy is a pure
/// function of its inputs and keeps nothing between calls.
pub trait Policy {
    /// The heuristic: one value per (agent, server) pair, row-major (every
    /// server of agent 0, then of agent 1, ...), `agents x servers` values
    /// in all. Finite and not negative; larger is more attractive.
    fn score(instance: &Instance) -> Result<Vec<f64>, PolicyError> {
        reference::score(instance)
    }

    /// The objective of each plan (lower is better), one finite,
    /// non-negative value per plan, in order.
    fn objectives(instance: &Instance, plans: &[Plan]) -> Result<Vec<f64>, PolicyError> {
        reference::objectives(instance, plans)
    }

    /// The full latency and cost breakdown of one plan; every number finite
    /// and not negative, one entry in `tasks` per task of the instance.
    fn plan_cost(instance: &Instance, plan: &Plan) -> Result<PlanReport, PolicyError> {
        reference::plan_cost(instance, plan)
    }

    /// The net gain, seconds, of moving from deployment `before` to each
    /// candidate deployment in `after` (higher is better; negative does not
    /// pay): one finite value per candidate, in order.
    fn migration_fitness(
        instance: &Instance,
        before: &Plan,
        context: &MigrationContext,
        after: &[Plan],
    ) -> Result<Vec<f64>, PolicyError> {
        reference::migration_fitness(instance, before, context, after)
    }
}

#[doc(hidden)]
pub fn __score<P: Policy>(instance: wit::Instance) -> Result<Vec<f64>, PolicyError> {
    let instance = convert::instance(instance)?;
    P::score(&instance)
}

#[doc(hidden)]
pub fn __objectives<P: Policy>(
    instance: wit::Instance,
    plans: Vec<wit::Plan>,
) -> Result<Vec<f64>, PolicyError> {
    let instance = convert::instance(instance)?;
    let plans = plans
        .into_iter()
        .map(|p| convert::plan(&instance, p))
        .collect::<Result<Vec<_>, _>>()?;
    P::objectives(&instance, &plans)
}

#[doc(hidden)]
pub fn __plan_cost<P: Policy>(
    instance: wit::Instance,
    plan: wit::Plan,
) -> Result<wit::PlanReport, PolicyError> {
    let instance = convert::instance(instance)?;
    let plan = convert::plan(&instance, plan)?;
    P::plan_cost(&instance, &plan).map(convert::plan_cost)
}

#[doc(hidden)]
pub fn __migration_fitness<P: Policy>(
    instance: wit::Instance,
    before: wit::Plan,
    context: wit::MigrationContext,
    after: Vec<wit::Plan>,
) -> Result<Vec<f64>, PolicyError> {
    let instance = convert::instance(instance)?;
    let before = convert::plan(&instance, before)?;
    let context = convert::context(&instance, context)?;
    let after = after
        .into_iter()
        .map(|p| convert::plan(&instance, p))
        .collect::<Result<Vec<_>, _>>()?;
    P::migration_fitness(&instance, &before, &context, &after)
}

/// Exports `$ty` (a type implementing [`Policy`]) as this component's
/// heuristic and cost model. Call it once, at the top level of the plugin
/// crate.
#[macro_export]
macro_rules! export_policy {
    ($ty:ty) => {
        #[doc(hidden)]
        pub struct __EdgehostPolicyExport;

        impl $crate::bindings::exports::edgehost::policy::heuristic::Guest
            for __EdgehostPolicyExport
        {
            fn score(
                instance: $crate::bindings::edgehost::policy::types::Instance,
            ) -> ::std::result::Result<::std::vec::Vec<f64>, $crate::PolicyError> {
                $crate::__score::<$ty>(instance)
            }
        }

        impl $crate::bindings::exports::edgehost::policy::cost_model::Guest
            for __EdgehostPolicyExport
        {
            fn objectives(
                instance: $crate::bindings::edgehost::policy::types::Instance,
                plans: ::std::vec::Vec<$crate::bindings::edgehost::policy::types::Plan>,
            ) -> ::std::result::Result<::std::vec::Vec<f64>, $crate::PolicyError> {
                $crate::__objectives::<$ty>(instance, plans)
            }

            fn plan_cost(
                instance: $crate::bindings::edgehost::policy::types::Instance,
                plan: $crate::bindings::edgehost::policy::types::Plan,
            ) -> ::std::result::Result<
                $crate::bindings::edgehost::policy::types::PlanReport,
                $crate::PolicyError,
            > {
                $crate::__plan_cost::<$ty>(instance, plan)
            }

            fn migration_fitness(
                instance: $crate::bindings::edgehost::policy::types::Instance,
                before: $crate::bindings::edgehost::policy::types::Plan,
                context: $crate::bindings::edgehost::policy::types::MigrationContext,
                after: ::std::vec::Vec<$crate::bindings::edgehost::policy::types::Plan>,
            ) -> ::std::result::Result<::std::vec::Vec<f64>, $crate::PolicyError> {
                $crate::__migration_fitness::<$ty>(instance, before, context, after)
            }
        }

        $crate::bindings::__export_policy_world!(
            __EdgehostPolicyExport with_types_in $crate::bindings
        );
    };
}
