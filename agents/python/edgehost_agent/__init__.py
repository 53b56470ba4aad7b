"""Write edgehost agents in Python.

An agent is a subclass of `Agent`; `export` turns it into the `Guest` class
that componentize-py builds into a WebAssembly component of the
`edgehost:agent/agent@0.1.0` world::

    from edgehost_agent import Agent, as_text, export

    class Counter(Agent):
        kind = "counter"

        def __init__(self, config):
            super().__init__(config)
            self.state = {"count": 0}

        def handle(self, body, caller):
            self.state["count"] += 1
            return str(self.state["count"])

    Guest = export(Counter)

The agent's memory is `self.state` (any JSON-serialisable value); the
default `export_state` and `import_state` carry it to a fresh instance on
any host. Raise `InvalidInput`, `InvalidState`, `Unavailable` or `Internal`
to answer with that `agent-error`; any other exception becomes `internal`
with its type and message. `log`, `complete`, `call` and `now_ns` are the
host's services.

Build with `build.py APP_DIR -o agent.wasm` (see docs/agents-python.md).
"""

from wit_world.imports.types import Descriptor, ResourceDemand

from .agent import STATE_FORMAT_KEY, STATE_FORMAT_VERSION, Agent, Config, as_text
from .errors import (
    AgentError,
    CallFailed,
    HostError,
    Internal,
    InvalidInput,
    InvalidState,
    LimitExceeded,
    NoLlmConfigured,
    Unavailable,
    UnknownAgent,
)
from .guest import export
from .host import call, complete, log, now_ns

__all__ = [
    "STATE_FORMAT_KEY",
    "STATE_FORMAT_VERSION",
    "Agent",
    "AgentError",
    "CallFailed",
    "Config",
    "Descriptor",
    "HostError",
    "Internal",
    "InvalidInput",
    "InvalidState",
    "LimitExceeded",
    "NoLlmConfigured",
    "ResourceDemand",
    "Unavailable",
    "UnknownAgent",
    "as_text",
    "call",
    "complete",
    "export",
    "log",
    "now_ns",
]
