"""The `Agent` base class, its configuration, and its default state format."""

import json
import re
from typing import Any, Optional, Union

from wit_world.imports.types import Descriptor, ResourceDemand

from .errors import AgentError, InvalidInput, InvalidState

#: The key that marks a state blob written by this kit; its value is the
#: format version.
STATE_FORMAT_KEY = "edgehost-python-state"
#: The version of the state envelope this kit writes and reads.
STATE_FORMAT_VERSION = 1
#: The deepest nesting of lists and objects an imported state may have.
#: Parsing JSON nested about 2000 deep exhausts the stack the host gives the
#: agent, which stops the agent instead of refusing the blob.
MAX_STATE_DEPTH = 200

_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_ALL_BUT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


class Config(dict):
    """An agent's configuration: the `K=V` pairs given at deployment.

    A plain `dict` of strings (when a key is given twice, the last value
    wins), with helpers that turn a bad value into `InvalidInput`.
    """

    def get_int(self, key: str, default: int) -> int:
        """The value of `key` as an integer; `default` when it is absent."""
        value = self.get(key)
        if value is None:
            return default
        try:
            return int(value)
        except ValueError:
            raise InvalidInput(f"config {key}={value!r} is not an integer") from None


class Agent:
    """Base class of an edgehost agent written in Python.

    Subclass it, set the class attributes below (or override `describe`),
    and implement `handle`. Keep everything the agent must remember in
    `self.state`, a JSON-serialisable value (a dict by default): the default
    `export_state` and `import_state` carry it across instances and hosts.

    One instance lives as long as the component instance: the host calls
    `Agent(config)` once, then `handle` for every request.
    """

    #: A short name for the agent's kind (`dialog`, `counter`). Required.
    kind: str = ""
    #: The version of the agent's own code.
    version: str = "0.1.0"
    #: Linear memory the agent may use, in MiB. The host enforces it as a hard
    #: cap. A Python component starts with 12.3 MiB (CPython and the modules
    #: imported at build time), and importing or exporting a state of S MiB
    #: briefly needs up to about 4 x S more.
    memory_mib: int = 64
    #: Share of one CPU core the agent expects, in thousandths (1000 = one core).
    cpu_millicores: int = 250
    #: Local storage the agent expects, in MiB.
    storage_mib: int = 1
    #: Network bandwidth the agent expects, in Mbit/s.
    bandwidth_mbps: int = 1
    #: Names of the agents this one calls with `call`.
    dependencies: tuple[str, ...] = ()

    @classmethod
    def describe(cls) -> Descriptor:
        """The agent's kind, version, resource demand and dependencies.

        Built from the class attributes. It runs once, when the component is
        built, so it must not depend on configuration or state, nor call the
        host.
        """
        return Descriptor(
            kind=cls.kind,
            version=cls.version,
            demand=ResourceDemand(
                memory_mib=cls.memory_mib,
                cpu_millicores=cls.cpu_millicores,
                storage_mib=cls.storage_mib,
                bandwidth_mbps=cls.bandwidth_mbps,
            ),
            dependencies=list(cls.dependencies),
        )

    def __init__(self, config: Config) -> None:
        """Prepares the agent from its configuration.

        Override it to read settings and to set the initial `self.state`;
        call `super().__init__(config)` first. Raise `InvalidInput` for a
        configuration the agent cannot accept.
        """
        self.config = config
        self.state: Any = {}

    def handle(self, body: bytes, caller: Optional[str]) -> Union[bytes, str]:
        """Answers one request.

        `body` is the request payload; `caller` is the name of the agent that
        called this one, or `None` for a client. Return `bytes`, or `str`
        (sent as UTF-8). Raise an `AgentError` subclass to refuse or fail.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement handle")

    def export_state(self) -> bytes:
        """The agent's whole memory as one blob.

        By default: `self.state` as compact UTF-8 JSON, inside an envelope
        naming the format version and the agent's kind.
        """
        envelope = {
            STATE_FORMAT_KEY: STATE_FORMAT_VERSION,
            "kind": self.kind,
            "state": self.state,
        }
        return json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode()

    def import_state(self, blob: bytes) -> None:
        """Replaces the agent's memory with a blob made by `export_state`.

        By default: reads the envelope, passes the state to `check_state`,
        and only then replaces `self.state`. A blob it cannot read raises
        `InvalidState` and leaves the current state untouched.
        """
        if _nests_too_deep(blob):
            raise InvalidState(f"the state blob nests deeper than {MAX_STATE_DEPTH} levels")
        try:
            envelope = json.loads(blob)
        except ValueError as e:
            raise InvalidState(f"not a Python agent state blob: {e}") from None
        if not isinstance(envelope, dict) or STATE_FORMAT_KEY not in envelope:
            raise InvalidState(f"not a Python agent state blob (no {STATE_FORMAT_KEY!r} tag)")
        version = envelope[STATE_FORMAT_KEY]
        if version != STATE_FORMAT_VERSION:
            raise InvalidState(
                f"state format version {version!r} is not supported "
                f"(this kit reads version {STATE_FORMAT_VERSION})"
            )
        kind = envelope.get("kind")
        if kind != self.kind:
            raise InvalidState(f"the state is a {kind!r} agent's, this agent is a {self.kind!r}")
        if "state" not in envelope:
            raise InvalidState("the state blob has no 'state' field")
        try:
            state = self.check_state(envelope["state"])
        except AgentError:
            raise
        except Exception as e:
            raise InvalidState(f"{type(e).__name__}: {e}") from None
        self.state = state

    def check_state(self, state: Any) -> Any:
        """Checks a state read by `import_state` and returns the state to keep.

        Override it to validate (or upgrade) the shape of your state: raise
        `InvalidState` to refuse the blob. Any other exception raised here
        also refuses it, as `invalid-state`. The default accepts any value.
        """
        return state


def _nests_too_deep(blob: bytes) -> bool:
    """Whether lists and objects in the JSON `blob` nest deeper than `MAX_STATE_DEPTH`.

    Brackets inside strings do not count. Cheap for ordinary states: a blob
    with fewer brackets than the limit cannot nest deeper, and otherwise
    only the brackets are looped over.
    """
    blob = bytes(blob)
    if blob.count(b"[") + blob.count(b"{") <= MAX_STATE_DEPTH:
        return False
    depth = 0
    for bracket in _JSON_STRING.sub(b"", blob).translate(None, _ALL_BUT_BRACKETS):
        depth += 1 if bracket in b"[{" else -1
        if depth > MAX_STATE_DEPTH:
            return True
    return False


def as_text(body: bytes) -> str:
    """The request body as text; `InvalidInput` when it is not UTF-8."""
    try:
        return body.decode()
    except UnicodeDecodeError:
        raise InvalidInput("requests are UTF-8 text") from None
