//! A policy: the heuristic and cost model an engine run uses, with fallback
//! to the native reference implementations when a plugged-in one fails or
//! answers with something unusable.

use crate::cost::PlanReport;
use crate::cost_model::{CostModel, NativeCostModel};
use crate::gain::MigrationContext;
use crate::heuristic::{Heuristic, HeuristicMatrix, NativeHeuristic};
use crate::model::{Instance, Plan};
use crate::{Error, Result};

/// The pair of policy implementations a decision runs with.
///
/// Calls go to the configured implementations; if one returns an error or a
/// malformed answer (wrong length, non-finite numbers), the call is repeated
/// on the native implementation and the reason is recorded in the caller's
/// `fallbacks` list. A broken plugin therefore degrades a decision to the
/// reference policy instead of failing it. Once a cost model has failed in a
/// decision (one `fallbacks` list), the rest of that decision uses the native
/// cost model without asking the plugin again: one decision never mixes the
/// two models' numbers more than once, and a plugin that hangs until its
/// deadline costs a decision that deadline once, not once per iteration.
pub struct Policy {
    heuristic: Box<dyn Heuristic + Send + Sync>,
    cost: Box<dyn CostModel + Send + Sync>,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("heuristic", &self.heuristic.name())
            .field("cost", &self.cost.name())
            .finish()
    }
}

impl Default for Policy {
    fn default() -> Self {
        Self::native()
    }
}

impl Policy {
    /// The native heuristic and cost model.
    pub fn native() -> Self {
        Self::new(
            Box::new(NativeHeuristic::default()),
            Box::new(NativeCostModel),
        )
    }

    /// A policy from two implementations (plugins, or the native ones).
    pub fn new(
        heuristic: Box<dyn Heuristic + Send + Sync>,
        cost: Box<dyn CostModel + Send + Sync>,
    ) -> Self {
        Self { heuristic, cost }
    }

    /// What decides, in words: `built-in`, or the names of the heuristic
    /// and the cost model when either is not the native one.
    pub fn describe(&self) -> String {
        let (h, c) = (self.heuristic.name(), self.cost.name());
        if h == "native" && c == "native" {
            "built-in".to_owned()
        } else {
            format!("heuristic {h}, cost model {c}")
        }
    }

    /// Whether the configured cost model already failed in the decision
    /// that owns `fallbacks` (every cost-model note starts this way).
    fn cost_failed(&self, fallbacks: &[String]) -> bool {
        let prefix = format!("cost model `{}` failed", self.cost.name());
        fallbacks.iter().any(|note| note.starts_with(&prefix))
    }

    /// The heuristic matrix, from the configured heuristic or the native one.
    pub fn heuristic_matrix(
        &self,
        instance: &Instance,
        fallbacks: &mut Vec<String>,
    ) -> Result<HeuristicMatrix> {
        match self.heuristic.matrix(instance).and_then(|m| {
            if m.agents() == instance.agents.len() && m.servers() == instance.servers.len() {
                Ok(m)
            } else {
                Err(Error::Plugin("heuristic matrix has the wrong shape".into()))
            }
        }) {
            Ok(m) => Ok(m),
            Err(e) => {
                fallbacks.push(format!(
                    "heuristic `{}` failed ({e}); used the native heuristic",
                    self.heuristic.name()
                ));
                NativeHeuristic::default().matrix(instance)
            }
        }
    }

    /// Objectives of a batch of plans.
    pub fn objectives(
        &self,
        instance: &Instance,
        plans: &[Plan],
        fallbacks: &mut Vec<String>,
    ) -> Result<Vec<f64>> {
        if self.cost_failed(fallbacks) {
            return NativeCostModel.objectives(instance, plans);
        }
        let answer = self.cost.objectives(instance, plans).and_then(|v| {
            if v.len() == plans.len() && v.iter().all(|x| x.is_finite()) {
                Ok(v)
            } else {
                Err(Error::Plugin(
                    "objectives have the wrong length or are not finite".into(),
                ))
            }
        });
        match answer {
            Ok(v) => Ok(v),
            Err(e) => {
                fallbacks.push(format!(
                    "cost model `{}` failed ({e}); used the native cost model",
                    self.cost.name()
                ));
                NativeCostModel.objectives(instance, plans)
            }
        }
    }

    /// Objective of one plan.
    pub fn objective(
        &self,
        instance: &Instance,
        plan: &Plan,
        fallbacks: &mut Vec<String>,
    ) -> Result<f64> {
        let v = self.objectives(instance, std::slice::from_ref(plan), fallbacks)?;
        v.first()
            .copied()
            .ok_or_else(|| Error::Plugin("empty objective batch".into()))
    }

    /// Full report of one plan.
    pub fn report(
        &self,
        instance: &Instance,
        plan: &Plan,
        fallbacks: &mut Vec<String>,
    ) -> Result<PlanReport> {
        if self.cost_failed(fallbacks) {
            return NativeCostModel.report(instance, plan);
        }
        match self.cost.report(instance, plan) {
            Ok(r) => Ok(r),
            Err(e) => {
                fallbacks.push(format!(
                    "cost model `{}` failed to report ({e}); used the native cost model",
                    self.cost.name()
                ));
                NativeCostModel.report(instance, plan)
            }
        }
    }

    /// Net migration gains of a batch of candidate deployments.
    pub fn migration_gains(
        &self,
        instance: &Instance,
        before: &Plan,
        context: &MigrationContext,
        after: &[Plan],
        fallbacks: &mut Vec<String>,
    ) -> Result<Vec<f64>> {
        if self.cost_failed(fallbacks) {
            return NativeCostModel.migration_gains(instance, before, context, after);
        }
        let answer = self
            .cost
            .migration_gains(instance, before, context, after)
            .and_then(|v| {
                if v.len() == after.len() && v.iter().all(|x| x.is_finite()) {
                    Ok(v)
                } else {
                    Err(Error::Plugin(
                        "migration gains have the wrong length or are not finite".into(),
                    ))
                }
            });
        match answer {
            Ok(v) => Ok(v),
            Err(e) => {
                fallbacks.push(format!(
                    "cost model `{}` failed on migration ({e}); used the native cost model",
                    self.cost.name()
                ));
                NativeCostModel.migration_gains(instance, before, context, after)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::tiny_instance;

    struct Broken;

    impl Heuristic for Broken {
        fn name(&self) -> &str {
            "broken"
        }
        fn matrix(&self, _: &Instance) -> Result<HeuristicMatrix> {
            Err(Error::Plugin("trap".into()))
        }
    }

    impl CostModel for Broken {
        fn name(&self) -> &str {
            "broken"
        }
        fn objectives(&self, _: &Instance, plans: &[Plan]) -> Result<Vec<f64>> {
            // Wrong length on purpose.
            Ok(vec![f64::NAN; plans.len() + 1])
        }
        fn report(&self, _: &Instance, _: &Plan) -> Result<PlanReport> {
            Err(Error::Plugin("trap".into()))
        }
        fn migration_gains(
            &self,
            _: &Instance,
            _: &Plan,
            _: &MigrationContext,
            _: &[Plan],
        ) -> Result<Vec<f64>> {
            Err(Error::Plugin("trap".into()))
        }
    }

    #[test]
    fn broken_plugins_fall_back_to_native() {
        let inst = tiny_instance();
        let policy = Policy::new(Box::new(Broken), Box::new(Broken));
        let mut notes = Vec::new();
        let m = policy
            .heuristic_matrix(&inst, &mut notes)
            .expect("fallback heuristic");
        assert_eq!(
            m,
            NativeHeuristic::default()
                .matrix(&inst)
                .expect("native heuristic")
        );
        let plan = Plan::new(vec![0, 1]);
        let v = policy
            .objective(&inst, &plan, &mut notes)
            .expect("fallback");
        assert_eq!(v, crate::cost::ead_objective(&inst, &plan).total);
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes.iter().all(|n| n.contains("broken")));
    }
}
