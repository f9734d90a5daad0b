"""Parallel event runs, the pure part: which actor owns which node, and in what calls each
actor applies its events (docs/parallel_events.md).

A compute event on node i reads and writes only node i's rows of the algorithm's state, and
an edge event (i, j) only those of i and j. So the sequential engine's result is reproduced
bit for bit by any schedule that applies **each node's events in their global time order**:
every node's rows then see the same operations on the same inputs. Events on disjoint
nodes commute.

:func:`partition_nodes` splits the graph into balanced parts with few cut edges
(Kernighan–Lin refinement of a breadth-first split, edges weighted by their Poisson rates,
so the cut measures the rate of cross-actor events, not their count). :func:`balance_parts`
then balances the *work* actually drawn for the run's first stretch, which Poisson draws
spread unevenly over nodes of equal rate (see its docstring).

:func:`plan_levels` cuts a stretch of the event stream into *levels*, a conservative
synchronisation that needs no lookahead in time: a local event has the level of the latest
event before it on its nodes, and an event whose endpoints live on two actors (a cross
event) one more. Each actor then makes one call per level: it applies its cross events of
that level (the partner's node state arrives from the partner's previous call), then its
local events of that level in time order, then exports the states its partners need for the
next level's cross events. A node has at most one cross event per level and every event on
it before that cross event has a lower level, so the exported state is exactly the state
the sequential engine would have used. The number of levels is at most the number of cross
events plus one, and usually far fewer: cross events on nodes whose histories have not yet
met share a level.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import networkx as nx

#: One event as the planner sees it: (time, node i, node j); j = -1 is a compute event on i.
Event = tuple[float, int, int]


def partition_nodes(
    num_nodes: int, edges: Sequence[tuple[int, int]], rates: Sequence[float], parts: int, root: int = 0
) -> list[int]:
    """The owning part of every node: ``parts`` balanced parts (sizes differ by at most one).

    A breadth-first order from node ``root`` is cut into contiguous chunks (connected graphs
    give connected chunks), then every pair of parts is refined by Kernighan–Lin bisection of
    their union, which swaps nodes in pairs (sizes unchanged) while the rate of the cut
    edges falls. Deterministic: the same graph always gives the same partition.
    """
    parts = max(1, min(parts, num_nodes))
    graph = _rate_graph(num_nodes, edges, rates)
    order = _breadth_first_order(graph, root)
    owner = [0] * num_nodes
    for position, node in enumerate(order):
        owner[node] = position * parts // num_nodes
    if parts == 1:
        return owner
    for _ in range(2):
        for a in range(parts):
            for b in range(a + 1, parts):
                _refine_pair(graph, owner, a, b)
    return owner


def _rate_graph(num_nodes: int, edges: Sequence[tuple[int, int]], rates: Sequence[float]) -> nx.Graph:
    """The graph with each edge weighted by its summed Poisson rate."""
    graph = nx.Graph()
    graph.add_nodes_from(range(num_nodes))
    for (i, j), rate in zip(edges, rates, strict=True):
        weight = graph.edges[i, j]["weight"] + rate if graph.has_edge(i, j) else rate
        graph.add_edge(i, j, weight=weight)
    return graph


def _breadth_first_order(graph: nx.Graph, root: int = 0) -> list[int]:
    """Nodes in breadth-first order from ``root``, then from the smallest node of each other component."""
    seen: set[int] = set()
    order: list[int] = []
    for start in [root, *sorted(graph.nodes)]:
        if start in seen:
            continue
        seen.add(start)
        queue = [start]
        for node in queue:
            order.append(node)
            for neighbour in sorted(graph.neighbors(node)):
                if neighbour not in seen:
                    seen.add(neighbour)
                    queue.append(neighbour)
    return order


def _refine_pair(graph: nx.Graph, owner: list[int], a: int, b: int) -> None:
    """Kernighan–Lin on the subgraph of parts a and b, starting from the current split."""
    nodes = [v for v in sorted(graph.nodes) if owner[v] in (a, b)]
    side_a = {v for v in nodes if owner[v] == a}
    side_b = set(nodes) - side_a
    if not side_a or not side_b:
        return
    subgraph = graph.subgraph(nodes)
    new_a, _ = nx.community.kernighan_lin_bisection(subgraph, (side_a, side_b), weight="weight", seed=0)
    for v in nodes:
        owner[v] = a if v in new_a else b


def cut_edges(edges: Sequence[tuple[int, int]], owner: Sequence[int]) -> list[int]:
    """Indices of the edges whose endpoints live on different parts."""
    return [k for k, (i, j) in enumerate(edges) if owner[i] != owner[j]]


def cross_fraction(
    edges: Sequence[tuple[int, int]], rates: Sequence[float], owner: Sequence[int], node_rate_total: float
) -> float:
    """The expected share of events that cross parts: cut edge rates over the total clock rate."""
    cut = sum(rates[k] for k in cut_edges(edges, owner))
    return cut / (node_rate_total + sum(rates))


#: The cost of a compute event in units of an edge event, for weighing drawn work. For the
#: neural networks parallel parts are for, a compute event is a forward and backward pass and
#: an edge event an average of two models: about 8 times cheaper for the 190k-parameter MLP
#: of ``benchmarks/parallel_events.py``. A fixed ratio, not a timing taken at run time: the
#: partition must be the same on every machine.
COMPUTE_WEIGHT = 8.0
#: The time a node state takes from one part to its partner, in edge events (a copy of a
#: model through shared memory; half a compute event).
MESSAGE_WEIGHT = 4.0
#: Below this many drawn events per node, the counts say more about chance than about the
#: run: the first stretch is too short to balance, and the rate-based partition stays.
MIN_EVENTS_PER_NODE = 4
#: Breadth-first roots tried for the starting partitions (equal cuts can differ in work).
ROOTS = 8
#: The least relative gain in modelled run length for which another partition replaces the
#: rate-based one: the cost ratios above are estimates, so a smaller gain may be a loss.
MIN_GAIN = 0.01


@dataclass(frozen=True)
class DrawnWork:
    """The events drawn for a stretch, in time order, and their counts: compute events per
    node, edge events per edge (i < j)."""

    stream: list[Event]
    computes: list[int]
    edges: dict[tuple[int, int], int]

    @property
    def events(self) -> int:
        return len(self.stream)


def event_weight(event: Event) -> float:
    return COMPUTE_WEIGHT if event[2] < 0 else 1.0


def part_work(work: DrawnWork, owner: Sequence[int], parts: int) -> list[float]:
    """Each part's drawn work, in edge events: its nodes' compute events, and every edge event
    with an endpoint on it (a cross event is applied by both parts)."""
    loads = [0.0] * parts
    for node, count in enumerate(work.computes):
        loads[owner[node]] += COMPUTE_WEIGHT * count
    for (i, j), count in work.edges.items():
        loads[owner[i]] += count
        if owner[j] != owner[i]:
            loads[owner[j]] += count
    return loads


def schedule_length(work: DrawnWork, owner: Sequence[int], parts: int) -> float:
    """How long the parts take over the drawn stretch on idle cores, in edge events.

    The stretch is planned into levels (:func:`plan_levels`) and each part runs, level by
    level, the events its exports depend on (which wait for the partners' exports of the
    level before, plus ``MESSAGE_WEIGHT``), then the rest of the level. Balanced totals are
    not enough: how the cross events chain the parts decides how long they wait for each
    other (on the benchmark's torus two minimum bisections of equal work differ by 4 %).
    """
    plan = plan_levels(work.stream, owner, parts)
    free, exported = [0.0] * parts, [0.0] * parts
    for calls, senders in zip(plan.calls, plan.senders, strict=True):
        previous = list(exported)
        for p, call in enumerate(calls):
            ready = max((previous[q] + MESSAGE_WEIGHT for q in senders[p]), default=0.0)
            head = sum(map(event_weight, call.imports)) + sum(map(event_weight, call.events))
            exported[p] = max(free[p], ready) + head
            free[p] = exported[p] + sum(map(event_weight, call.later))
    return max(free)


def balance_parts(
    num_nodes: int,
    edges: Sequence[tuple[int, int]],
    rates: Sequence[float],
    parts: int,
    work: DrawnWork,
    rate_owner: list[int] | None = None,
) -> list[int]:
    """A partition for the drawn ``work`` rather than for node counts alone.

    Poisson clocks of equal rate still draw unequal counts (a node's compute events over a
    stretch vary by about one over the square root of their mean), so the rate-balanced
    partition of :func:`partition_nodes` may leave one part with a few per cent more work,
    and the others wait for it. Candidates come from Kernighan–Lin runs from a few
    breadth-first roots (cuts of equal rate can carry different work), kept only if their
    busiest part has no more work than the rate-based partition's; the one of least
    :func:`schedule_length` is refined by moving boundary nodes off the busiest part while
    that shortens the schedule and makes no part busier than the busiest was (part sizes
    may then differ). The result replaces the rate-based partition only if it shortens the
    schedule by ``MIN_GAIN``. Deterministic: only the drawn events decide. ``rate_owner``:
    :func:`partition_nodes`'s partition, if the caller already has it.
    """
    parts = max(1, min(parts, num_nodes))
    if rate_owner is None:
        rate_owner = partition_nodes(num_nodes, edges, rates, parts)
    if parts == 1 or work.events < MIN_EVENTS_PER_NODE * num_nodes:
        return rate_owner
    limit = max(part_work(work, rate_owner, parts))
    rate_length = schedule_length(work, rate_owner, parts)
    roots = sorted({k * num_nodes // ROOTS for k in range(1, ROOTS)} - {0})
    starts = [partition_nodes(num_nodes, edges, rates, parts, root) for root in roots]
    fair = [(rate_length, rate_owner)]
    fair += [
        (schedule_length(work, start, parts), start)
        for start in starts
        if max(part_work(work, start, parts)) <= limit
    ]
    length, best = min(fair, key=lambda scored: scored[0])  # the first of equal lengths
    owner = list(best)
    neighbours: list[set[int]] = [set() for _ in range(num_nodes)]
    for i, j in edges:
        neighbours[i].add(j)
        neighbours[j].add(i)
    while (shorter := _move_one(work, owner, parts, neighbours, length)) is not None:
        length = shorter
    return rate_owner if length > (1 - MIN_GAIN) * rate_length else owner


def _move_one(
    work: DrawnWork, owner: list[int], parts: int, neighbours: list[set[int]], length: float
) -> float | None:
    """Move the boundary node of the busiest part whose move shortens the schedule (now
    ``length``) most without making any part busier than the busiest is, and return the new
    length; None if no move does. Every move strictly shortens the schedule, so the
    refinement ends."""
    loads = part_work(work, owner, parts)
    busiest = loads.index(max(loads))
    if owner.count(busiest) == 1:
        return None
    best, best_move = length, None
    for node in range(len(owner)):
        if owner[node] != busiest:
            continue
        for target in sorted({owner[v] for v in neighbours[node]} - {busiest}):
            owner[node] = target
            if max(part_work(work, owner, parts)) < loads[busiest]:
                length = schedule_length(work, owner, parts)
                if length < best:
                    best, best_move = length, (node, target)
            owner[node] = busiest
    if best_move is None:
        return None
    owner[best_move[0]] = best_move[1]
    return best


@dataclass
class LevelCall:
    """What one part does in one level's call.

    ``imports``: cross events (t, i, j) to apply first, with the partner's node state taken
    from what the partners exported at the end of the previous level; ``events``: local
    events in time order; ``exports``: this part's nodes whose state partners need next;
    ``later``: local events of the level that no export depends on, applied in a second call
    after the exports left, so that partners never wait for them (see :func:`split_cone`).
    How the states travel is the executor's: ``slots`` are the mailbox slots the exports go
    to (none: they are returned as arrays), and the call's last ``fences`` arguments are
    calls it only waits for (see :mod:`flsim.hosts.event_mailbox`).
    """

    imports: list[Event] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    exports: list[int] = field(default_factory=list)
    later: list[Event] = field(default_factory=list)
    slots: list[int] = field(default_factory=list)
    fences: int = 0

    def __bool__(self) -> bool:
        return bool(self.imports or self.events or self.exports or self.later)


def split_cone(call: LevelCall) -> None:
    """Keep in ``events`` only the events the exported states depend on; move the rest to ``later``.

    Walking the level's local events backwards from the exported nodes, an event that
    touches a node still needed is in the cone and makes all its nodes needed. The cone is a
    prefix of every node's events in the level (an event the cone depends on is in it), so
    applying the cone, exporting, then the rest keeps each node's events in time order.
    """
    if not call.exports:
        call.later, call.events = call.events, []
        return
    needed = set(call.exports)
    cone = [False] * len(call.events)
    for index in range(len(call.events) - 1, -1, -1):
        _, i, j = call.events[index]
        if i in needed or j in needed:
            cone[index] = True
            needed.add(i)
            if j >= 0:
                needed.add(j)
    call.later = [e for e, inside in zip(call.events, cone, strict=True) if not inside]
    call.events = [e for e, inside in zip(call.events, cone, strict=True) if inside]


@dataclass
class LevelPlan:
    """Per level, per part, a :class:`LevelCall` (an empty one: the part skips that level),
    and for each part and level the partners whose exports it imports."""

    calls: list[list[LevelCall]]
    senders: list[list[list[int]]]
    cross_events: int


def plan_levels(events: Sequence[Event], owner: Sequence[int], parts: int) -> LevelPlan:
    """Split ``events`` (in global time order) into levels; see the module docstring."""
    node_level: dict[int, int] = {}
    leveled: list[tuple[int, Event, bool]] = []
    top = 0
    for event in events:
        _, i, j = event
        if j < 0:
            level = node_level.get(i, 0)
            node_level[i] = level
            leveled.append((level, event, False))
            continue
        level = max(node_level.get(i, 0), node_level.get(j, 0))
        cross = owner[i] != owner[j]
        level += cross
        node_level[i] = node_level[j] = level
        leveled.append((level, event, cross))
        top = max(top, level)
    calls = [[LevelCall() for _ in range(parts)] for _ in range(top + 1)]
    senders: list[list[set[int]]] = [[set() for _ in range(parts)] for _ in range(top + 1)]
    crossings = 0
    for level, event, cross in leveled:
        _, i, j = event
        if not cross:
            calls[level][owner[i]].events.append(event)
            continue
        crossings += 1
        a, b = owner[i], owner[j]
        calls[level][a].imports.append(event)
        calls[level][b].imports.append(event)
        calls[level - 1][a].exports.append(i)
        calls[level - 1][b].exports.append(j)
        senders[level][a].add(b)
        senders[level][b].add(a)
    for level_calls in calls:
        for call in level_calls:
            split_cone(call)
    ordered = [[sorted(s) for s in level] for level in senders]
    return LevelPlan(calls, ordered, crossings)
