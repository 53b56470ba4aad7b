"""A dialog agent with a memory that survives migration.

In the spirit of AgentScope's DialogAgent: a persona (the system prompt), a
dialogue history, and the host's LLM to answer. It also keeps notes. Its
exported state is exactly that memory (notes and recent dialogue), so a
fresh instance on another host that imports it carries on the same
conversation. It speaks the same text protocol as the Rust `memory` agent:

- `remember TEXT` - keep a note; answers `noted #N`.
- `notes` - every note, one per line.
- `forget` - drop all notes and the dialogue; answers `forgotten`.
- `stats` - `notes=N turns=M bytes=B`, where M counts the dialogue messages
  kept and B is the size of the exported state in bytes.
- anything else - a chat turn: the host's LLM answers with the persona, the
  notes and the recent dialogue as context. Without an LLM the agent answers
  from its notes alone and says so.

Configuration: `persona=TEXT` (the system prompt), `max-turns=N` (dialogue
messages kept, default 32).
"""

from edgehost_agent import (
    Agent,
    HostError,
    InvalidInput,
    InvalidState,
    NoLlmConfigured,
    Unavailable,
    as_text,
    complete,
    export,
    log,
)

DEFAULT_PERSONA = "You are a helpful assistant with a good memory."


class Dialog(Agent):
    kind = "dialog"
    version = "0.1.0"
    # A hard cap. The component starts at 12.3 MiB of linear memory; a state
    # of S MiB needs up to about 4 x S more while it is imported or exported
    # (measured: a 5 MB state needed 24-32 MiB). At 64 MiB, as the Rust
    # memory agent declares, a 12 MB memory of notes and dialogue still fits.
    memory_mib = 64
    cpu_millicores = 250
    storage_mib = 1
    bandwidth_mbps = 1

    def __init__(self, config):
        super().__init__(config)
        self.persona = config.get("persona", DEFAULT_PERSONA)
        self.max_turns = config.get_int("max-turns", 32)
        if self.max_turns < 0:
            raise InvalidInput(f"config max-turns={self.max_turns} must not be negative")
        self.state = empty_memory()

    def handle(self, body, caller):
        text = as_text(body).strip()
        command, _, rest = text.partition(" ")
        notes = self.state["notes"]
        if command == "remember" and rest:
            notes.append(rest)
            return f"noted #{len(notes)}"
        if command == "notes":
            return "\n".join(notes)
        if command == "forget":
            self.state = empty_memory()
            return "forgotten"
        if command == "stats":
            size = len(self.export_state())
            return f"notes={len(notes)} turns={len(self.state['turns'])} bytes={size}"
        if not text:
            raise InvalidInput("empty request")
        return self.chat(text)

    def chat(self, text):
        """One dialogue turn: ask the LLM, remember both sides, return the answer."""
        notes = self.state["notes"]
        turns = self.state["turns"]
        system = f"{self.persona}\nWhat you have been asked to remember:\n" + "\n".join(notes)
        messages = [("system", system), *turns, ("user", text)]
        try:
            answer = complete(messages, max_tokens=256)
        except NoLlmConfigured:
            log("debug", "no LLM configured; answering from notes")
            latest = f"; the latest: {notes[-1]}" if notes else ""
            answer = f"(no LLM configured) I remember {len(notes)} note(s){latest}"
        except HostError as e:  # the LLM failed or is overloaded: it may come back
            raise Unavailable(f"LLM: {e}") from None
        turns.append(["user", text])
        turns.append(["assistant", answer])
        del turns[: max(0, len(turns) - self.max_turns)]
        return answer

    def check_state(self, state):
        """Accepts only `{"notes": [str...], "turns": [[role, content]...]}`."""
        if not isinstance(state, dict):
            raise InvalidState("the memory is not an object")
        notes, turns = state.get("notes"), state.get("turns")
        if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
            raise InvalidState("'notes' is not a list of strings")
        if not isinstance(turns, list) or not all(
            isinstance(t, list) and len(t) == 2 and all(isinstance(s, str) for s in t)
            for t in turns
        ):
            raise InvalidState("'turns' is not a list of [role, content] pairs")
        return {"notes": notes, "turns": turns}


def empty_memory():
    """The memory of a new (or forgetful) dialog agent."""
    return {"notes": [], "turns": []}


Guest = export(Dialog)
