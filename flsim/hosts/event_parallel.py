"""The driver side of a parallel event run (docs/parallel_events.md).

:class:`ParallelEventSimulation` is the sequential :class:`EventSimulation` with its
algorithm replaced by a stand-in that *records* events instead of applying them. The
event stream is therefore drawn centrally, by the very loop of the sequential engine (the
same draws, budgets, graph switches and evaluation grid). Whenever the loop needs the
state (a metrics row at an evaluation time, a checkpoint) the stand-in flushes what it
recorded to the parts, planned into levels by
:func:`~flsim.hosts.event_partition.plan_levels`, and gathers every node's rows. An
evaluation time is thus a global barrier, and the rows and checkpoints are computed from
the same arrays as in a sequential run: they are bit-identical, and a checkpoint of either
mode resumes in the other.

Where the parts run is a :class:`PartExecutor`: :class:`InProcessParts` here (the
reference, and what the tests compare against), Ray actors in
:mod:`flsim.backends.ray_parallel_events`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np

from flsim.algorithms.events import EventAlgorithm, StepCost, SynchronousEventAlgorithm, read_only
from flsim.config.schema import Scenario
from flsim.hosts.event_first_stretch import first_stretch_work
from flsim.hosts.event_host import EventSimulation
from flsim.hosts.event_partition import (
    MIN_EVENTS_PER_NODE,
    Event,
    LevelCall,
    LevelPlan,
    balance_parts,
    cross_fraction,
    cut_edges,
    part_work,
    partition_nodes,
    plan_levels,
)
from flsim.hosts.event_parts import EventPart, NodeStates, merge_states
from flsim.hosts.sinks import Progress, RowSink
from flsim.tasks.base import Task


class PartExecutor(Protocol):
    """Runs the parts of a parallel event run somewhere; ``owned[p]`` lists part p's nodes."""

    owned: list[list[int]]

    def reset(self) -> None:
        """Every part back to the initial state."""

    def run_levels(self, plan: LevelPlan) -> None: ...

    def run_sync(self, iterations: int) -> None:
        """``iterations`` split steps of a synchronous algorithm, in order."""

    def models(self, t: float) -> list[np.ndarray]:
        """Per part: its nodes' models at ``t``."""

    def averaged(self) -> list[np.ndarray | None]:
        """Per part: its nodes' running averages (see ``EventPart.averaged``)."""

    def states(self) -> list[dict[str, np.ndarray]]: ...

    def load(self, state: dict[str, Any]) -> None: ...


def owned_nodes(owner: Sequence[int], parts: int) -> list[list[int]]:
    return [[v for v, p in enumerate(owner) if p == part] for part in range(parts)]


class InProcessParts:
    """Every part in this process, one after the other: the reference executor."""

    def __init__(self, scenario: Scenario, task: Task, owner: Sequence[int], parts: int) -> None:
        self.owned = owned_nodes(owner, parts)
        self.parts = [EventPart(scenario, task, nodes) for nodes in self.owned]

    def reset(self) -> None:
        for part in self.parts:
            part.reset()

    def run_levels(self, plan: LevelPlan) -> None:
        outputs: list[NodeStates] = [{} for _ in self.parts]
        for calls, senders in zip(plan.calls, plan.senders, strict=True):
            previous, outputs = outputs, [{} for _ in self.parts]
            for p, call in enumerate(calls):
                if call.imports or call.events or call.exports:
                    outputs[p] = self.parts[p].level(
                        replace(call, later=[]), *(previous[q] for q in senders[p])
                    )
            for p, call in enumerate(calls):
                if call.later:
                    self.parts[p].level(LevelCall(events=call.later))

    def run_sync(self, iterations: int) -> None:
        gradients: list[dict[int, np.ndarray]] = []
        for another in [True] * iterations + [False]:
            gradients = [part.sync(another, *gradients) for part in self.parts]

    def models(self, t: float) -> list[np.ndarray]:
        return [part.models(t) for part in self.parts]

    def averaged(self) -> list[np.ndarray | None]:
        return [part.averaged() for part in self.parts]

    def states(self) -> list[dict[str, np.ndarray]]:
        return [part.state() for part in self.parts]

    def load(self, state: dict[str, Any]) -> None:
        for part in self.parts:
            part.load(state)


@dataclass
class ParallelStats:
    """What the flushes did: events applied, cross-actor events, level calls, flushes."""

    events: int = 0
    cross_events: int = 0
    levels: int = 0
    flushes: int = 0

    def facts(self) -> dict[str, Any]:
        share = self.cross_events / self.events if self.events else 0.0
        return {**self.__dict__, "cross_fraction": share}


class _Recorder:
    """What both stand-ins share: the executor, the pending work, and gathering the state."""

    def _attach(self, local: EventAlgorithm, executor: PartExecutor, owner: Sequence[int]) -> None:
        self.local, self.executor, self.owner = local, executor, list(owner)
        self.name, self.config, self.num_nodes = local.name, local.config, local.num_nodes
        self.state_fields = local.state_fields
        self.stats = ParallelStats()
        #: Whether the parts have applied work since they last held ``local``'s state (the
        #: start, or a checkpoint loaded into both). Until then ``local`` answers for them
        #: and nothing is gathered: the first row of a run costs no trip to the actors.
        self.applied = False
        #: The gathered N × ... arrays of the last row, reused by the next (see ``_assemble``).
        self.gathered: dict[str, np.ndarray] = {}

    def flush(self) -> None: ...

    def _pristine(self) -> bool:
        self.flush()
        return not self.applied

    def models_at(self, t: float) -> np.ndarray:
        """Every node's model at ``t``, gathered after the pending work (a barrier)."""
        if self._pristine():
            return self.local.models_at(t)
        return self._assemble("models", self.executor.models(t))

    def averaged_models(self) -> np.ndarray | None:
        """Gathered only when asked: ``metrics_row`` needs them only when the optimum is known."""
        if self._pristine():
            return self.local.averaged_models()
        parts = self.executor.averaged()
        return None if parts[0] is None else self._assemble("averaged", parts)  # type: ignore[arg-type]

    def _assemble(self, purpose: str, parts: list[np.ndarray]) -> np.ndarray:
        """One (N × ...) array from every part's rows, in node order, read-only like the
        sequential engine's ``models_at`` view. It is gathered into the same buffer at every
        row (one per purpose): a fresh N × d array of a neural network would cost the row
        its pages again each time (0.1 s for 32 × 190k parameters), for a value that is only
        read until the next row."""
        shape = (self.num_nodes, *parts[0].shape[1:])
        out = self.gathered.get(purpose)
        if out is None or out.shape != shape:
            out = self.gathered[purpose] = np.empty(shape)
        for nodes, rows in zip(self.executor.owned, parts, strict=True):
            out[nodes] = rows
        return read_only(out)

    def state_dict(self) -> dict[str, np.ndarray]:
        if self._pristine():
            return self.local.state_dict()
        return merge_states(self.executor.states(), self.executor.owned, self.local)

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.flush()
        self.local.load_state_dict(state)
        self.executor.load(state)
        self.applied = False


class PartitionedEvents(_Recorder, EventAlgorithm):
    """Stands in for an asynchronous algorithm: events are recorded, then applied by the parts."""

    def __init__(self, local: EventAlgorithm, executor: PartExecutor, owner: Sequence[int]) -> None:
        self._attach(local, executor, owner)
        self.pending: list[Event] = []
        self.parts = len(executor.owned)

    def _setup(self) -> None:  # the parts hold the state
        return None

    def on_compute(self, node: int, t: float) -> None:
        self.pending.append((t, node, -1))

    def on_edge(self, i: int, j: int, t: float) -> None:
        self.pending.append((t, i, j))

    def flush(self) -> None:
        if not self.pending:
            return
        plan = plan_levels(self.pending, self.owner, self.parts)
        self.stats.events += len(self.pending)
        self.stats.cross_events += plan.cross_events
        self.stats.levels += len(plan.calls)
        self.stats.flushes += 1
        self.pending = []
        self.applied = True
        self.executor.run_levels(plan)


class PartitionedSteps(_Recorder, SynchronousEventAlgorithm):
    """Stands in for a synchronous algorithm whose steps split (``splits_steps``)."""

    def __init__(
        self, local: SynchronousEventAlgorithm, executor: PartExecutor, owner: Sequence[int]
    ) -> None:
        self._attach(local, executor, owner)
        self.pending_steps = 0

    def _setup(self) -> None:  # the parts hold the state
        return None

    def step(self, iteration: int) -> StepCost:
        self.pending_steps += 1
        assert isinstance(self.local, SynchronousEventAlgorithm)
        return self.local.account_step()

    def flush(self) -> None:
        if not self.pending_steps:
            return
        self.stats.events += self.pending_steps
        self.stats.levels += self.pending_steps + 1
        self.stats.flushes += 1
        steps, self.pending_steps = self.pending_steps, 0
        self.applied = True
        self.executor.run_sync(steps)


def can_run_in_parallel(algorithm: EventAlgorithm) -> bool:
    """Asynchronous algorithms always; synchronous ones whose steps split."""
    return not algorithm.synchronous or getattr(algorithm, "splits_steps", False)


class ParallelEventSimulation(EventSimulation):
    """The sequential engine's loop, with the algorithm's work done by ``executor``'s parts."""

    def __init__(
        self,
        scenario: Scenario,
        task: Task,
        writer: RowSink,
        progress: Progress,
        executor: PartExecutor,
        owner: Sequence[int],
    ) -> None:
        super().__init__(scenario, task, writer, progress)
        local = self.algorithm
        if not can_run_in_parallel(local):
            raise ValueError(f"{local.name} cannot run its events in parallel")
        executor.reset()
        stand_in: EventAlgorithm
        if isinstance(local, SynchronousEventAlgorithm):
            stand_in = PartitionedSteps(local, executor, owner)
        else:
            stand_in = PartitionedEvents(local, executor, owner)
        self.algorithm = stand_in

    def metrics_row(self, t: float) -> dict[str, Any]:
        """The row, its wall time including the pending events, which run now (the run loop
        reads the clock before it asks for the row, when a sequential run has applied them)."""
        start = time.perf_counter()
        self.algorithm.flush()  # type: ignore[attr-defined]
        self.counters.wall_time += time.perf_counter() - start
        return super().metrics_row(t)

    @property
    def stats(self) -> ParallelStats:
        return self.algorithm.stats  # type: ignore[attr-defined]


def run_graph(simulation: EventSimulation) -> tuple[list[tuple[int, int]], list[float]]:
    """Every graph's edges of the run (a cycle: the union), with their summed rates."""
    rates: dict[tuple[int, int], float] = {}
    for graph in simulation.graphs:
        for (i, j), rate in zip(graph.edges, graph.rates, strict=True):
            key = (min(i, j), max(i, j))
            rates[key] = rates.get(key, 0.0) + rate / len(simulation.graphs)
    edges = sorted(rates)
    return edges, [rates[e] for e in edges]


def plan_partition(
    simulation: EventSimulation, parts: int, checkpoint: dict[str, Any] | None = None, balance: bool = True
) -> tuple[list[int], dict[str, Any]]:
    """The owner of every node for ``parts`` parts, and facts about the cut (for summaries).

    An asynchronous run's parts are balanced by the work of its first stretch (from the
    start, or from ``checkpoint``), drawn ahead from the seed (:func:`balance_parts`), unless
    ``balance`` is false (the rate-based cut alone, for deciding whether to run parts at
    all); a synchronous run's nodes all work alike, so node counts balance it.
    """
    edges, rates = run_graph(simulation)
    n = simulation.task.num_clients
    rate_owner = partition_nodes(n, edges, rates, parts)
    owner, facts = rate_owner, {}
    if balance and not simulation.algorithm.synchronous:
        work = first_stretch_work(simulation, checkpoint)
        owner = balance_parts(n, edges, rates, parts, work, rate_owner)
        facts = {
            "balanced_by": "drawn work" if work.events >= MIN_EVENTS_PER_NODE * n else "rates",
            "first_stretch_events": work.events,
            "drawn_work_shares": _shares(part_work(work, owner, max(owner) + 1)),
            "rate_only_drawn_work_shares": _shares(part_work(work, rate_owner, max(rate_owner) + 1)),
        }
    node_total = n * simulation.compute_rate
    return owner, {
        "parts": max(owner) + 1,
        "part_sizes": [owner.count(p) for p in range(max(owner) + 1)],
        "cut_edges": len(cut_edges(edges, owner)),
        "edges": len(edges),
        "expected_cross_fraction": cross_fraction(edges, rates, owner, node_total),
        **facts,
    }


def _shares(loads: list[float]) -> list[float]:
    total = sum(loads)
    return [load / total if total else 0.0 for load in loads]
