"""The asynchronous driver: superposed Poisson clocks of nodes and edges (ALGORITHMS.md A).

The process is simulated exactly: inter-arrival times are Exp(R) with R = Σ node rates +
Σ λ_ij, and each event is chosen with probability proportional to its clock's rate. All
draws come from one ``("events",)`` stream, drawn in fixed-size blocks, so the trajectory is
a pure function of the seed. Evaluation happens on a virtual-time grid (``eval.every_time``)
at the exact grid times: models are integrated to the grid time without disturbing the state.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from flsim.algorithms.base import REGISTRY, parse_algorithm_config
from flsim.algorithms.events import EventAlgorithm
from flsim.config.schema import Scenario
from flsim.engine.host import initial_model
from flsim.engine.rng import numpy_rng
from flsim.progress import ProgressReporter
from flsim.results.writer import RunWriter
from flsim.tasks.base import Task

BLOCK = 4096


@dataclass
class EventCounters:
    round: int = 0
    virtual_time: float = 0.0
    events: int = 0
    grad_evals: int = 0
    communications: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    wall_time: float = 0.0


class EventSimulation:
    def __init__(self, scenario: Scenario, task: Task, writer: RunWriter, progress: ProgressReporter) -> None:
        from flsim.topology.rates import edge_rates_for

        self.scenario = scenario
        self.task = task
        self.writer = writer
        self.progress = progress
        assert scenario.topology is not None
        rates = edge_rates_for(scenario.topology, task.num_clients, scenario.seed)
        self.edges, self.edge_rates = rates.edges, np.asarray(rates.rates, dtype=float)
        config = parse_algorithm_config(scenario.algorithm)
        cls = REGISTRY[config.name]
        self.algorithm: EventAlgorithm = cls(
            config, task, self.edges, rates.chi1, scenario.seed, initial_model(scenario, task)
        )
        n = task.num_clients
        clock_rates = np.concatenate([np.full(n, config.compute_rate), self.edge_rates])
        self.total_rate = float(clock_rates.sum())
        self.cumulative = np.cumsum(clock_rates) / self.total_rate
        self.rng = numpy_rng(scenario.seed, "events")
        self.counters = EventCounters()
        self.message_bytes = 8 * task.dim  # d float64 values each way per communication (A5)
        self.event_counts = {"gradient": 0, "communication": 0}
        self.every_time = scenario.eval.every_time or (scenario.budget.time or 1.0) / 20

    def _exhausted(self) -> bool:
        budget, c = self.scenario.budget, self.counters
        return (
            (budget.time is not None and c.virtual_time >= budget.time)
            or (budget.gradients is not None and c.grad_evals >= budget.gradients)
            or (budget.communications is not None and c.communications >= budget.communications)
        )

    def metrics_row(self, t: float) -> dict[str, Any]:
        models = self.algorithm.models_at(t)
        average = models.mean(axis=0)
        row: dict[str, Any] = asdict(self.counters)
        row["virtual_time"] = t
        row.update(self.task.evaluate(torch.from_numpy(average), self.scenario.eval.train_loss))
        row["consensus_distance"] = float(((models - average) ** 2).sum(axis=1).mean())
        if self.task.optimum is not None:
            optimum = self.task.optimum.numpy()
            row["mean_sq_dist_to_opt"] = float(((models - optimum) ** 2).sum(axis=1).mean())
            averaged = self.algorithm.averaged_models()
            if averaged is not None:
                row["averaged_sq_dist_to_opt"] = float(((averaged - optimum) ** 2).sum(axis=1).mean())
        row["gradient_events"] = self.event_counts["gradient"]
        row["communication_events"] = self.event_counts["communication"]
        return row

    def _emit(self, t: float) -> dict[str, Any]:
        self.counters.round += 1
        row = self.metrics_row(t)
        self.writer.append_metrics(row)
        return row

    def run(self) -> dict[str, Any]:
        wall_start = time.perf_counter()
        n = self.task.num_clients
        row = self.metrics_row(0.0)
        self.writer.append_metrics(row)
        next_eval = self.every_time
        t = 0.0
        total_hint = self.scenario.budget.time
        self.progress.start(int(np.ceil(total_hint / self.every_time)) if total_hint else 0, 0)
        while not self._exhausted():
            gaps = self.rng.exponential(1.0 / self.total_rate, size=BLOCK)
            choices = np.searchsorted(self.cumulative, self.rng.random(size=BLOCK), side="right")
            for gap, choice in zip(gaps.tolist(), choices.tolist(), strict=True):
                t += gap
                budget_time = self.scenario.budget.time
                while next_eval <= t and (budget_time is None or next_eval <= budget_time):
                    row = self._emit(next_eval)
                    self.progress.advance(self.counters.round, row)
                    next_eval += self.every_time
                self.counters.virtual_time = t
                if budget_time is not None and t >= budget_time:
                    break
                if choice < n:
                    self.algorithm.on_compute(choice, t)
                    self.counters.grad_evals += 1
                    self.event_counts["gradient"] += 1
                else:
                    i, j = self.edges[min(choice - n, len(self.edges) - 1)]
                    self.algorithm.on_edge(i, j, t)
                    self.counters.communications += 1
                    self.event_counts["communication"] += 1
                    self.counters.bytes_up += 2 * self.message_bytes
                    self.counters.bytes_down += 2 * self.message_bytes
                self.counters.events += 1
                if self._exhausted():
                    break
            self.counters.wall_time = time.perf_counter() - wall_start
        end = self.scenario.budget.time if self.scenario.budget.time is not None else t
        self.counters.virtual_time = end
        if row["virtual_time"] < end:
            row = self._emit(end)
        self.progress.stop()
        return row


class RowCollector:
    """A writer stand-in that keeps rows in memory (for a run on a Ray coordinator actor)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def append_metrics(self, row: dict[str, Any]) -> None:
        self.rows.append(row)


def run_collected(scenario_data: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Build and run the whole event simulation where this function executes."""
    import os

    from flsim.engine.host import configure_torch
    from flsim.tasks import build_task

    scenario = Scenario.model_validate(scenario_data)
    configure_torch(scenario.backend.torch_threads)
    collector = RowCollector()
    task = build_task(scenario.task, scenario.seed)
    EventSimulation(scenario, task, collector, ProgressReporter("events", "off")).run()  # type: ignore[arg-type]
    placement: dict[str, Any] = {"pid": os.getpid()}
    try:
        import ray

        if ray.is_initialized():
            placement["node_id"] = ray.get_runtime_context().get_node_id()
    except ImportError:
        pass
    return collector.rows, placement


def run_events(
    scenario: Scenario, task: Task, writer: RunWriter, progress: ProgressReporter
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run an event-driven scenario; returns (last metrics row, placement).

    The event sequence is inherently sequential (each event may touch the state the next one
    reads), so on Ray the whole simulation runs on one coordinator actor process and streams
    nothing until it ends; the rows it returns are written here. Same code, same bits.
    """
    if scenario.backend.kind != "ray":
        import os

        return EventSimulation(scenario, task, writer, progress).run(), {"kind": "local", "pid": os.getpid()}
    from flsim.backends.ray_backend import RayCoordinator

    coordinator = RayCoordinator(scenario)
    coordinator.start()
    try:
        rows, placement = coordinator.run_events()
    finally:
        coordinator.shutdown()
    for row in rows:
        writer.append_metrics(row)
    return rows[-1], {"kind": "ray", "actors": [placement]}
