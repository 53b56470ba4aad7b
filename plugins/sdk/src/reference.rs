//! The engine's reference policy, callable from a plugin: the default body
//! of every [`Policy`](crate::Policy) method, and a base to adjust (scale
//! the reference scores, add a term to the reference objective, ...).
//!
//! These are the very functions the host runs natively, so a plugin that
//! uses them unchanged gives the host's numbers.

use edgehost_placement::cost::PlanReport;
use edgehost_placement::cost_model::{CostModel, NativeCostModel};
use edgehost_placement::heuristic::{Heuristic, NativeHeuristic};
use edgehost_placement::{Instance, MigrationContext, Plan};

use crate::PolicyError;

fn refused(e: edgehost_placement::Error) -> PolicyError {
    PolicyError::InvalidInput(e.to_string())
}

/// The reference heuristic's matrix, row-major.
pub fn score(instance: &Instance) -> Result<Vec<f64>, PolicyError> {
    let matrix = NativeHeuristic::default()
        .matrix(instance)
        .map_err(refused)?;
    let mut out = Vec::with_capacity(instance.agents.len() * instance.servers.len());
    for a in 0..matrix.agents() {
        out.extend_from_slice(matrix.row(a));
    }
    Ok(out)
}

/// The reference placement objective of each plan.
pub fn objectives(instance: &Instance, plans: &[Plan]) -> Result<Vec<f64>, PolicyError> {
    NativeCostModel.objectives(instance, plans).map_err(refused)
}

/// The reference latency and cost breakdown of one plan.
pub fn plan_cost(instance: &Instance, plan: &Plan) -> Result<PlanReport, PolicyError> {
    NativeCostModel.report(instance, plan).map_err(refused)
}

/// The reference migration net gain of each candidate deployment.
pub fn migration_fitness(
    instance: &Instance,
    before: &Plan,
    context: &MigrationContext,
    after: &[Plan],
) -> Result<Vec<f64>, PolicyError> {
    NativeCostModel
        .migration_gains(instance, before, context, after)
        .map_err(refused)
}
