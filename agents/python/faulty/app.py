"""A Python agent that misbehaves on request, used only by tests.

It shows that whatever Python does wrong comes back to the host as an
`agent-error` with the Python message, or is stopped by the host's limits,
and never takes the host down:

- `keyerror` - an uncaught `KeyError`.
- `divide` - an uncaught `ZeroDivisionError`.
- `recurse` - unbounded recursion (`RecursionError`).
- `late-import` - imports a module that was not bundled at build time.
- `exit` - `raise SystemExit(3)`.
- `bomb` - allocates until the host's memory cap stops it.
- `loop` - spins until the host's deadline stops it.
- `echo TEXT` - answers TEXT (the agent still works after the errors above).
"""

from edgehost_agent import Agent, as_text, export


class Faulty(Agent):
    kind = "faulty"
    version = "0.1.0"
    memory_mib = 48

    def handle(self, body, caller):
        command, _, rest = as_text(body).strip().partition(" ")
        if command == "keyerror":
            return {}["missing"]
        if command == "divide":
            return str(1 / len(rest))
        if command == "recurse":
            return recurse(0)
        if command == "late-import":
            import decimal  # noqa: F401 - not bundled: fails at run time

            return "imported"
        if command == "exit":
            raise SystemExit(3)
        if command == "bomb":
            hoard = []
            while True:
                hoard.append(bytearray(1 << 20))
        if command == "loop":
            while True:
                pass
        return rest


def recurse(depth):
    return recurse(depth + 1) + 1


Guest = export(Faulty)
