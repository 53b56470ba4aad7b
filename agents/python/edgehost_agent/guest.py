"""`export`: turns an `Agent` subclass into the `Guest` class componentize-py wants.

componentize-py implements the world's `guest` interface with a class named
`Guest` found in the app module; its methods take and return the WIT types
(`wit_world.imports.types`) and report a WIT `result` error by raising
`componentize_py_types.Err(<agent-error case>)`. The class made here keeps the
one live agent, converts between the WIT types and plain Python values, and
turns every exception into an `agent-error`, so a Python bug is an error the
host reports, never a trap.
"""

import traceback
from collections.abc import Callable
from typing import TypeVar

from componentize_py_types import Err
from wit_world import exports as _exports
from wit_world.imports import types as _types

from .agent import Agent, Config
from .errors import AgentError, HostError, InvalidInput, InvalidState, Unavailable
from .host import log

T = TypeVar("T")

_U32_MAX = 2**32 - 1

#: Why an import inside `handle` fails: componentize-py keeps only the modules
#: imported while it built the component, and the host grants no files.
_IMPORT_HINT = "import every module at the top of app.py: modules cannot be loaded at run time"


def export(agent_class: type[Agent]) -> type:
    """The `Guest` class that runs `agent_class` in this component.

    Use it once, at the top level of the app module::

        Guest = export(MyAgent)

    The descriptor is taken from `agent_class.describe()` right here, which
    componentize-py runs while building the component: a bad descriptor
    fails the build, not the agent.
    """
    descriptor = _checked_descriptor(agent_class)
    live: list[Agent] = []  # empty until `init` succeeds

    def the_agent() -> Agent:
        if not live:
            raise InvalidInput("the agent was called before init")
        return live[0]

    def start(config: list[tuple[str, str]]) -> None:
        agent = agent_class(Config(config))
        live[:] = [agent]

    class Guest(_exports.Guest):
        """The `guest` interface of the `agent` world, served by one live agent."""

        def describe(self) -> _types.Descriptor:
            return descriptor

        def init(self, config: list[tuple[str, str]]) -> None:
            _answer("init", lambda: start(config))

        def handle(self, request: _types.Request) -> bytes:
            return _answer(
                "handle",
                lambda: _response(the_agent().handle(request.body, request.caller)),
            )

        def export_state(self) -> bytes:
            return _answer("export-state", lambda: _blob(the_agent().export_state()))

        def import_state(self, state: bytes) -> None:
            _answer("import-state", lambda: the_agent().import_state(state))

    Guest.__qualname__ = f"Guest[{agent_class.__name__}]"
    return Guest


def _answer(export_name: str, run: Callable[[], T]) -> T:
    """Runs one export; every exception becomes a WIT `agent-error`."""
    try:
        return run()
    except AgentError as e:
        raise Err(_wit_error(e)) from None
    except HostError as e:
        raise Err(_types.AgentError_Unavailable(str(e))) from None
    except BaseException as e:  # noqa: BLE001 - a trap would lose the instance
        _log_traceback(export_name)
        message = f"{type(e).__name__}: {e}"
        if isinstance(e, ImportError):
            message += f" ({_IMPORT_HINT})"
        raise Err(_types.AgentError_Internal(message)) from None


def _wit_error(e: AgentError) -> _types.AgentError:
    message = getattr(e, "message", None)
    if not isinstance(message, str):
        message = str(e)
    if isinstance(e, InvalidInput):
        return _types.AgentError_InvalidInput(message)
    if isinstance(e, InvalidState):
        return _types.AgentError_InvalidState(message)
    if isinstance(e, Unavailable):
        return _types.AgentError_Unavailable(message)
    return _types.AgentError_Internal(message)


def _log_traceback(export_name: str) -> None:
    """Sends the traceback of the exception being handled to the host's log.

    At debug level (`EDGEHOST_LOG=debug`): the error result already carries
    the exception's type and message.
    """
    try:
        log("debug", f"{export_name} raised:\n{traceback.format_exc()}")
    except BaseException:  # noqa: BLE001 - logging must never turn an error into a trap
        pass


def _response(value: object) -> bytes:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"handle must return bytes or str, not {type(value).__name__}")


def _blob(value: object) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"export_state must return bytes, not {type(value).__name__}")


def _checked_descriptor(agent_class: type[Agent]) -> _types.Descriptor:
    """`agent_class.describe()`, checked so that a mistake fails the build clearly."""
    d = agent_class.describe()
    where = f"{agent_class.__name__}.describe()"
    if not isinstance(d, _types.Descriptor):
        raise TypeError(f"{where} must return a Descriptor, not {type(d).__name__}")
    if not isinstance(d.kind, str) or not d.kind:
        raise ValueError(f"{where}: kind must be a non-empty string (set the class attribute `kind`)")
    if not isinstance(d.version, str):
        raise TypeError(f"{where}: version must be a string, not {type(d.version).__name__}")
    for field in ("memory_mib", "cpu_millicores", "storage_mib", "bandwidth_mbps"):
        value = getattr(d.demand, field, None)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _U32_MAX:
            raise ValueError(f"{where}: {field} must be an integer from 0 to {_U32_MAX}, not {value!r}")
    if d.demand.memory_mib == 0:
        raise ValueError(f"{where}: memory_mib must be at least 1 (the host caps memory at it)")
    if not isinstance(d.dependencies, list) or not all(isinstance(n, str) for n in d.dependencies):
        raise TypeError(f"{where}: dependencies must be a list of agent names (strings)")
    return d
