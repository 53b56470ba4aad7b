"""The engine's reference policy, in Python: the default body of every
`Policy` method, and a base to adjust (scale the reference scores, add a
term to the reference objective, ...).

It is the same arithmetic as the engine's native heuristic and cost model,
step for step, so a policy that keeps it unchanged gives the host's own
numbers (edgehost's tests hold the two against each other). Every function
takes an `Instance` the kit has checked; plans are lists of server indices,
one per agent.
"""

from wit_world.imports.types import Latency, ObjectiveTerms, PlanReport, ResourceCost, TaskCost

from .model import Instance, Resources, check_context, check_plan

#: Round trips a live migration makes on the link besides its bytes.
MIGRATION_ROUND_TRIPS = 4.0
#: What relieving one percentage point of a short resource is worth, seconds.
PRESSURE_S_PER_POINT = 1.0
#: Floor of every heuristic value: no server is impossible by heuristic alone.
ETA_FLOOR = 1e-6
#: Weights of the heuristic's initial, resource and communication scores.
WEIGHT_INITIAL = 1.0
WEIGHT_RESOURCE = 0.25
WEIGHT_COMMUNICATION = 0.25


def init_time_s(agents: int, params) -> float:
    """Start-up time of an agent on a server running `agents` agents (itself
    included), seconds."""
    return params.init_base_s + params.init_per_agent_s * agents


def ship_time_s(instance: Instance, a: int, e: int) -> float:
    """Time to bring agent `a`'s state to server `e` over its remaining
    bandwidth; zero if the state already lives there. Seconds."""
    agent = instance.agents[a]
    if agent.origin == e:
        return 0.0
    return agent.state_mb * 8.0 / instance.servers[e].eta_remaining_mbps()


def compute_time_s(instance: Instance, a: int, e: int, agents_on_e: int) -> float:
    """Seconds agent `a` computes on server `e` shared by `agents_on_e` agents."""
    server = instance.servers[e]
    crowding = max(agents_on_e / max(server.cores, 1), 1.0)
    return instance.agents[a].compute_gcyc / server.compute_remaining_gcps() * crowding


def agents_per_server(instance: Instance, plan: "list[int]") -> "list[int]":
    """Agents on each server once `plan` is applied (hosted plus new)."""
    counts = [s.hosted for s in instance.servers]
    for e in plan:
        counts[e] += 1
    return counts


def _frac(left: float, total: float) -> float:
    return min(max(left / total, 0.0), 1.0) if total > 0.0 else 0.0


def score(instance: Instance) -> "list[float]":
    """The reference heuristic, row-major (every server of agent 0, then of
    agent 1, ...): the agent's cheapest stand-alone cost over its cost on the
    server, plus a quarter of the room the server keeps after taking it, plus
    a quarter of its closeness to the task's user."""
    p = instance.params
    servers = instance.servers
    topology = instance.topology
    n_e = len(servers)
    init_next = [init_time_s(s.hosted + 1, p) for s in servers]
    compute_left = [s.compute_remaining_gcps() for s in servers]
    eta_left = [s.eta_remaining_mbps() for s in servers]
    rooms = [s.remaining() for s in servers]
    slots = [s.slots_remaining() for s in servers]
    slot_score = [_frac(slots[e] - 1, max(s.max_agents, 1)) for e, s in enumerate(servers)]
    out: "list[float]" = []
    for agent in instance.agents:
        origin = agent.origin
        bits = agent.state_mb * 8.0
        weighted_compute = p.compute_weight * agent.compute_gcyc
        stand_alone = [
            (0.0 if origin == e else bits / eta_left[e]) + init_next[e] + weighted_compute / compute_left[e]
            for e in range(n_e)
        ]
        cheapest = min(stand_alone)
        volume = 0.0
        for d in agent.depends_on:
            volume += d.volume_mb
        user = instance.tasks[agent.task].user_server
        demand = agent.demand
        for e in range(n_e):
            initial = cheapest / stand_alone[e] if stand_alone[e] > 0.0 else 1.0
            room = rooms[e]
            cap = servers[e].capacity
            if slots[e] > 0 and Resources.fits_in(demand, room):
                resource = (
                    _frac(room.memory_gb - demand.memory_gb, cap.memory_gb)
                    + _frac(room.storage_gb - demand.storage_gb, cap.storage_gb)
                    + _frac(room.bandwidth_mbps - demand.bandwidth_mbps, cap.bandwidth_mbps)
                    + slot_score[e]
                ) / 4.0
            else:
                resource = 0.0
            communication = 1.0 / (1.0 + topology.comm_time_s(user, e, volume))
            value = WEIGHT_INITIAL * initial + WEIGHT_RESOURCE * resource + WEIGHT_COMMUNICATION * communication
            out.append(max(value, ETA_FLOOR))
    return out


def objective_terms(instance: Instance, plan: "list[int]") -> ObjectiveTerms:
    """The placement objective's three terms: deployment (state shipped plus
    start-up), compute load and dependency communication, seconds."""
    p = instance.params
    servers = instance.servers
    n_e = len(servers)
    new_agents = [0] * n_e
    compute = [0.0] * n_e
    ship = 0.0
    for a, e in enumerate(plan):
        new_agents[e] += 1
        compute[e] += instance.agents[a].compute_gcyc
        ship += ship_time_s(instance, a, e)
    init = 0.0
    compute_s = 0.0
    for e, server in enumerate(servers):
        n = new_agents[e]
        if n > 0:
            init += n * init_time_s(server.hosted + n, p)
            compute_s += compute[e] / server.compute_remaining_gcps()
    dependency = 0.0
    comm_time_s = instance.topology.comm_time_s
    for a, agent in enumerate(instance.agents):
        ea = plan[a]
        for d in agent.depends_on:
            dependency += comm_time_s(ea, plan[d.agent], d.volume_mb)
    deployment_s = ship + init
    compute_s = p.compute_weight * compute_s
    dependency_s = p.theta * dependency
    return ObjectiveTerms(
        deployment_s=deployment_s,
        compute_s=compute_s,
        dependency_s=dependency_s,
        total=deployment_s + compute_s + dependency_s,
    )


def objectives(instance: Instance, plans: "list[list[int]]") -> "list[float]":
    """The reference objective of each plan (lower is better)."""
    return [objective_terms(instance, check_plan(instance, plan)).total for plan in plans]


def _prompt_s(instance: Instance, task, user: int, entry_server: int, eta: float) -> float:
    p = instance.params
    relay = instance.topology.rtt_s(user, entry_server)
    return p.access_rtt_s + relay + task.prompt_bytes / 1e6 * 8.0 / eta


def plan_cost(instance: Instance, plan: "list[int]") -> PlanReport:
    """The reference latency and resource cost of every task under `plan`,
    summed, with the objective."""
    check_plan(instance, plan)
    p = instance.params
    topology = instance.topology
    on_server = agents_per_server(instance, plan)
    latency_sum = [0.0] * 5
    cost_sum = [0.0] * 4
    tasks = []
    for task in instance.tasks:
        if not task.agents:
            tasks.append(TaskCost(latency=Latency(0.0, 0.0, 0.0, 0.0, 0.0), cost=ResourceCost(0.0, 0.0, 0.0, 0.0)))
            continue
        e_in = plan[task.agents[0]]
        eta = instance.servers[e_in].eta_remaining_mbps()
        prompt_s = _prompt_s(instance, task, task.user_server, e_in, eta)
        file_transfer_s = task.file_mb * 8.0 / eta
        tra = file_transfer_s + prompt_s
        mig = 0.0
        memory_transfer_total = 0.0
        file_processing = 0.0
        llm = 0.0
        handoff = 0.0
        comm_events = [task.file_mb, task.prompt_bytes / 1e6]
        memories_gb = 0.0
        servers_used: "list[int]" = []
        for a in task.agents:
            agent = instance.agents[a]
            e = plan[a]
            origin = agent.origin
            if origin is not None and origin != e:
                transfer = agent.state_mb * 8.0 / topology.bandwidth_mbps(origin, e)
                memory_transfer_total += transfer
                export_s = p.export_base_s + agent.state_mb / p.export_mb_per_s
                load_s = p.load_base_s + agent.state_mb / p.load_mb_per_s
                mig += export_s + transfer + init_time_s(on_server[e], p) + load_s
                comm_events.append(agent.state_mb)
            file_processing += compute_time_s(instance, a, e, on_server[e])
            llm += agent.llm_s
            for d in agent.depends_on:
                ed = plan[d.agent]
                handoff += topology.comm_time_s(e, ed, d.volume_mb)
                if ed != e:
                    comm_events.append(d.volume_mb)
            memories_gb += agent.demand.memory_gb
            if e not in servers_used:
                servers_used.append(e)
        ini = 0.0
        for a in task.agents:
            ini += init_time_s(on_server[plan[a]], p)
        pro = file_processing + llm + handoff
        total = tra + mig + ini + pro
        cpu = max(total - (file_transfer_s + memory_transfer_total), 0.0)
        storage = task.file_mb / 1000.0 * len(servers_used) + memories_gb
        comm = 0.0
        for v in comm_events:
            comm += v
        latency = (tra, mig, ini, pro, total)
        cost = (cpu, storage, comm, cpu + storage + comm)
        for k in range(5):
            latency_sum[k] += latency[k]
        for k in range(4):
            cost_sum[k] += cost[k]
        tasks.append(TaskCost(latency=Latency(*latency), cost=ResourceCost(*cost)))
    return PlanReport(
        objective=objective_terms(instance, plan),
        latency=Latency(*latency_sum),
        cost=ResourceCost(*cost_sum),
        tasks=tasks,
    )


def user_delay_s(instance: Instance, plan: "list[int]", t: int, user: int, on_server: "list[int]") -> float:
    """One run of task `t` for a user on server `user`: the transmit latency
    to the entry agent's server plus every agent's compute time. Seconds."""
    task = instance.tasks[t]
    if not task.agents:
        return 0.0
    e_in = plan[task.agents[0]]
    eta = instance.servers[e_in].eta_remaining_mbps()
    prompt_s = _prompt_s(instance, task, user, e_in, eta)
    compute = 0.0
    for a in task.agents:
        e = plan[a]
        compute += compute_time_s(instance, a, e, on_server[e])
    return task.file_mb * 8.0 / eta + prompt_s + compute


def move_time_s(instance: Instance, a: int, source: int, target: int, agents_on_target: int) -> float:
    """Time to move agent `a` from `source` to `target`: export, transfer
    (with the link's round trips), start-up among `agents_on_target` agents
    and import. Seconds."""
    p = instance.params
    state = instance.agents[a].state_mb
    topology = instance.topology
    transfer = state * 8.0 / topology.bandwidth_mbps(source, target) + MIGRATION_ROUND_TRIPS * topology.rtt_s(
        source, target
    )
    export_s = p.export_base_s + state / p.export_mb_per_s
    load_s = p.load_base_s + state / p.load_mb_per_s
    return export_s + transfer + init_time_s(agents_on_target, p) + load_s


def shortage_points(instance: Instance, plan: "list[int]", safety_fraction: float) -> float:
    """Percentage points by which servers fall short of `safety_fraction`
    free memory, storage and bandwidth once `plan` is applied."""
    rooms = [s.remaining() for s in instance.servers]
    for a, e in enumerate(plan):
        rooms[e] = rooms[e].minus(instance.agents[a].demand)

    def short(left: float, cap: float) -> float:
        return max(safety_fraction - left / cap, 0.0) * 100.0 if cap > 0.0 else 0.0

    total = 0.0
    for s, r in zip(instance.servers, rooms):
        total += (
            short(r.memory_gb, s.capacity.memory_gb)
            + short(r.storage_gb, s.capacity.storage_gb)
            + short(r.bandwidth_mbps, s.capacity.bandwidth_mbps)
        )
    return total


def net_gain_s(instance: Instance, before: "list[int]", context, after: "list[int]") -> float:
    """The reference net gain of going from `before` to `after`, seconds: the
    delay saved over the horizon's requests, minus the moves' time and
    overhead, minus the weighted damage to dependencies, plus the pressure
    relieved on short servers."""
    if list(before) == list(after):
        return 0.0
    h = context.horizon_requests
    on_before = agents_per_server(instance, before)
    on_after = agents_per_server(instance, after)
    migration = 0.0
    state = 0.0
    for a, (source, target) in enumerate(zip(before, after)):
        if source != target:
            migration += move_time_s(instance, a, source, target, on_after[target])
            state += instance.agents[a].state_mb
    benefit = 0.0
    for t, user in enumerate(context.user_servers):
        benefit += user_delay_s(instance, before, t, user, on_before) - user_delay_s(
            instance, after, t, user, on_after
        )
    comm_time_s = instance.topology.comm_time_s
    damage = 0.0
    for a, agent in enumerate(instance.agents):
        for d in agent.depends_on:
            b = d.agent
            if before[a] == after[a] and before[b] == after[b]:
                continue
            damage += comm_time_s(after[a], after[b], d.volume_mb) - comm_time_s(before[a], before[b], d.volume_mb)
    relief = PRESSURE_S_PER_POINT * (
        shortage_points(instance, before, context.safety_fraction)
        - shortage_points(instance, after, context.safety_fraction)
    )
    return h * benefit - (migration + context.gamma_s_per_mb * state) - context.theta_dep * (h * damage) + relief


def migration_fitness(instance: Instance, before: "list[int]", context, after: "list[list[int]]") -> "list[float]":
    """The reference net gain of each candidate deployment in `after`."""
    check_plan(instance, before)
    check_context(instance, context)
    return [net_gain_s(instance, before, context, check_plan(instance, plan)) for plan in after]
