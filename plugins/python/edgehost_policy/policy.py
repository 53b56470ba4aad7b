"""`Policy`: what a Python policy plugin implements."""

from . import reference
from .model import Instance


class Policy:
    """A placement policy: a heuristic and a cost model.

    Override the methods you change; each one you leave out is the engine's
    reference implementation (`edgehost_policy.reference`). The kit makes a
    fresh object for every call, so keep nothing on `self` between calls:
    the host expects the same answers to the same inputs, however often and
    from however many instances it asks.
    """

    #: The most (agent, server) pairs `score` is asked to score, and the
    #: most (server, server) pairs of a topology any method is asked to
    #: check; a larger instance is refused as `Unsupported`, and the host
    #: uses its built-in policy for that decision. CPython in the sandbox scores the
    #: reference heuristic at about 3 microseconds a pair, and a call has
    #: one second (the host's default deadline): raise it only for a
    #: faster `score`.
    max_pairs = 250_000

    def score(self, instance: Instance) -> "list[float]":
        """One score per (agent, server), row-major: every server of agent
        0, then every server of agent 1, and so on. Finite, not negative;
        larger is more attractive, 0 means "never by preference"."""
        return reference.score(instance)

    def objectives(self, instance: Instance, plans: "list[list[int]]") -> "list[float]":
        """The objective of each plan (lower is better): one finite,
        non-negative value per plan, in order."""
        return reference.objectives(instance, plans)

    def plan_cost(self, instance: Instance, plan: "list[int]"):
        """The latency and cost breakdown of one plan: a `PlanReport`."""
        return reference.plan_cost(instance, plan)

    def migration_fitness(self, instance: Instance, before: "list[int]", context, after: "list[list[int]]") -> "list[float]":
        """The net gain, seconds, of moving from `before` to each candidate
        in `after` (higher is better; negative means it does not pay)."""
        return reference.migration_fitness(instance, before, context, after)
