"""One actor's share of a parallel event run (docs/parallel_events.md).

An :class:`EventPart` holds a full replica of the event algorithm, built from the scenario
exactly as the sequential engine builds it; only the rows of the nodes it *owns* are
authoritative. It applies the calls that :func:`~flsim.hosts.event_partition.plan_levels`
gives it. For a cross event (i, j) both parts copy the partner node's exported rows into
their replica and run the same ``on_edge(i, j, t)``, so both compute the same new rows;
each keeps its own node's and ignores the other's. An algorithm may shortcut that with its
``on_cross_edge`` (read the partner's rows in place, update only its own node's): the rows
of nodes a part does not own are never read, returned or exported, so they may go stale.

Synchronous algorithms (ADOM+) split each iteration: every part evaluates its own nodes'
gradients at the common gradient points, then, given every part's gradients, every part
finishes the iteration on its whole replica (the same arithmetic on the same arrays as the
sequential engine, so every replica stays identical to it).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from flsim.algorithms.events import EventAlgorithm, SynchronousEventAlgorithm
from flsim.config.schema import Scenario
from flsim.hosts.event_mailbox import Mailboxes, SlotLayout
from flsim.hosts.event_partition import Event, LevelCall
from flsim.hosts.event_stretch import READ, WRITTEN, Control, StretchStep
from flsim.hosts.sinks import RowCollector, Silent
from flsim.tasks.base import Task

#: Exported node states: the rows themselves, or where they lie in a mailbox (part, slot).
NodeStates = dict[int, dict[str, np.ndarray] | tuple[int, int]]


def build_event_algorithm(scenario: Scenario, task: Task) -> EventAlgorithm:
    """The algorithm in its initial state, built as the sequential engine builds it."""
    from flsim.hosts.event_host import EventSimulation

    return EventSimulation(scenario, task, RowCollector(), Silent()).algorithm


def per_node_fields(algorithm: EventAlgorithm) -> list[str]:
    """The state fields with one row per node (the others are shared by all nodes)."""
    n = algorithm.num_nodes
    fields = []
    for name in algorithm.state_fields:
        array = getattr(algorithm, name)
        if isinstance(array, np.ndarray) and array.ndim and array.shape[0] == n:
            fields.append(name)
    return fields


class EventPart:
    """A replica of the algorithm whose ``owned`` rows this part keeps up to date."""

    def __init__(self, scenario: Scenario, task: Task, owned: Sequence[int]) -> None:
        self.scenario, self.task = scenario, task
        self.owned = list(owned)
        self.owned_set = set(self.owned)
        self.touched = True
        self.mailboxes: Mailboxes | None = None
        self.control: Control | None = None
        self.reset()

    def reset(self) -> None:
        """Back to the initial state (a run that starts without a checkpoint). Building the
        algorithm can take seconds (SDP rates), so an untouched replica is kept as it is."""
        if not self.touched:
            return
        self.touched = False
        self.algorithm = build_event_algorithm(self.scenario, self.task)
        fields = self.algorithm.edge_fields
        self.exchanged = list(fields) if fields is not None else per_node_fields(self.algorithm)
        self.points: np.ndarray | None = None
        self.failure: str | None = None
        #: Seconds spent applying events and steps (the benchmark's busy share of an actor),
        #: and, in stretches, waiting for partners.
        self.busy = self.waited = 0.0

    def close(self) -> None:
        """Unmap the mailboxes (the actor releases this part)."""
        self.attach(0, None, None)

    def _touch(self) -> None:
        self._check()
        self.touched = True

    def _check(self) -> None:
        """Calls are queued without waiting; after a failed one, every later call fails too,
        so the error reaches the driver at its next gather instead of corrupting the run."""
        if self.failure is not None:
            raise RuntimeError(f"an earlier call of this event part failed: {self.failure}")

    def _rows(self, node: int) -> dict[str, np.ndarray]:
        return {name: getattr(self.algorithm, name)[node] for name in self.exchanged}

    def _export(self, node: int) -> dict[str, np.ndarray]:
        return {name: np.array(row, copy=True) for name, row in self._rows(node).items()}

    def slot_layout(self) -> SlotLayout:
        """What one exported node state occupies in a mailbox slot (every node's rows have
        the same shapes; node 0's are in every replica)."""
        return SlotLayout.of(self._rows(0))

    def attach(
        self, index: int, paths: list[str] | None, layout: SlotLayout | None, control: str | None = None
    ) -> None:
        """Hand states over through the mailboxes at ``paths`` (this part's is ``paths[index]``),
        or, given ``None``, as arrays in the call results; with a ``control`` file, whole
        stretches run in one call (:meth:`stretch`)."""
        if self.mailboxes is not None:
            self.mailboxes.close()
        if self.control is not None:
            self.control.close()
        self.mailboxes = None if paths is None or layout is None else Mailboxes(index, paths, layout)
        self.control = None
        if control is not None and self.mailboxes is not None:
            self.control = Control(control, self.scenario.backend.timeout_s)

    @contextlib.contextmanager
    def _working(self) -> Iterator[None]:
        """Around every call that applies events: a failure is latched (see :meth:`_check`),
        and the call's seconds are counted as busy, less those spent waiting for partners."""
        self._touch()
        start = time.perf_counter()
        waited = self.control.waited if self.control is not None else 0.0
        try:
            yield
        except Exception as exc:
            self.failure = repr(exc)
            raise
        finally:
            wait = (self.control.waited if self.control is not None else 0.0) - waited
            self.waited += wait
            self.busy += time.perf_counter() - start - wait

    def level(self, call: LevelCall, *incoming: Any) -> NodeStates:
        """Apply one level's call; returns the exported node states (see ``plan_levels``).
        The last ``call.fences`` arguments are only waited for (see ``SlotPlanner``)."""
        with self._working():
            return self._level(call, incoming[: len(incoming) - call.fences])

    def _level(self, call: LevelCall, incoming: tuple[NodeStates, ...]) -> NodeStates:
        received: NodeStates = {}
        for states in incoming:
            received.update(states)
        self._import(call.imports, received)
        self._apply(call.events)
        return self._send(call)

    def _import(self, imports: list[Event], received: NodeStates) -> None:
        """Apply the cross events, each given its partner node's exported rows (views of the
        mailbox slot, or the arrays received) through ``on_cross_edge``, which by default
        copies them into the replica and runs ``on_edge``; an algorithm may read them in
        place and update only the owned endpoint."""
        on_cross_edge = self.algorithm.on_cross_edge
        for t, i, j in imports:
            local, remote = (i, j) if i in self.owned_set else (j, i)
            rows = received[remote]
            if isinstance(rows, tuple):
                assert self.mailboxes is not None
                rows = self.mailboxes.read(rows)
            on_cross_edge(i, j, t, local, rows)

    def _apply(self, events: list[Event]) -> None:
        on_compute, on_edge = self.algorithm.on_compute, self.algorithm.on_edge
        for t, i, j in events:
            if j < 0:
                on_compute(i, t)
            else:
                on_edge(i, j, t)

    def _send(self, call: LevelCall) -> NodeStates:
        """The exports: copied into their mailbox slots (their addresses), or as arrays."""
        if call.slots:
            assert self.mailboxes is not None
            mailboxes = self.mailboxes
            return {
                node: mailboxes.write(slot, self._rows(node))
                for node, slot in zip(call.exports, call.slots, strict=True)
            }
        return {node: self._export(node) for node in call.exports}

    def stretch(self, steps: list[StretchStep]) -> None:
        """Apply a whole stretch of levels, waiting for partners through the control area:
        a level's imports once their senders have published them, its exports once every
        reader of their slots' previous content has published that it read it (see
        :mod:`flsim.hosts.event_stretch`). The same events in the same order as :meth:`level`."""
        control = self.control
        assert control is not None and self.mailboxes is not None
        with self._working():
            for step in steps:
                self._step(step, control, self.mailboxes.index)

    def _step(self, step: StretchStep, control: Control, index: int) -> None:
        control.wait(WRITTEN, step.after)
        self._import(step.call.imports, step.sources)  # type: ignore[arg-type]
        control.publish(READ, index, step.level + 1)
        self._apply(step.call.events)
        control.wait(READ, step.free)
        self._send(step.call)
        control.publish(WRITTEN, index, step.level + 1)
        self._apply(step.later)

    def sync(self, another: bool, *gradients: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
        """Finish the previous iteration with every part's ``gradients`` (if given), then,
        if ``another``, evaluate this part's gradients of the next iteration."""
        with self._working():
            return self._sync(another, gradients)

    def _sync(self, another: bool, gradients: tuple[dict[int, np.ndarray], ...]) -> dict[int, np.ndarray]:
        algorithm = self.algorithm
        assert isinstance(algorithm, SynchronousEventAlgorithm)
        if gradients:
            assert self.points is not None
            merged: dict[int, np.ndarray] = {}
            for part in gradients:
                merged.update(part)
            stacked = np.stack([merged[node] for node in range(algorithm.num_nodes)])
            algorithm.finish_step(self.points, stacked)
            self.points = None
        if not another:
            return {}
        self.points = algorithm.gradient_points()
        return {node: algorithm.gradient(node, self.points[node]) for node in self.owned}

    def models(self, t: float) -> np.ndarray:
        """The owned nodes' models at ``t``."""
        self._check()
        return self.algorithm.models_at(t)[self.owned]

    def averaged(self) -> np.ndarray | None:
        """The owned nodes' running averages of their iterates, if the algorithm keeps them."""
        self._check()
        averaged = self.algorithm.averaged_models()
        return None if averaged is None else averaged[self.owned]

    def busy_seconds(self) -> float:
        return self.busy

    def wait_seconds(self) -> float:
        """Seconds this part's stretches spent waiting for partners' counters."""
        return self.waited

    def state(self) -> dict[str, np.ndarray]:
        """The owned rows of every per-node field, and every shared field whole."""
        self._check()
        state = self.algorithm.state_dict()
        for name in per_node_fields(self.algorithm):
            state[name] = state[name][self.owned]
        return state

    def load(self, state: dict[str, Any]) -> None:
        self.touched = True
        self.algorithm.load_state_dict(state)
        self.points = None


def merge_states(
    parts: Sequence[dict[str, np.ndarray]], owned: Sequence[Sequence[int]], template: EventAlgorithm
) -> dict[str, np.ndarray]:
    """The whole state from every part's :meth:`EventPart.state` (shared fields: part 0's)."""
    merged = dict(parts[0])
    for name in per_node_fields(template):
        full = np.array(getattr(template, name), copy=True)
        for state, nodes in zip(parts, owned, strict=True):
            full[list(nodes)] = state[name]
        merged[name] = full
    return merged
