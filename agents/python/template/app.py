"""A minimal edgehost agent: counts the requests it has answered.

Copy this directory, rename the class and `kind`, and change `handle`. Build
it with `python3 build.py DIR -o agent.wasm` (see docs/agents-python.md) and try it with
`edgehost run agent.wasm --input hello`.

Requests are text; the agent answers `#N: TEXT`, where N counts the requests
it has answered, across migrations too. `reset` sets the count back to zero.
Configuration: `greeting=TEXT` is put in front of every answer.
"""

from edgehost_agent import Agent, InvalidInput, InvalidState, as_text, export


class Counter(Agent):
    # What the agent declares to the host. Change `kind` to your agent's name.
    kind = "counter"
    version = "0.1.0"
    # A hard cap on linear memory, in MiB. CPython starts at 12.3 MiB; add
    # about 4 x the size of your largest state. Growing past it stops the agent.
    memory_mib = 32
    cpu_millicores = 100
    # Names of agents this one calls with `edgehost_agent.call`.
    dependencies = ()

    def __init__(self, config):
        super().__init__(config)
        # Settings come from `--config K=V` or the deployment.
        self.greeting = config.get("greeting", "")
        # Everything the agent must remember goes in `self.state` (JSON
        # values only): it is what moves when the agent migrates.
        self.state = {"count": 0}

    def handle(self, body, caller):
        text = as_text(body).strip()
        if not text:
            # Refuse requests you do not accept with InvalidInput.
            raise InvalidInput("empty request")
        if text == "reset":
            self.state["count"] = 0
            return "reset"
        self.state["count"] += 1
        return f"{self.greeting}#{self.state['count']}: {text}"

    # Optional: check the shape of an imported state and raise InvalidState
    # to refuse it. Without it, any JSON value is accepted.
    def check_state(self, state):
        if not isinstance(state, dict) or not isinstance(state.get("count"), int):
            raise InvalidState('expected {"count": <integer>}')
        return state


# componentize-py looks for a class named `Guest` in this module.
Guest = export(Counter)
