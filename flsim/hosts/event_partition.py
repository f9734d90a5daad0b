"""Parallel event runs, the pure part: which actor owns which node, and in what calls each
actor applies its events (docs/parallel_events.md).

A compute event on node i reads and writes only node i's rows of the algorithm's state, and
an edge event (i, j) only those of i and j. So the sequential engine's result is reproduced
bit for bit by any schedule that applies **each node's events in their global time order**:
every node's rows then see the same operations on the same inputs. Events on disjoint
nodes commute.

:func:`partition_nodes` splits the graph into balanced parts with few cut edges
(Kernighan–Lin refinement of a breadth-first split, edges weighted by their Poisson rates,
so the cut measures the rate of cross-actor events, not their count).

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
    num_nodes: int, edges: Sequence[tuple[int, int]], rates: Sequence[float], parts: int
) -> list[int]:
    """The owning part of every node: ``parts`` balanced parts (sizes differ by at most one).

    A breadth-first order from node 0 is cut into contiguous chunks (connected graphs give
    connected chunks), then every pair of parts is refined by Kernighan–Lin bisection of
    their union, which swaps nodes in pairs (sizes unchanged) while the rate of the cut
    edges falls. Deterministic: the same graph always gives the same partition.
    """
    parts = max(1, min(parts, num_nodes))
    graph = nx.Graph()
    graph.add_nodes_from(range(num_nodes))
    for (i, j), rate in zip(edges, rates, strict=True):
        weight = graph.edges[i, j]["weight"] + rate if graph.has_edge(i, j) else rate
        graph.add_edge(i, j, weight=weight)
    order = _breadth_first_order(graph)
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


def _breadth_first_order(graph: nx.Graph) -> list[int]:
    """Nodes in breadth-first order from the smallest node of each component."""
    seen: set[int] = set()
    order: list[int] = []
    for start in sorted(graph.nodes):
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
