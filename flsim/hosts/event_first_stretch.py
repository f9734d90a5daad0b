"""The events a run will draw before its first evaluation, drawn ahead of the run.

A parallel event run partitions its nodes before it starts, but the work each node will do
is only known once the Poisson clocks are drawn. Those draws depend on nothing but the seed
and the loop state (the random stream, its current block, the time and the evaluation
grid), so the driver can draw the first stretch now: a copy of the sequential engine's loop
runs with a tally in place of the algorithm, which records events without applying any, and
stops at the first evaluation point. The simulation it was copied from is left untouched.
"""

from __future__ import annotations

import copy
from typing import Any

from flsim.hosts.event_host import BLOCK, EventCounters, EventSimulation
from flsim.hosts.event_partition import DrawnWork, Event
from flsim.hosts.run_loop import TimeGrid
from flsim.rng import numpy_rng

#: Events per node drawn at most: enough to see how the work and the cross events fall, while
#: the balancing (which plans the drawn stream several times) stays a fraction of a second
#: for a long first stretch of cheap events (convex DADAO: 88,818 events took 1.3 s whole).
MAX_EVENTS_PER_NODE = 256


class _Enough(Exception):
    """The tally holds :data:`MAX_EVENTS_PER_NODE` events a node: stop drawing."""


class _Tally:
    """Stands in for an asynchronous algorithm: records the events, counts each node's and
    each edge's, and stops the draw once it holds ``limit`` events."""

    def __init__(self, num_nodes: int, limit: int) -> None:
        self.stream: list[Event] = []
        self.computes = [0] * num_nodes
        self.edges: dict[tuple[int, int], int] = {}
        self.limit = limit

    def on_compute(self, node: int, t: float) -> None:
        self._record((t, node, -1))
        self.computes[node] += 1

    def on_edge(self, i: int, j: int, t: float) -> None:
        self._record((t, i, j))
        key = (min(i, j), max(i, j))
        self.edges[key] = self.edges.get(key, 0) + 1

    def _record(self, event: Event) -> None:
        if len(self.stream) >= self.limit:
            raise _Enough
        self.stream.append(event)


def first_stretch_work(simulation: EventSimulation, checkpoint: dict[str, Any] | None = None) -> DrawnWork:
    """The events of the stretch from the start (or ``checkpoint``'s resume point) to the first
    evaluation point after it, exactly as the sequential engine will draw them (at most
    :data:`MAX_EVENTS_PER_NODE` a node: the stretch's beginning)."""
    probe = copy.copy(simulation)
    tally = _Tally(simulation.task.num_clients, MAX_EVENTS_PER_NODE * simulation.task.num_clients)
    probe.algorithm = tally  # type: ignore[assignment]
    probe.counters = EventCounters()
    probe.rng = numpy_rng(simulation.scenario.seed, "events")
    probe.grid = TimeGrid(simulation.every_time, simulation.scenario.budget.time)
    probe.t, probe.graph_index, probe.block, probe.position = 0.0, 0, ([], []), BLOCK
    if checkpoint is not None:
        probe.restore_loop(checkpoint)
    try:
        for _ in probe._run_events():
            break  # the first evaluation point: the stretch is drawn
    except _Enough:
        pass  # a long stretch: its first MAX_EVENTS_PER_NODE events a node stand for it
    return DrawnWork(tally.stream, tally.computes, tally.edges)
