//! LLM post-optimisation: a [`Refiner`] proposes a better plan than the
//! colony's, and this module decides whether to believe it.
//!
//! A proposal replaces the colony's plan only if it has the right shape,
//! satisfies eq. 11 and the agent limit, and is not worse under the cost
//! model (for migration: every move pays for itself and the total gain is
//! not lower). Anything else — the refiner failing, timing out, answering
//! nonsense — keeps the colony's plan and says why. Refinement can never
//! fail a decision.

use serde::{Deserialize, Serialize};

use crate::constraint;
use crate::gain::MigrationContext;
use crate::migration::{MigrationPlan, Move};
use crate::model::{Instance, Plan};
use crate::policy::Policy;
use crate::{Error, Result};

/// What the plan being refined is for.
#[derive(Clone, Copy, Debug)]
pub enum Purpose<'a> {
    /// An initial placement (problem EAD): lower objective is better.
    Placement,
    /// A migration (problem EAM) away from `before`: higher net gain is better.
    Migration {
        /// The deployment the agents run in now.
        before: &'a Plan,
        /// Where the users are and how moves are priced.
        context: &'a MigrationContext,
    },
}

/// Everything a refiner is shown.
#[derive(Clone, Copy, Debug)]
pub struct RefineRequest<'a> {
    /// The instance.
    pub instance: &'a Instance,
    /// The colony's plan (for migration: the deployment after its moves).
    pub plan: &'a Plan,
    /// Its score: the EAD objective, or the EAM net gain in seconds.
    pub score: f64,
    /// What the plan is for.
    pub purpose: Purpose<'a>,
}

/// Proposes a plan, possibly better than the one in the request.
///
/// Implementations may fail in any way ([`Error::RefinerUnavailable`] for
/// timeouts and unreachable services, [`Error::RefinerAnswer`] for answers
/// that cannot be read); callers keep the colony's plan when they do.
pub trait Refiner {
    /// A short name for reports.
    fn name(&self) -> &str;

    /// A proposed plan for the same instance.
    fn refine(&self, request: &RefineRequest<'_>) -> Result<Plan>;
}

/// Why the colony's plan was kept.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum KeptReason {
    /// The refiner could not be reached or timed out.
    Unavailable(String),
    /// Its answer could not be read as a plan.
    Malformed(String),
    /// The proposed plan breaks a limit.
    Infeasible(String),
    /// The proposed plan scores worse.
    Worse {
        /// The colony's score.
        colony: f64,
        /// The proposal's score.
        proposed: f64,
    },
    /// A proposed migration includes a move that does not pay for itself.
    Unprofitable(String),
}

impl std::fmt::Display for KeptReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unavailable(m) => write!(f, "refiner unavailable: {m}"),
            Self::Malformed(m) => write!(f, "refiner answer malformed: {m}"),
            Self::Infeasible(m) => write!(f, "proposed plan infeasible: {m}"),
            Self::Worse { colony, proposed } => {
                write!(f, "proposed plan worse: {proposed:.4} against {colony:.4}")
            }
            Self::Unprofitable(m) => write!(f, "proposed migration does not pay: {m}"),
        }
    }
}

/// The outcome of a refinement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Verdict {
    /// The proposal replaced the colony's plan.
    Accepted {
        /// The colony's score.
        colony: f64,
        /// The accepted score.
        refined: f64,
    },
    /// The colony's plan stands.
    Kept(KeptReason),
}

/// A placement after refinement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RefinedPlacement {
    /// The plan that stands.
    pub plan: Plan,
    /// Its objective.
    pub objective: f64,
    /// What happened.
    pub verdict: Verdict,
}

fn failure(e: Error) -> KeptReason {
    match e {
        Error::RefinerAnswer(m) | Error::InvalidPlan(m) => KeptReason::Malformed(m),
        Error::RefinerUnavailable(m) => KeptReason::Unavailable(m),
        other => KeptReason::Unavailable(other.to_string()),
    }
}

/// Asks `refiner` to improve a placement and keeps whichever plan is better
/// (the colony's on any doubt). `objective` is the colony plan's objective.
pub fn refine_placement(
    instance: &Instance,
    plan: &Plan,
    objective: f64,
    refiner: &dyn Refiner,
    policy: &Policy,
) -> RefinedPlacement {
    let keep = |reason| RefinedPlacement {
        plan: plan.clone(),
        objective,
        verdict: Verdict::Kept(reason),
    };
    let request = RefineRequest {
        instance,
        plan,
        score: objective,
        purpose: Purpose::Placement,
    };
    let proposal = match refiner.refine(&request) {
        Ok(p) => p,
        Err(e) => return keep(failure(e)),
    };
    match constraint::check(instance, &proposal) {
        Ok(()) => {}
        Err(Error::InvalidPlan(m)) => return keep(KeptReason::Malformed(m)),
        Err(e) => return keep(KeptReason::Infeasible(e.to_string())),
    }
    let mut notes = Vec::new();
    let proposed = match policy.objective(instance, &proposal, &mut notes) {
        Ok(v) => v,
        Err(e) => return keep(KeptReason::Malformed(e.to_string())),
    };
    if proposed > objective {
        return keep(KeptReason::Worse {
            colony: objective,
            proposed,
        });
    }
    RefinedPlacement {
        plan: proposal,
        objective: proposed,
        verdict: Verdict::Accepted {
            colony: objective,
            refined: proposed,
        },
    }
}

/// Asks `refiner` to improve a migration decision. The proposal (a whole
/// deployment) is accepted only if it is feasible, every agent it moves has
/// a positive marginal net gain, and its total gain is not lower than the
/// colony's. Returns the decision that stands and the verdict.
pub fn refine_migration(
    instance: &Instance,
    before: &Plan,
    context: &MigrationContext,
    colony: &MigrationPlan,
    refiner: &dyn Refiner,
    policy: &Policy,
) -> (MigrationPlan, Verdict) {
    let keep = |reason| (colony.clone(), Verdict::Kept(reason));
    let request = RefineRequest {
        instance,
        plan: &colony.deployment,
        score: colony.net_gain_s,
        purpose: Purpose::Migration { before, context },
    };
    let proposal = match refiner.refine(&request) {
        Ok(p) => p,
        Err(e) => return keep(failure(e)),
    };
    match constraint::check(instance, &proposal) {
        Ok(()) => {}
        Err(Error::InvalidPlan(m)) => return keep(KeptReason::Malformed(m)),
        Err(e) => return keep(KeptReason::Infeasible(e.to_string())),
    }
    let moved: Vec<usize> = (0..proposal.assignment.len())
        .filter(|&a| proposal.assignment[a] != before.assignment[a])
        .collect();
    let mut batch = vec![proposal.clone()];
    for &a in &moved {
        let mut without = proposal.clone();
        without.assignment[a] = before.assignment[a];
        batch.push(without);
    }
    let mut notes = Vec::new();
    let gains = match policy.migration_gains(instance, before, context, &batch, &mut notes) {
        Ok(g) => g,
        Err(e) => return keep(KeptReason::Malformed(e.to_string())),
    };
    let total = gains[0];
    let mut moves = Vec::with_capacity(moved.len());
    for (i, &a) in moved.iter().enumerate() {
        let marginal = total - gains[i + 1];
        if marginal <= 0.0 {
            return keep(KeptReason::Unprofitable(format!(
                "moving {} gains {marginal:.3} s",
                instance.agents[a].name
            )));
        }
        moves.push(Move {
            agent: a,
            from: before.assignment[a],
            to: proposal.assignment[a],
            net_gain_s: marginal,
        });
    }
    if total < colony.net_gain_s {
        return keep(KeptReason::Worse {
            colony: colony.net_gain_s,
            proposed: total,
        });
    }
    let verdict = Verdict::Accepted {
        colony: colony.net_gain_s,
        refined: total,
    };
    let mut decision = colony.clone();
    decision.deployment = proposal;
    decision.net_gain_s = if moves.is_empty() { 0.0 } else { total };
    decision.moves = moves;
    (decision, verdict)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::tiny_instance;

    struct Fixed(Result<Plan>);

    impl Refiner for Fixed {
        fn name(&self) -> &str {
            "fixed"
        }
        fn refine(&self, _: &RefineRequest<'_>) -> Result<Plan> {
            match &self.0 {
                Ok(p) => Ok(p.clone()),
                Err(e) => Err(Error::RefinerUnavailable(e.to_string())),
            }
        }
    }

    fn objective(inst: &Instance, plan: &Plan) -> f64 {
        crate::cost::ead_objective(inst, plan).total
    }

    #[test]
    fn migration_proposals_must_pay_move_by_move() {
        use crate::migration::Alm;
        let mut inst = tiny_instance();
        // Server 1 computes twice as fast as server 0 and has room for one
        // of the two agents.
        inst.servers[1].compute_gcps = 8.0;
        inst.servers[1].cpu_busy = 0.0;
        inst.servers[1].cores = 2;
        let policy = Policy::native();
        let before = Plan::new(vec![0, 0]);
        // The user is on server 1, far from both agents.
        let context = MigrationContext {
            hop_threshold: 0,
            horizon_requests: 1000.0,
            ..MigrationContext::new(vec![1])
        };
        let colony = Alm::default()
            .plan(&inst, &before, &context, &policy, 1)
            .expect("alm");
        let gain = |p: &Plan| crate::gain::total_net_gain_s(&inst, &before, &context, p);
        // Moving the planner (the entry agent: the 50 MB file reaches it
        // over its server's bandwidth) to the user's faster server pays;
        // moving the worker alone saves less compute than it loses in
        // hand-offs to the planner.
        let planner_only = Plan::new(vec![1, 0]);
        let worker_only = Plan::new(vec![0, 1]);
        assert!(gain(&planner_only) > 0.0);
        assert!(gain(&worker_only) < 0.0);
        // The colony found the planner's move; proposing it again is not
        // worse, so it is accepted.
        assert_eq!(colony.deployment, planner_only);
        let (decided, verdict) = refine_migration(
            &inst,
            &before,
            &context,
            &colony,
            &Fixed(Ok(planner_only.clone())),
            &policy,
        );
        assert!(matches!(verdict, Verdict::Accepted { .. }), "{verdict:?}");
        assert_eq!(decided.deployment, planner_only);
        assert_eq!(decided.moves.len(), 1);
        // Moving the worker alone loses time.
        let (decided, verdict) = refine_migration(
            &inst,
            &before,
            &context,
            &colony,
            &Fixed(Ok(worker_only)),
            &policy,
        );
        assert!(
            matches!(verdict, Verdict::Kept(KeptReason::Unprofitable(_))),
            "{verdict:?}"
        );
        assert_eq!(decided, colony);
        // Staying put gains nothing: worse than the colony's move.
        let (decided, verdict) = refine_migration(
            &inst,
            &before,
            &context,
            &colony,
            &Fixed(Ok(before.clone())),
            &policy,
        );
        assert!(matches!(verdict, Verdict::Kept(KeptReason::Worse { .. })));
        assert_eq!(decided, colony);
    }

    #[test]
    fn placement_proposals_are_validated() {
        let inst = tiny_instance();
        let policy = Policy::native();
        let good = Plan::new(vec![0, 0]);
        let worse = Plan::new(vec![1, 0]);
        assert!(objective(&inst, &good) < objective(&inst, &worse));
        let base = objective(&inst, &worse);

        let r = refine_placement(&inst, &worse, base, &Fixed(Ok(good.clone())), &policy);
        assert_eq!(r.plan, good);
        assert!(matches!(r.verdict, Verdict::Accepted { .. }));

        let r = refine_placement(
            &inst,
            &good,
            objective(&inst, &good),
            &Fixed(Ok(worse.clone())),
            &policy,
        );
        assert_eq!(r.plan, good);
        assert!(matches!(r.verdict, Verdict::Kept(KeptReason::Worse { .. })));

        let r = refine_placement(
            &inst,
            &good,
            1.0,
            &Fixed(Ok(Plan::new(vec![1, 1]))),
            &policy,
        );
        assert!(matches!(
            r.verdict,
            Verdict::Kept(KeptReason::Infeasible(_))
        ));

        let r = refine_placement(
            &inst,
            &good,
            1.0,
            &Fixed(Ok(Plan::new(vec![0, 7]))),
            &policy,
        );
        assert!(matches!(r.verdict, Verdict::Kept(KeptReason::Malformed(_))));

        let down = Fixed(Err(Error::RefinerUnavailable("connection refused".into())));
        let r = refine_placement(&inst, &good, 1.0, &down, &policy);
        assert_eq!(r.plan, good);
        assert!(matches!(
            r.verdict,
            Verdict::Kept(KeptReason::Unavailable(_))
        ));
    }
}
