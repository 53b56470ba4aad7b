"""The reference policy, unchanged: every method is the kit's default.

It gives the engine's own numbers, which edgehost's tests check on many
seeded instances; it is also the baseline of the Python rows of the policy
benchmark.
"""

from edgehost_policy import Policy, export


class Reference(Policy):
    pass


Heuristic, CostModel = export(Reference)
