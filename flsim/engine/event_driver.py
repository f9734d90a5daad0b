"""The event-driven driver: runs an event simulation where the backend kind says, or replays a log.

The simulation itself is host code (:mod:`flsim.hosts.event_host`): event runs are
sequential, so the unit of placement is the whole run, and an
:class:`~flsim.backends.base.EventCoordinator` (chosen in :mod:`flsim.engine.modes`) hosts it.
``time: wall`` runs on Ray in scaled real time (:mod:`flsim.backends.ray_wall_clock`); its
realised event log is then replayed here on the virtual-time engine, deterministically.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from flsim.backends.base import EventCoordinator
from flsim.config.schema import Scenario
from flsim.hosts.event_host import EventSimulation, node_state
from flsim.hosts.sinks import Progress, RowSink, Silent, Writer
from flsim.tasks.base import Task

#: Builds the coordinator of a backend kind (see :mod:`flsim.engine.modes`).
CoordinatorFactory = Callable[[Scenario, Task, Writer, Progress], EventCoordinator]


def run_events(
    scenario: Scenario, task: Task, writer: Writer, progress: Progress, coordinator: CoordinatorFactory
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run an event-driven scenario; returns (last metrics row, facts for ``summary.json``).

    A checkpoint found in the run directory (only ``flsim.resume`` can leave one there:
    ``flsim.run`` refuses a directory that holds a run) is restored first.
    """
    checkpoint = writer.load_checkpoint()
    if checkpoint is not None and checkpoint.get("kind") != "events":
        checkpoint = None
    return coordinator(scenario, task, writer, progress).run(checkpoint)


def run_wall_clock(scenario: Scenario, task: Task, writer: Writer) -> dict[str, Any]:
    """``time: wall``: run on Ray in scaled real time, then replay the realised event log."""
    from flsim.backends.ray_wall_clock import run_wall

    log, states, placements = run_wall(scenario, writer.run_dir)
    simulation = replay(scenario, task, writer, log)
    difference = max(
        (
            float(np.max(np.abs(node_state(simulation.algorithm, node)[name] - value)))
            for node, state in states.items()
            for name, value in state.items()
        ),
        default=0.0,
    )
    return {
        "placement": {"kind": "ray", "actors": placements},
        "wall": {"events": len(log), "deterministic": False, "replay_max_abs_difference": difference},
    }


def replay(
    scenario: Scenario, task: Task, writer: RowSink, log: list[tuple[float, str, int, int]]
) -> EventSimulation:
    """Apply a realised event log in time order on the virtual-time engine (deterministic).

    Metrics rows are written on the ``eval.every_time`` grid, as in a virtual-time run.
    Returns the simulation, whose algorithm holds the final state.
    """
    simulation = EventSimulation(scenario, task, writer, Silent())
    algorithm, counters = simulation.algorithm, simulation.counters
    every = simulation.every_time
    writer.append_metrics(simulation.metrics_row(0.0))
    next_eval = every
    for t, kind, i, j in log:
        while next_eval <= t:
            counters.round += 1
            writer.append_metrics(simulation.metrics_row(next_eval))
            next_eval += every
        counters.virtual_time = t
        if kind == "gradient":
            algorithm.on_compute(i, t)
            counters.grad_evals += 1
        else:
            algorithm.on_edge(i, j, t)
            counters.communications += 1
            counters.bytes_up += 2 * simulation.message_bytes
            counters.bytes_down += 2 * simulation.message_bytes
        counters.events += 1
    end = float(scenario.budget.time or (log[-1][0] if log else 0.0))
    counters.round += 1
    counters.virtual_time = end
    writer.append_metrics(simulation.metrics_row(end))
    return simulation
