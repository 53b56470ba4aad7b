//! The seam where a policy plugin replaces the native cost model: the
//! [`CostModel`] trait, and [`NativeCostModel`], which prices plans with
//! [`crate::cost`] and [`crate::gain`].

use crate::Result;
use crate::cost::{PlanReport, ead_objective, report};
use crate::gain::{MigrationContext, total_net_gain_s};
use crate::model::{Instance, Plan};

/// Prices plans. A policy plugin implements this to replace the native
/// cost model; every method may fail, and the engine then falls back to
/// [`NativeCostModel`] (see [`crate::policy::Policy`]).
pub trait CostModel {
    /// A short name for reports.
    fn name(&self) -> &str;

    /// The objective (lower is better) of each plan of a batch, in order.
    /// The colony calls this once per iteration with all its ants' plans.
    fn objectives(&self, instance: &Instance, plans: &[Plan]) -> Result<Vec<f64>>;

    /// The full latency and cost breakdown of one plan.
    fn report(&self, instance: &Instance, plan: &Plan) -> Result<PlanReport>;

    /// The total EAM net gain (seconds, higher is better) of each candidate
    /// deployment in `after`, relative to `before`, for users attached to
    /// `context.user_servers`.
    fn migration_gains(
        &self,
        instance: &Instance,
        before: &Plan,
        context: &MigrationContext,
        after: &[Plan],
    ) -> Result<Vec<f64>>;
}

/// The reference cost model: eqs. 1-10, the EAD objective and the EAM gain
/// exactly as [`crate::cost`] and [`crate::gain`] define them.
#[derive(Clone, Copy, Debug, Default)]
pub struct NativeCostModel;

impl CostModel for NativeCostModel {
    fn name(&self) -> &str {
        "native"
    }

    fn objectives(&self, instance: &Instance, plans: &[Plan]) -> Result<Vec<f64>> {
        plans
            .iter()
            .map(|plan| {
                plan.check_shape(instance)?;
                Ok(ead_objective(instance, plan).total)
            })
            .collect()
    }

    fn report(&self, instance: &Instance, plan: &Plan) -> Result<PlanReport> {
        plan.check_shape(instance)?;
        Ok(report(instance, plan))
    }

    fn migration_gains(
        &self,
        instance: &Instance,
        before: &Plan,
        context: &MigrationContext,
        after: &[Plan],
    ) -> Result<Vec<f64>> {
        before.check_shape(instance)?;
        after
            .iter()
            .map(|plan| {
                plan.check_shape(instance)?;
                Ok(total_net_gain_s(instance, before, context, plan))
            })
            .collect()
    }
}
