"""What the host offers an agent: a log, an LLM, other agents and a clock.

These wrap the `host` interface of the `agent` world in plain functions. They
work only inside a running agent (from `__init__`, `handle` and the state
methods), not while the component is being built, so do not call them at
module level or from `describe`.
"""

from collections.abc import Iterable, Mapping
from typing import Optional, Union

from componentize_py_types import Err
from wit_world.imports import host as _host
from wit_world.imports import types as _types

from .errors import CallFailed, HostError, LimitExceeded, NoLlmConfigured, UnknownAgent

_LEVELS = {
    "trace": _types.Level.TRACE,
    "debug": _types.Level.DEBUG,
    "info": _types.Level.INFO,
    "warn": _types.Level.WARN,
    "error": _types.Level.ERROR,
}

#: A chat message: a `(role, content)` pair or a `{"role": ..., "content": ...}` dict.
MessageLike = Union[tuple[str, str], Mapping[str, str]]


def log(level: str, message: str) -> None:
    """Writes `message` to the host's log, tagged with the agent's name.

    `level` is one of `trace`, `debug`, `info`, `warn`, `error`. The host cuts
    long messages.
    """
    try:
        wit_level = _LEVELS[level]
    except KeyError:
        raise ValueError(f"log level {level!r} is not one of {', '.join(_LEVELS)}") from None
    _host.log(wit_level, str(message))


def complete(
    messages: Iterable[MessageLike],
    max_tokens: Optional[int] = None,
    temperature: Optional[float] = None,
) -> str:
    """Asks the host's LLM to continue `messages` (oldest first); returns its text.

    Roles are `system`, `user` and `assistant`. `None` for `max_tokens` or
    `temperature` lets the host choose. Raises `NoLlmConfigured` when the host
    has no LLM, or another `HostError` when the call fails.
    """
    request = _types.CompletionRequest(
        messages=[_message(m) for m in messages],
        max_tokens=max_tokens,
        temperature=temperature,
    )
    try:
        return _host.complete(request)
    except Err as e:
        raise _host_error(e.value) from None


def call(agent: str, body: Union[bytes, str]) -> bytes:
    """Calls the agent named `agent` with `body` and returns its response.

    `agent` must be among the `dependencies` this agent declared; the host
    routes the call to wherever that agent runs. A `str` body is sent as
    UTF-8. Raises a `HostError` when the call cannot be made or fails.
    """
    if isinstance(body, str):
        body = body.encode()
    try:
        return _host.call(agent, _types.Request(body=bytes(body), caller=None))
    except Err as e:
        raise _host_error(e.value) from None


def now_ns() -> int:
    """Nanoseconds on the host's monotonic clock (only differences mean anything)."""
    return _host.monotonic_now()


def _message(m: MessageLike) -> _types.Message:
    if isinstance(m, Mapping):
        return _types.Message(role=str(m["role"]), content=str(m["content"]))
    role, content = m
    return _types.Message(role=str(role), content=str(content))


def _host_error(value: object) -> HostError:
    """The kit's exception for a WIT `host-error` value."""
    if isinstance(value, _types.HostError_NoLlmConfigured):
        return NoLlmConfigured()
    if isinstance(value, _types.HostError_UnknownAgent):
        return UnknownAgent(value.value)
    if isinstance(value, _types.HostError_Limit):
        return LimitExceeded(value.value)
    if isinstance(value, _types.HostError_Failed):
        return CallFailed(value.value)
    return CallFailed(repr(value))
