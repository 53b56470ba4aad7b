//! Swapping the policy of a running host.
//!
//! A [`PolicySlot`] holds the policy decisions use. A decision takes one
//! snapshot (an `Arc`) when it starts and uses only that for every call it
//! makes, so a swap never lands half-way through a decision: decisions
//! already running finish with the old policy, the next one starts with the
//! new. The old policy is dropped when the last decision using it ends.

use std::sync::{Arc, PoisonError, RwLock};

use edgehost_placement::Policy;

/// The policy a host decides with, swappable while decisions run.
#[derive(Debug)]
pub struct PolicySlot {
    current: RwLock<(u64, Arc<Policy>)>,
}

impl Default for PolicySlot {
    fn default() -> Self {
        Self::new(Policy::native())
    }
}

impl PolicySlot {
    /// A slot holding `policy` as generation 0.
    pub fn new(policy: Policy) -> Self {
        PolicySlot {
            current: RwLock::new((0, Arc::new(policy))),
        }
    }

    /// The policy in the slot now and its generation (how many swaps came
    /// before it). Hold on to the `Arc` for the whole decision.
    pub fn snapshot(&self) -> (u64, Arc<Policy>) {
        let guard = self.current.read().unwrap_or_else(PoisonError::into_inner);
        (guard.0, guard.1.clone())
    }

    /// The policy in the slot now.
    pub fn current(&self) -> Arc<Policy> {
        self.snapshot().1
    }

    /// How many swaps have happened.
    pub fn generation(&self) -> u64 {
        self.snapshot().0
    }

    /// Puts `policy` in the slot for every decision that starts from now on
    /// and returns the generation it got and the policy it replaced.
    pub fn swap(&self, policy: Policy) -> (u64, Arc<Policy>) {
        let mut guard = self.current.write().unwrap_or_else(PoisonError::into_inner);
        let generation = guard.0.wrapping_add(1);
        let old = std::mem::replace(&mut *guard, (generation, Arc::new(policy)));
        (generation, old.1)
    }

    /// Runs one decision with the policy in the slot when it starts. `f`
    /// gets that policy and its generation; a swap while `f` runs does not
    /// affect it.
    pub fn decide<R>(&self, f: impl FnOnce(&Policy, u64) -> R) -> R {
        let (generation, policy) = self.snapshot();
        f(&policy, generation)
    }
}

#[cfg(test)]
mod tests {
    use edgehost_placement::cost::PlanReport;
    use edgehost_placement::cost_model::{CostModel, NativeCostModel};
    use edgehost_placement::heuristic::{Heuristic, HeuristicMatrix};
    use edgehost_placement::{Instance, MigrationContext, Plan, Result};

    use super::*;

    /// A policy whose heuristic and cost model are tagged `tag`.
    struct Tagged(&'static str);

    impl Heuristic for Tagged {
        fn name(&self) -> &str {
            self.0
        }
        fn matrix(&self, instance: &Instance) -> Result<HeuristicMatrix> {
            HeuristicMatrix::new(
                instance.agents.len(),
                instance.servers.len(),
                vec![1.0; instance.agents.len() * instance.servers.len()],
            )
        }
    }

    impl CostModel for Tagged {
        fn name(&self) -> &str {
            self.0
        }
        fn objectives(&self, instance: &Instance, plans: &[Plan]) -> Result<Vec<f64>> {
            NativeCostModel.objectives(instance, plans)
        }
        fn report(&self, instance: &Instance, plan: &Plan) -> Result<PlanReport> {
            NativeCostModel.report(instance, plan)
        }
        fn migration_gains(
            &self,
            instance: &Instance,
            before: &Plan,
            context: &MigrationContext,
            after: &[Plan],
        ) -> Result<Vec<f64>> {
            NativeCostModel.migration_gains(instance, before, context, after)
        }
    }

    fn tagged(tag: &'static str) -> Policy {
        Policy::new(Box::new(Tagged(tag)), Box::new(Tagged(tag)))
    }

    fn tag(policy: &Policy) -> String {
        format!("{policy:?}")
    }

    #[test]
    fn a_snapshot_outlives_a_swap() {
        let slot = PolicySlot::new(tagged("first"));
        let (g0, held) = slot.snapshot();
        let (g1, old) = slot.swap(tagged("second"));
        assert_eq!((g0, g1), (0, 1));
        // The decision holding the first policy still has it, whole.
        assert!(tag(&held).contains("first") && !tag(&held).contains("second"));
        assert!(Arc::ptr_eq(&held, &old));
        assert!(tag(&slot.current()).contains("second"));
        assert_eq!(slot.generation(), 1);
        let seen = slot.decide(|p, g| (tag(p), g));
        assert!(seen.0.contains("second") && seen.1 == 1);
    }

    #[test]
    fn concurrent_swaps_and_decisions_agree_on_generations() {
        let slot = Arc::new(PolicySlot::new(tagged("even")));
        let swapper = {
            let slot = slot.clone();
            std::thread::spawn(move || {
                for i in 0..500u64 {
                    slot.swap(tagged(if i.is_multiple_of(2) { "odd" } else { "even" }));
                }
            })
        };
        for _ in 0..2000 {
            slot.decide(|p, g| {
                let want = if g.is_multiple_of(2) { "even" } else { "odd" };
                assert!(tag(p).contains(want), "generation {g}: {}", tag(p));
            });
        }
        swapper.join().expect("swapper");
        assert_eq!(slot.generation(), 500);
    }
}
