"""The task planner of the CBIR pipeline, in the spirit of the paper's
DialogAgent: it turns a user's task (a prompt, and maybe a file) into
sub-tasks for the other agents, with their resource demands and
dependencies. `edgehost task run` carries the plan out across the fleet,
dependencies first.

A request is JSON: `{"prompt": TEXT, "file": {"name": NAME, "bytes": N} | null}`,
with `"agents": {"features": NAME, "index": NAME}` to name other agents
than the configured ones for this task.
The reply is the plan:

    {"planner": "llm" | "rules", "note": TEXT,
     "subtasks": [{"id", "agent", "action", "needs": [ids], "k"?, "demand": {...}}]}

Actions: `describe` (the features agent computes the file's descriptor),
`add` (the index keeps it, under the file's name), `query` (the index
answers the `k` nearest images) and `stats` (how many images the index
holds). `add` and `query` need a `describe` before them.

With an LLM configured the planner asks it for the plan and checks the
answer: known actions only, each on its agent, dependencies that exist and
come first, a file for what needs one. Without an LLM, or when the answer
is not a valid plan, it plans by rules and says why in `note`.

Its memory is the recent tasks it planned, with the figures `task run`
measured for them (`{"record": {"task": N, ...}}`; `history` lists them),
so it survives a migration.

Configuration: `features=NAME` and `index=NAME` (the agents' names in the
fleet; default `features` and `index`), `k=N` (results per query, default
5), `llm=off` to plan by rules alone.
"""

import json

from edgehost_agent import (
    Agent,
    HostError,
    InvalidInput,
    InvalidState,
    NoLlmConfigured,
    as_text,
    complete,
    export,
    log,
)

#: What each action is, which agent kind runs it, whether it needs the file
#: and a `describe` before it.
ACTIONS = {
    "describe": {"on": "features", "file": True, "after": None},
    "add": {"on": "index", "file": True, "after": "describe"},
    "query": {"on": "index", "file": True, "after": "describe"},
    "stats": {"on": "index", "file": False, "after": None},
}
MAX_SUBTASKS = 8
MAX_PROMPT = 4096
KEPT_TASKS = 32
MAX_FIGURES = 4096

ADD_WORDS = ("add", "index", "store", "keep", "remember", "upload", "save")
QUERY_WORDS = ("find", "search", "similar", "query", "match", "retrieve", "like", "look")
STATS_WORDS = ("how many", "count", "stats", "size")

SYSTEM = (
    "You plan image-retrieval tasks. Answer with JSON only: "
    '{"subtasks": [{"id": ID, "action": A, "needs": [IDS], "k": N}]}. '
    "Actions: describe (compute the file's descriptor; needs the file), "
    "add (index the described file; needs a describe), query (find the k most "
    "similar images; needs a describe), stats (count indexed images). "
    "Use at most 8 subtasks; list each one after what it needs."
)


class Planner(Agent):
    kind = "planner"
    version = "0.1.0"
    memory_mib = 64
    cpu_millicores = 200
    storage_mib = 1
    bandwidth_mbps = 1

    def __init__(self, config):
        super().__init__(config)
        self.agents = {
            "features": config.get("features", "features"),
            "index": config.get("index", "index"),
        }
        self.k = config.get_int("k", 5)
        if not 1 <= self.k <= 100:
            raise InvalidInput(f"config k={self.k} must be 1 to 100")
        self.use_llm = config.get("llm", "on") != "off"
        self.state = {"tasks": [], "next": 1}

    def handle(self, body, caller):
        text = as_text(body).strip()
        if text == "history":
            return json.dumps(self.state["tasks"])
        try:
            task = json.loads(text)
        except ValueError:
            raise InvalidInput("a task is JSON: {\"prompt\": TEXT, \"file\": {...} | null}") from None
        if isinstance(task, dict) and "record" in task:
            return self.record(task["record"])
        if not isinstance(task, dict) or not isinstance(task.get("prompt"), str):
            raise InvalidInput("a task needs a \"prompt\" string")
        prompt = task["prompt"].strip()
        if not prompt or len(prompt) > MAX_PROMPT:
            raise InvalidInput(f"the prompt must be 1 to {MAX_PROMPT} characters")
        file = task.get("file")
        if file is not None and not (
            isinstance(file, dict)
            and isinstance(file.get("name"), str)
            and isinstance(file.get("bytes"), int)
            and file["bytes"] >= 0
        ):
            raise InvalidInput("\"file\" must be {\"name\": TEXT, \"bytes\": N} or null")
        agents = dict(self.agents)
        chosen = task.get("agents") or {}
        if not isinstance(chosen, dict) or not all(
            k in agents and isinstance(v, str) and 0 < len(v) <= 64 for k, v in chosen.items()
        ):
            raise InvalidInput('"agents" must map features and index to agent names')
        agents.update(chosen)
        plan = self.plan(prompt, file, agents)
        plan["task"] = self.state["next"]
        self.state["next"] += 1
        self.state["tasks"].append(
            {
                "task": plan["task"],
                "prompt": prompt[:200],
                "planner": plan["planner"],
                "subtasks": len(plan["subtasks"]),
                "figures": None,
            }
        )
        del self.state["tasks"][: max(0, len(self.state["tasks"]) - KEPT_TASKS)]
        return json.dumps(plan)

    def record(self, figures):
        """Keeps what `edgehost task run` measured with the task it ran."""
        if not isinstance(figures, dict) or not isinstance(figures.get("task"), int):
            raise InvalidInput('a record is {"record": {"task": N, ...figures}}')
        if len(json.dumps(figures)) > MAX_FIGURES:
            raise InvalidInput(f"a task's figures take at most {MAX_FIGURES} bytes")
        for t in self.state["tasks"]:
            if t["task"] == figures["task"]:
                t["figures"] = figures
                return json.dumps({"recorded": figures["task"]})
        raise InvalidInput(f"no recent task #{figures['task']}")

    def check_state(self, state):
        """Accepts only `{"tasks": [...], "next": N}`."""
        if (
            not isinstance(state, dict)
            or not isinstance(state.get("tasks"), list)
            or not isinstance(state.get("next"), int)
        ):
            raise InvalidState('the planner\'s state is {"tasks": [...], "next": N}')
        return state

    def plan(self, prompt, file, agents):
        """The LLM's plan if it gives a valid one, else the rules'."""
        if not self.use_llm:
            return self.finish("rules", "rule-based plan (LLM planning is off)", rules(prompt, file, self.k), file, agents)
        messages = [
            ("system", SYSTEM),
            ("user", json.dumps({"task": prompt, "file": file})),
        ]
        try:
            answer = complete(messages, max_tokens=200)
        except NoLlmConfigured:
            return self.finish("rules", "rule-based plan (no LLM configured)", rules(prompt, file, self.k), file, agents)
        except HostError as e:
            log("warn", f"LLM failed: {e}")
            return self.finish("rules", f"rule-based plan (the LLM failed: {e})", rules(prompt, file, self.k), file, agents)
        try:
            subtasks = parse_llm(answer, self.k)
            check(subtasks, file)
        except ValueError as e:
            log("info", f"LLM plan refused: {e}")
            return self.finish(
                "rules",
                f"rule-based plan (the LLM's plan was refused: {e})",
                rules(prompt, file, self.k),
                file,
                agents,
            )
        return self.finish("llm", "planned by the LLM and checked", subtasks, file, agents)

    def finish(self, planner, note, subtasks, file, agents):
        size = file["bytes"] if file else 0
        for s in subtasks:
            s["agent"] = agents[ACTIONS[s["action"]]["on"]]
            s["demand"] = demand(s["action"], size)
        return {"planner": planner, "note": note, "subtasks": subtasks}


def rules(prompt, file, k):
    """The plan by keywords: index the file, search with it, or count."""
    words = prompt.lower()
    if file is None or (any(w in words for w in STATS_WORDS) and not any(w in words for w in QUERY_WORDS)):
        return [{"id": "stats", "action": "stats", "needs": []}]
    subtasks = [{"id": "describe", "action": "describe", "needs": []}]
    wants_add = any(w in words for w in ADD_WORDS)
    wants_query = any(w in words for w in QUERY_WORDS) or not wants_add
    if wants_query:
        subtasks.append({"id": "query", "action": "query", "needs": ["describe"], "k": k})
    if wants_add:
        subtasks.append({"id": "add", "action": "add", "needs": ["describe"]})
    return subtasks


def parse_llm(answer, k):
    """The sub-tasks in the LLM's answer: the first JSON object in it."""
    start, end = answer.find("{"), answer.rfind("}")
    if start < 0 or end < start:
        raise ValueError("no JSON object in the answer")
    try:
        value = json.loads(answer[start : end + 1])
    except ValueError as e:
        raise ValueError(f"not JSON: {e}") from None
    raw = value.get("subtasks") if isinstance(value, dict) else None
    if not isinstance(raw, list):
        raise ValueError("no \"subtasks\" list")
    subtasks = []
    for s in raw:
        if not isinstance(s, dict):
            raise ValueError("a sub-task is not an object")
        needs = s.get("needs", [])
        sub = {"id": s.get("id"), "action": s.get("action"), "needs": needs}
        if s.get("action") == "query":
            n = s.get("k", k)
            sub["k"] = n if isinstance(n, int) and 1 <= n <= 100 else k
        subtasks.append(sub)
    return subtasks


def check(subtasks, file):
    """Raises ValueError unless the plan can run as given."""
    if not 1 <= len(subtasks) <= MAX_SUBTASKS:
        raise ValueError(f"{len(subtasks)} sub-tasks; 1 to {MAX_SUBTASKS} allowed")
    seen = {}
    for s in subtasks:
        sid, action, needs = s["id"], s["action"], s["needs"]
        if not isinstance(sid, str) or not sid or len(sid) > 32 or sid in seen:
            raise ValueError(f"bad or repeated sub-task id {sid!r}")
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}")
        if not isinstance(needs, list) or not all(n in seen for n in needs):
            raise ValueError(f"sub-task {sid!r} needs one not listed before it")
        spec = ACTIONS[action]
        if spec["file"] and file is None:
            raise ValueError(f"{action} needs a file and the task has none")
        if spec["after"] and not any(seen[n] == spec["after"] for n in needs):
            raise ValueError(f"{action} needs a {spec['after']} before it")
        seen[sid] = action


def demand(action, size):
    """What a sub-task asks of its server: memory (MiB), CPU (millicores),
    storage (MiB) and bandwidth (Mbit/s), from the action and the file."""
    mib = size / (1 << 20)
    if action == "describe":
        return {"memory_mib": 16 + int(8 * mib), "cpu_millicores": 500, "storage_mib": 1 + int(mib), "bandwidth_mbps": 5}
    if action in ("add", "query"):
        return {"memory_mib": 32, "cpu_millicores": 250, "storage_mib": 1, "bandwidth_mbps": 1}
    return {"memory_mib": 8, "cpu_millicores": 50, "storage_mib": 0, "bandwidth_mbps": 1}


Guest = export(Planner)
