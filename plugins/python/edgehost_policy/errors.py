"""The two ways a policy refuses a call.

Raise one of them from any method of a `Policy`; the kit turns it into the
matching WIT `policy-error`, and the host uses its built-in policy for that
one decision and reports the message. Any other exception is a bug in the
policy: the kit reports it the same way, as `unsupported`, with the
exception's type and message, so the host's log says what went wrong.
"""


class PolicyError(Exception):
    """Base of the refusals a policy gives instead of an answer."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Unsupported(PolicyError):
    """An instance this policy does not handle (too large, an architecture it
    has no data for); the message says why."""


class InvalidInput(PolicyError):
    """Inputs that are inconsistent (an index out of range, a matrix of the
    wrong size, a negative size); the message says which. The kit checks
    every instance, plan and context before a policy sees them."""
