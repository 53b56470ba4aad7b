"""The instance a policy sees, checked and made easy to read.

The host sends WIT records (`wit_world.imports.types`). The kit checks them
by the engine's own rules before any policy code runs, so a policy may
index freely: every agent, task and server index is in range, every number
is finite, and sizes are not negative.

- `instance.agents` and `instance.tasks` are the WIT records as sent:
  `agent.name`, `agent.task`, `agent.demand` (`memory_gb`, `storage_gb`,
  `bandwidth_mbps`), `agent.compute_gcyc`, `agent.state_mb`, `agent.llm_s`,
  `agent.depends_on` (each `.agent` and `.volume_mb`) and `agent.origin`
  (a server index, or None for a cold start); `task.name`,
  `task.prompt_bytes`, `task.file_mb`, `task.agents` (the first is the entry
  agent) and `task.user_server`.
- `instance.servers` are `Server`s: the record's fields, plus what is left
  of them (`remaining()`, `compute_remaining_gcps()`,
  `eta_remaining_mbps()`, `slots_remaining()`).
- `instance.topology` is a `Topology`: `hops(i, j)`, `rtt_s(i, j)`,
  `bandwidth_mbps(i, j)` and `comm_time_s(i, j, volume_mb)`.
- `instance.params` is the `cost-params` record.

A plan is a list with one server index per agent: `plan[a]` is where agent
`a` goes.
"""

import math

from .errors import InvalidInput

#: Tolerance when comparing resource sums against capacities.
EPSILON = 1e-9


class Resources:
    """Memory (GB), storage (GB) and bandwidth (Mbit/s)."""

    __slots__ = ("bandwidth_mbps", "memory_gb", "storage_gb")

    def __init__(self, memory_gb: float, storage_gb: float, bandwidth_mbps: float) -> None:
        self.memory_gb = memory_gb
        self.storage_gb = storage_gb
        self.bandwidth_mbps = bandwidth_mbps

    @classmethod
    def of(cls, record) -> "Resources":
        """From a WIT `resources` record."""
        return cls(record.memory_gb, record.storage_gb, record.bandwidth_mbps)

    def minus(self, other) -> "Resources":
        """Component-wise difference (may go negative)."""
        return Resources(
            self.memory_gb - other.memory_gb,
            self.storage_gb - other.storage_gb,
            self.bandwidth_mbps - other.bandwidth_mbps,
        )

    def fits_in(self, room) -> bool:
        """Whether these resources fit in `room`, on every resource."""
        return (
            self.memory_gb <= room.memory_gb + EPSILON
            and self.storage_gb <= room.storage_gb + EPSILON
            and self.bandwidth_mbps <= room.bandwidth_mbps + EPSILON
        )

    def __repr__(self) -> str:
        return f"Resources(memory_gb={self.memory_gb}, storage_gb={self.storage_gb}, bandwidth_mbps={self.bandwidth_mbps})"


class Server:
    """One edge server: the WIT record's fields, and what is left of them."""

    __slots__ = (
        "arch", "capacity", "compute_gcps", "cores", "cpu_busy", "eta_mbps",
        "hosted", "max_agents", "name", "site", "used",
    )  # fmt: skip

    def __init__(self, record) -> None:
        self.name = record.name
        self.arch = record.arch
        self.site = record.site
        self.capacity = Resources.of(record.capacity)
        self.used = Resources.of(record.used)
        self.cores = record.cores
        self.compute_gcps = record.compute_gcps
        self.cpu_busy = record.cpu_busy
        self.eta_mbps = record.eta_mbps
        self.max_agents = record.max_agents
        self.hosted = record.hosted

    def remaining(self) -> Resources:
        """Memory, storage and bandwidth still free: capacity minus used."""
        return self.capacity.minus(self.used)

    def compute_remaining_gcps(self) -> float:
        """Compute left, gigacycles per second; never below 1% of capacity,
        so a saturated server costs a lot rather than infinity."""
        return max(self.compute_gcps * (1.0 - self.cpu_busy), self.compute_gcps * 0.01)

    def eta_remaining_mbps(self) -> float:
        """Bandwidth left for new transfers, Mbit/s; never below 1%."""
        return max(self.eta_mbps - self.used.bandwidth_mbps, self.eta_mbps * 0.01)

    def slots_remaining(self) -> int:
        """Agents it may still take."""
        return max(self.max_agents - self.hosted, 0)


class Topology:
    """Links between servers, from the three row-major matrices."""

    __slots__ = ("_bandwidth", "_hops", "_rtt", "servers")

    def __init__(self, record) -> None:
        self.servers = record.servers
        self._hops = record.hops
        self._rtt = record.rtt_s
        self._bandwidth = record.bandwidth_mbps

    def hops(self, i: int, j: int) -> int:
        """Router hops from server `i` to `j` (0 from a server to itself)."""
        return 0 if i == j else self._hops[i * self.servers + j]

    def rtt_s(self, i: int, j: int) -> float:
        """Round trip from `i` to `j`, seconds (0 from a server to itself)."""
        return 0.0 if i == j else self._rtt[i * self.servers + j]

    def bandwidth_mbps(self, i: int, j: int) -> float:
        """Achievable bandwidth from `i` to `j` (distinct servers), Mbit/s."""
        return self._bandwidth[i * self.servers + j]

    def comm_time_s(self, i: int, j: int, volume_mb: float) -> float:
        """Time to exchange `volume_mb` from `i` to `j`: one round trip plus
        the volume over the link; zero on the same server. Seconds."""
        if i == j:
            return 0.0
        k = i * self.servers + j
        return self._rtt[k] + volume_mb * 8.0 / self._bandwidth[k]


class Instance:
    """Everything a policy sees about one decision, checked."""

    __slots__ = ("agents", "params", "servers", "tasks", "topology")

    def __init__(self, record) -> None:
        _check_instance(record)
        self.agents = record.agents
        self.servers = [Server(s) for s in record.servers]
        self.tasks = record.tasks
        self.topology = Topology(record.topology)
        self.params = record.params


def _finite(*values: float) -> bool:
    return all(math.isfinite(v) for v in values)


def _non_negative(*values: float) -> bool:
    return all(math.isfinite(v) and v >= 0.0 for v in values)


def _resources_ok(r) -> bool:
    return _non_negative(r.memory_gb, r.storage_gb, r.bandwidth_mbps)


def _check_instance(i) -> None:
    """The engine's rules for an instance; raises InvalidInput."""
    n = i.topology.servers
    if n != len(i.servers):
        raise InvalidInput(f"topology has {n} servers, the instance has {len(i.servers)}")
    if n == 0:
        raise InvalidInput("no servers")
    t = i.topology
    cells = n * n
    if len(t.hops) != cells or len(t.rtt_s) != cells or len(t.bandwidth_mbps) != cells:
        raise InvalidInput(f"topology matrices must have {n} x {n} entries")
    for a in range(n):
        for b in range(n):
            if a != b:
                k = a * n + b
                rtt, bw = t.rtt_s[k], t.bandwidth_mbps[k]
                if not (math.isfinite(rtt) and rtt >= 0.0 and math.isfinite(bw) and bw > 0.0):
                    raise InvalidInput(f"link {a} -> {b} has an invalid RTT or bandwidth")
    for k, s in enumerate(i.servers):
        if (
            not _resources_ok(s.capacity)
            or not _resources_ok(s.used)
            or not (math.isfinite(s.compute_gcps) and s.compute_gcps > 0.0)
            or not (math.isfinite(s.eta_mbps) and s.eta_mbps > 0.0)
            or not 0.0 <= s.cpu_busy < 1.0
            or s.cores == 0
        ):
            raise InvalidInput(f"server {k} ({s.name}) has an invalid capacity")
    n_agents = len(i.agents)
    owner = [None] * n_agents
    for k, task in enumerate(i.tasks):
        if task.user_server >= n or not _non_negative(task.file_mb):
            raise InvalidInput(f"task {k} ({task.name}) is invalid")
        for a in task.agents:
            if a >= n_agents or owner[a] is not None:
                raise InvalidInput(f"task {k} lists agent {a}, which is out of range or in another task")
            owner[a] = k
    for k, a in enumerate(i.agents):
        bad_dep = any(
            d.agent >= n_agents or d.agent == k or not _non_negative(d.volume_mb) for d in a.depends_on
        )
        if (
            owner[k] != a.task
            or not _resources_ok(a.demand)
            or not _non_negative(a.compute_gcyc, a.state_mb, a.llm_s)
            or bad_dep
            or (a.origin is not None and a.origin >= n)
        ):
            raise InvalidInput(f"agent {k} ({a.name}) is invalid")
    p = i.params
    if not _non_negative(
        p.init_base_s, p.init_per_agent_s, p.export_base_s, p.load_base_s, p.access_rtt_s, p.theta, p.compute_weight
    ) or not (_finite(p.export_mb_per_s, p.load_mb_per_s) and p.export_mb_per_s > 0.0 and p.load_mb_per_s > 0.0):
        raise InvalidInput("cost parameters must be finite and non-negative, rates positive")


def check_plan(instance: Instance, plan: "list[int]") -> "list[int]":
    """`plan` if it has the instance's shape; raises InvalidInput if not."""
    if len(plan) != len(instance.agents):
        raise InvalidInput(f"plan assigns {len(plan)} agents, instance has {len(instance.agents)}")
    n = len(instance.servers)
    for a, e in enumerate(plan):
        if e >= n:
            raise InvalidInput(f"agent {a} is assigned to server {e}, out of range")
    return plan


def check_context(instance: Instance, c) -> None:
    """A migration context consistent with the instance; raises InvalidInput."""
    n = len(instance.servers)
    ok = (
        len(c.user_servers) == len(instance.tasks)
        and all(e < n for e in c.user_servers)
        and _finite(c.safety_fraction)
        and _non_negative(c.horizon_requests, c.gamma_s_per_mb, c.theta_dep)
    )
    if not ok:
        raise InvalidInput("migration context: one user server per task, in range; finite, non-negative prices")
