"""`export`: turns a `Policy` subclass into the `Heuristic` and `CostModel`
classes componentize-py wants.

componentize-py implements each interface the `policy` world exports with
a class of the app module named after it: `Heuristic` and `CostModel`. Their
methods take the WIT records and report a WIT `result` error by raising
`componentize_py_types.Err(<policy-error case>)`. The classes made here
check the inputs, run a fresh policy object, check the shape of its answer,
and turn every exception into a `policy-error`, so a Python bug is a
refusal the host reports with its message, never a trap.
"""

from collections.abc import Callable
from typing import TypeVar

from componentize_py_types import Err
from wit_world import exports as _exports
from wit_world.imports import types as _types

from .errors import InvalidInput, PolicyError, Unsupported
from .model import Instance, check_context, check_plan
from .policy import Policy

T = TypeVar("T")


def export(policy_class: "type[Policy]") -> "tuple[type, type]":
    """The `Heuristic` and `CostModel` classes that run `policy_class`.

    Use it once, at the top level of the app module::

        Heuristic, CostModel = export(MyPolicy)
    """
    if not (isinstance(policy_class, type) and issubclass(policy_class, Policy)):
        raise TypeError(f"export takes a subclass of edgehost_policy.Policy, not {policy_class!r}")

    class Heuristic(_exports.Heuristic):
        """The `heuristic` interface, served by `policy_class`."""

        def score(self, instance: _types.Instance) -> "list[float]":
            def run() -> "list[float]":
                n_agents, n_servers = len(instance.agents), len(instance.servers)
                if n_agents * n_servers > policy_class.max_pairs:
                    raise Unsupported(
                        f"{n_agents} agents x {n_servers} servers is more than this "
                        f"policy scores within the host's deadline (max_pairs = {policy_class.max_pairs})"
                    )
                return _floats(policy_class().score(_instance(instance, policy_class)), "score")

            return _answer("score", run)

    class CostModel(_exports.CostModel):
        """The `cost-model` interface, served by `policy_class`."""

        def objectives(self, instance: _types.Instance, plans: "list[list[int]]") -> "list[float]":
            def run() -> "list[float]":
                checked = _instance(instance, policy_class)
                for plan in plans:
                    check_plan(checked, plan)
                return _floats(policy_class().objectives(checked, plans), "objectives")

            return _answer("objectives", run)

        def plan_cost(self, instance: _types.Instance, plan: "list[int]") -> _types.PlanReport:
            def run() -> _types.PlanReport:
                checked = _instance(instance, policy_class)
                report = policy_class().plan_cost(checked, check_plan(checked, plan))
                if not isinstance(report, _types.PlanReport):
                    raise TypeError(f"plan_cost must return a PlanReport, not {type(report).__name__}")
                return report

            return _answer("plan_cost", run)

        def migration_fitness(
            self,
            instance: _types.Instance,
            before: "list[int]",
            context: _types.MigrationContext,
            after: "list[list[int]]",
        ) -> "list[float]":
            def run() -> "list[float]":
                checked = _instance(instance, policy_class)
                check_plan(checked, before)
                for plan in after:
                    check_plan(checked, plan)
                check_context(checked, context)
                gains = policy_class().migration_fitness(checked, before, context, after)
                return _floats(gains, "migration_fitness")

            return _answer("migration_fitness", run)

    Heuristic.__qualname__ = f"Heuristic[{policy_class.__name__}]"
    CostModel.__qualname__ = f"CostModel[{policy_class.__name__}]"
    return Heuristic, CostModel


def _instance(instance: _types.Instance, policy_class: "type[Policy]") -> Instance:
    """The checked instance, unless its topology alone is more than the
    policy can check in time: checking it walks every pair of servers."""
    n_servers = len(instance.servers)
    if n_servers * n_servers > policy_class.max_pairs:
        raise Unsupported(
            f"a topology of {n_servers} servers is more than this policy checks within the "
            f"host's deadline (max_pairs = {policy_class.max_pairs})"
        )
    return Instance(instance)


def _answer(method: str, run: Callable[[], T]) -> T:
    """Runs one export; every exception becomes a WIT `policy-error`."""
    try:
        return run()
    except InvalidInput as e:
        raise Err(_types.PolicyError_InvalidInput(e.message)) from None
    except PolicyError as e:
        raise Err(_types.PolicyError_Unsupported(e.message)) from None
    except BaseException as e:  # noqa: BLE001 - a trap would say nothing of the cause
        raise Err(_types.PolicyError_Unsupported(f"{method} raised {type(e).__name__}: {e}")) from None


def _floats(values: object, method: str) -> "list[float]":
    """`values` as a list of floats (ints are accepted); the host checks
    that they are finite and, where it must be, not negative."""
    try:
        out = [float(v) for v in values]  # type: ignore[union-attr]
    except TypeError:
        raise TypeError(f"{method} must return a list of numbers, not {type(values).__name__}") from None
    return out


__all__ = ["export"]
