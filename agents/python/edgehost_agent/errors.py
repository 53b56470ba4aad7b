"""The errors an agent raises, and the errors the host's services raise.

An agent refuses or fails a call by raising one of the `AgentError`
subclasses; the kit turns it into the matching WIT `agent-error` variant.
Any other exception that escapes the agent becomes `internal` with the
exception's type and message, so a bug is reported, never a crash.

The host's services (`complete`, `call`) raise a `HostError` subclass when
the host cannot serve them. Left uncaught in the agent, it becomes
`unavailable`: the agent depends on something the host cannot give now.
"""


class AgentError(Exception):
    """Base of the answers an agent chooses to give instead of a response."""

    #: The WIT `agent-error` case this class stands for.
    variant = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(AgentError):
    """The request or configuration is not acceptable; retrying will not help."""

    variant = "invalid-input"


class InvalidState(AgentError):
    """A state blob cannot be read; the agent's current state is unchanged."""

    variant = "invalid-state"


class Unavailable(AgentError):
    """Something the agent depends on is unavailable now; a retry may work."""

    variant = "unavailable"


class Internal(AgentError):
    """Any other failure inside the agent."""

    variant = "internal"


class HostError(Exception):
    """Base of the reasons the host could not serve `complete` or `call`.

    `str(error)` starts with the case's name, e.g. `NoLlmConfigured` or
    `CallFailed: timed out after 30 s`.
    """

    #: The WIT `host-error` case this class stands for.
    variant = "failed"

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        name = type(self).__name__
        return f"{name}: {self.message}" if self.message else name


class NoLlmConfigured(HostError):
    """The host has no LLM endpoint configured."""

    variant = "no-llm-configured"


class UnknownAgent(HostError):
    """The agent called is not a declared dependency, or no host runs it."""

    variant = "unknown-agent"


class CallFailed(HostError):
    """The call went out but failed or timed out."""

    variant = "failed"


class LimitExceeded(HostError):
    """The call was refused: it would exceed a limit (size, depth, rate)."""

    variant = "limit"
