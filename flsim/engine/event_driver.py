"""The event-driven driver: runs an event simulation where the backend kind says, or replays a log.

The simulation itself is host code (:mod:`flsim.hosts.event_host`): event runs are
sequential, so the unit of placement is the whole run, and an
:class:`~flsim.backends.base.EventCoordinator` (chosen in :mod:`flsim.engine.modes`) hosts it.
``time: wall`` runs on Ray in scaled real time (:mod:`flsim.backends.ray_wall_clock`); its
realised event log is then replayed here on the virtual-time engine, deterministically.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np

from flsim.backends.base import EventCoordinator
from flsim.config.errors import ConfigError
from flsim.config.schema import Scenario
from flsim.engine.event_log import check_edges, read_event_log
from flsim.hosts.event_host import EventSimulation, eval_interval, node_state
from flsim.hosts.sinks import Progress, RowSink, Silent, Writer
from flsim.tasks.base import Task

logger = logging.getLogger("flsim")

#: Builds the coordinator of a backend kind (see :mod:`flsim.engine.modes`).
CoordinatorFactory = Callable[[Scenario, Task, Writer, Progress], EventCoordinator]
W = TypeVar("W", bound=RowSink)


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


#: Below this share of the scheduled events a wall-clock run warns (README, wall-clock mode).
WARN_REALISED_FRACTION = 0.9


class WallClockTooSlow(RuntimeError):
    """The machines realised too few of the scheduled events: the run measured the machines'
    lag, not the algorithm (``wall.min_realised_fraction``)."""


def run_wall_clock(scenario: Scenario, task: Task, writer: Writer) -> dict[str, Any]:
    """``time: wall``: run on Ray in scaled real time, then replay the realised event log."""
    from flsim.backends.ray_wall_clock import run_wall

    log, states, placements = run_wall(scenario, writer.run_dir)
    simulation = replay(scenario, task, writer, log)
    rate = _check_realised_rate(scenario, len(log), simulation.scheduled_events)
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
        "wall": {
            "events": len(log),
            **rate,
            "deterministic": False,
            "replay_max_abs_difference": difference,
        },
    }


def _check_realised_rate(scenario: Scenario, realised: int, scheduled: int) -> dict[str, Any]:
    """Realised events against the clocks' schedule: warn below 0.9, fail below the minimum.

    Each actor sleeps its clock's exponential draw, then does the event's work; when the
    work takes longer than the scaled gaps, its clocks fall behind and fewer events happen
    before the horizon. The schedule (same draws, no work) is what virtual time would do.
    """
    fraction = realised / scheduled if scheduled else 1.0
    facts = {"scheduled_events": scheduled, "realised_fraction": fraction}
    spu = scenario.wall.seconds_per_unit
    message = (
        f"wall-clock run realised {realised} of {scheduled} scheduled events ({fraction:.0%}) at "
        f"wall.seconds_per_unit={spu:g}: the actors cannot keep up; raise wall.seconds_per_unit "
        "or give each actor fewer nodes (more actors, more CPUs)"
    )
    if fraction < scenario.wall.min_realised_fraction:
        floor = scenario.wall.min_realised_fraction
        raise WallClockTooSlow(f"{message} (below wall.min_realised_fraction={floor:g})")
    if fraction < WARN_REALISED_FRACTION:
        logger.warning(message)
    return facts


def replay(
    scenario: Scenario, task: Task, writer: RowSink, log: list[tuple[float, str, int, int]]
) -> EventSimulation:
    """Apply a realised event log in time order on the virtual-time engine (deterministic).

    Metrics rows are written on the ``eval.every_time`` grid, as in a virtual-time run.
    Returns the simulation, whose algorithm holds the final state.
    """
    return _apply(EventSimulation(scenario, task, writer, Silent()), scenario, writer, log)


class _OpenOnFirstRow:
    """A row sink that opens the run directory only when the replay writes its first row,
    so that a log refused by :func:`check_edges` leaves no directory behind."""

    def __init__(self, open_writer: Callable[[], RowSink]) -> None:
        self._open = open_writer
        self.writer: RowSink | None = None

    def _target(self) -> RowSink:
        if self.writer is None:
            self.writer = self._open()
        return self.writer

    def append_metrics(self, row: dict[str, Any]) -> None:
        self._target().append_metrics(row)

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        self._target().save_checkpoint(state)

    def truncate_metrics(self, last_round: int) -> None:
        self._target().truncate_metrics(last_round)


def replay_file(scenario: Scenario, task: Task, path: Path, open_writer: Callable[[], W]) -> W:
    """``flsim replay``: check a run's ``events.jsonl`` (untrusted, :mod:`.event_log`), then
    replay it into the writer that ``open_writer`` creates; returns that writer.

    Every check runs before ``open_writer`` is called: a refused log creates no run directory.
    """
    if scenario.budget.time is None:
        raise ConfigError("budget.time", None, "replay needs the time budget of the wall run")
    limit = float(scenario.budget.time) + eval_interval(scenario)
    log = read_event_log(path, task.num_clients, limit)
    sink = _OpenOnFirstRow(open_writer)
    simulation = EventSimulation(scenario, task, sink, Silent())
    check_edges(path, log, (graph.edges for graph in simulation.graphs))
    _apply(simulation, scenario, sink, log)
    assert sink.writer is not None  # the replay always writes its first row
    return cast(W, sink.writer)


def _apply(
    simulation: EventSimulation, scenario: Scenario, writer: RowSink, log: list[tuple[float, str, int, int]]
) -> EventSimulation:
    """The replay proper: apply ``log`` in order, writing rows on the evaluation grid."""
    algorithm, counters = simulation.algorithm, simulation.counters
    every = simulation.every_time
    end = float(scenario.budget.time or (log[-1][0] if log else 0.0))
    schedule = scheduled_times(scenario, simulation, end)
    simulation.scheduled_events = len(schedule)
    writer.append_metrics(_row(simulation, 0.0, schedule))
    next_eval = every
    for t, kind, i, j in log:
        while next_eval <= t:
            counters.round += 1
            writer.append_metrics(_row(simulation, next_eval, schedule))
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
    counters.round += 1
    counters.virtual_time = end
    writer.append_metrics(_row(simulation, end, schedule))
    return simulation


def _row(simulation: EventSimulation, t: float, schedule: np.ndarray) -> dict[str, Any]:
    """A metrics row plus ``realised_fraction``: events applied by ``t`` over those due by ``t``."""
    row = simulation.metrics_row(t)
    due = int(np.searchsorted(schedule, t, side="right"))
    row["realised_fraction"] = simulation.counters.events / due if due else 1.0
    return row


def scheduled_times(scenario: Scenario, simulation: EventSimulation, horizon: float) -> np.ndarray:
    """When the wall run's clocks were due to fire before ``horizon``, in time order.

    The actors draw each clock's gaps from these same streams (seed, 1, node) and
    (seed, 2, edge) in :mod:`flsim.backends.ray_wall_clock`; without any work between draws,
    these are the events a wall run would apply: the virtual rate it is measured against.
    """
    times = [
        _clock_times(np.random.default_rng([scenario.seed, 1, node]), simulation.compute_rate, horizon)
        for node in range(simulation.task.num_clients)
    ]
    times += [
        _clock_times(np.random.default_rng([scenario.seed, 2, edge]), float(rate), horizon)
        for edge, rate in enumerate(simulation.edge_rates)
    ]
    return np.sort(np.concatenate([np.zeros(0), *times]))


def _clock_times(rng: np.random.Generator, rate: float, horizon: float) -> np.ndarray:
    """One clock's due times below ``horizon``: draw by draw, as the actor draws them."""
    times, t = [], 0.0
    while True:
        t += rng.exponential(1.0 / rate)
        if t >= horizon:
            return np.asarray(times)
        times.append(t)
