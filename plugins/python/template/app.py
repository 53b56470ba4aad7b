"""A policy plugin to copy: the reference policy, leaning away from busy
servers and paying for crowding.

- The heuristic is the reference score times one plus the server's free
  share of compute, so idle servers look up to twice as attractive.
- The objective is the reference objective plus `CROWDING_S` seconds per
  agent on the fullest server the plan leaves, so plans that pile agents on
  one box lose when the rest is close.

To make your own: copy this directory, change the methods of `Policy` you
want to change and delete the rest (each one you leave out is the reference
implementation). Build it with `python3 build.py DIR -o policy.wasm` and
check it with `edgehost policy check policy.wasm` (docs/plugins.md).
"""

from edgehost_policy import Policy, export, reference

#: What each agent on the most crowded server costs in the objective, seconds.
CROWDING_S = 0.5


def most_agents_on_a_server(instance, plan):
    """Agents on the fullest server once `plan` is applied (hosted ones too)."""
    return max(reference.agents_per_server(instance, plan))


class LeastLoaded(Policy):
    # Policies are pure: the same inputs must give the same answers, and
    # the plugin has no clock, randomness, files or network to do otherwise.

    def score(self, instance):
        # One score per (agent, server), row-major: every server of agent 0,
        # then every server of agent 1, and so on. Finite, not negative.
        scores = reference.score(instance)
        free = [1.0 - server.cpu_busy for server in instance.servers]
        n = len(free)
        return [value * (1.0 + free[i % n]) for i, value in enumerate(scores)]

    def objectives(self, instance, plans):
        # One value per plan, lower is better. A plan is a list with the
        # server index of each agent.
        values = reference.objectives(instance, plans)
        return [v + CROWDING_S * most_agents_on_a_server(instance, plan) for v, plan in zip(values, plans)]

    def plan_cost(self, instance, plan):
        # The reference breakdown, with the crowding price counted as
        # compute load so that the terms still add up to the objective.
        report = reference.plan_cost(instance, plan)
        extra = CROWDING_S * most_agents_on_a_server(instance, plan)
        report.objective.compute_s += extra
        report.objective.total += extra
        return report

    # migration_fitness is left out: the reference one is used.


Heuristic, CostModel = export(LeastLoaded)
