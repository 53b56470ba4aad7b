"""Write edgehost policy plugins in Python.

A policy is the heuristic and the cost model the placement engine uses to
decide where agents run and when they move. A plugin is a subclass of
`Policy`; `export` turns it into the `Heuristic` and `CostModel` classes that
componentize-py builds into a WebAssembly component of the
`edgehost:policy/policy@0.1.0` world::

    from edgehost_policy import Policy, export, reference

    class MostMemory(Policy):
        # Prefer the server with the most free memory; keep the reference
        # cost model (the other three methods default to it).
        def score(self, instance):
            return [
                max(server.remaining().memory_gb, 0.0)
                for _agent in instance.agents
                for server in instance.servers
            ]

    Heuristic, CostModel = export(MostMemory)

The kit checks every instance, plan and context by the engine's rules
before a policy sees them (`edgehost_policy.model` says what a policy may
rely on). Every method has a default body, the engine's reference
implementation (`edgehost_policy.reference`), so a plugin overrides only
what it changes. Raise `Unsupported` or `InvalidInput` to refuse a call;
any other exception is reported to the host as `unsupported`, with its type
and message. The host checks every answer: its length, that every number is
finite, and that scores, objectives and plan costs are not negative.

Build with `build.py APP_DIR -o policy.wasm` (see docs/plugins.md).
"""

from wit_world.imports.types import Latency, ObjectiveTerms, PlanReport, ResourceCost, TaskCost

from . import reference
from .errors import InvalidInput, PolicyError, Unsupported
from .guest import export
from .model import Instance, Resources, Server, Topology
from .policy import Policy

__all__ = [
    "Instance",
    "InvalidInput",
    "Latency",
    "ObjectiveTerms",
    "PlanReport",
    "Policy",
    "PolicyError",
    "ResourceCost",
    "Resources",
    "Server",
    "TaskCost",
    "Topology",
    "export",
    "reference",
]
