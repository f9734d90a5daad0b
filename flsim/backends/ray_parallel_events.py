"""Event runs on Ray: nodes spread over actors, or one coordinator actor (docs/parallel_events.md).

``backend.event_parallelism`` chooses:

* ``off``: the whole simulation on one coordinator actor (:mod:`flsim.backends.ray_events`);
* ``on``: the nodes are partitioned over ``backend.num_actors`` actors, each an
  :class:`~flsim.hosts.event_parts.EventPart`; the driver draws the event stream with the
  sequential engine's own loop (:class:`~flsim.hosts.event_parallel.ParallelEventSimulation`)
  and submits each stretch between two evaluation times. On one machine that is one call
  per actor, which walks its levels and waits for its partners through shared-memory
  counters (:mod:`flsim.hosts.event_stretch`); across machines it is a graph of actor
  calls, one per level and actor, whose exported node states travel actor to actor by
  object reference, Ray starting a call as soon as its inputs exist;
* ``auto``: measures what an event costs (a few events on the driver's copy of the
  algorithm, state restored afterwards) and what an actor round trip and one exported node
  state cost, and runs in parallel only if the work between two levels, shared by the
  actors, saves more than the level's two messages cost. It logs the figures and the choice,
  and ``summary.json`` records them under ``event_parallelism``.

Rows are computed in the driver at each evaluation time, from every part's rows, and written
as they come; checkpoints are the sequential engine's (either mode resumes the other's). A
lost actor is replaced and the run continues from the last checkpoint, as with the
coordinator, up to ``backend.max_recoveries`` times.
"""

from __future__ import annotations

import logging
import pickle
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from flsim.backends.base import WorkerLost
from flsim.backends.ray_backend import (
    RayCoordinator,
    _RayPool,
    init_ray,
    release_idle_workers,
)
from flsim.backends.ray_events import run_streamed
from flsim.config.schema import Scenario
from flsim.hosts.event_host import EventSimulation
from flsim.hosts.event_mailbox import SlotPlanner, create_mailboxes, remove_mailboxes
from flsim.hosts.event_parallel import (
    ParallelEventSimulation,
    can_run_in_parallel,
    owned_nodes,
    plan_partition,
)
from flsim.hosts.event_partition import LevelCall, LevelPlan
from flsim.hosts.event_stretch import Control, create_control, ordered_stores, plan_stretch
from flsim.hosts.sinks import Progress, RowCollector, Silent, Writer

if TYPE_CHECKING:
    from flsim.tasks.base import Task

log = logging.getLogger("flsim")

#: Levels submitted before the driver waits for the ones submitted a chunk earlier: bounds
#: the objects in flight and makes every wait a bounded one (``backend.timeout_s``).
CHUNK = 64


class RayEventParts(_RayPool):
    """The actors of a parallel event run; actor p hosts the nodes of part p."""

    def __init__(self, scenario: Scenario, owned: list[list[int]]) -> None:
        super().__init__(scenario, "event_part", size=len(owned))
        self.owned = owned

    def _configure(self, indices: list[int]) -> list[Any]:
        self.assignment = self.owned  # the partition, not the pool's round robin
        return super()._configure(indices)

    def abandon(self) -> None:
        """Kill the actors instead of pooling them: after a failed or interrupted run they may
        still hold queued calls, which a later run must not wait behind."""
        import ray

        for actor in self.actors:
            ray.kill(actor)
        self.actors = []

    def call(self, part: int, method: str, *args: Any) -> Any:
        return self.actors[part].part.remote(method, *args)

    def watch(self, refs: list[Any], control: Control) -> None:
        """Until every stretch call in ``refs`` has finished. The first that fails raises its
        error here (a lost actor: :class:`WorkerLost`) after the abort flag is set, so that
        its partners stop waiting for it at once; so does ``backend.timeout_s`` without any
        part publishing progress (a frozen actor)."""
        import ray

        timeout = self.scenario.backend.timeout_s
        pending, progress, since = list(refs), control.progress(), time.monotonic()
        try:
            while pending:
                ready, pending = ray.wait(
                    pending, num_returns=1, timeout=min(1.0, timeout), fetch_local=False
                )
                if ready:
                    self._get(ready)
                if ready or control.progress() != progress:
                    progress, since = control.progress(), time.monotonic()
                elif time.monotonic() - since > timeout:
                    raise TimeoutError(f"a Ray actor did not answer within backend.timeout_s={timeout:g}s")
        except TimeoutError as exc:
            control.abort()
            cause = getattr(exc, "cause", exc)
            raise TimeoutError(
                f"a Ray actor did not answer within backend.timeout_s={timeout:g}s ({cause})"
            ) from None
        except BaseException:
            control.abort()
            raise

    def wait(self, refs: list[Any]) -> None:
        """Until ``refs`` are computed (not fetched), within ``backend.timeout_s``."""
        import ray

        if not refs:
            return
        timeout = self.scenario.backend.timeout_s
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout, fetch_local=False)
        if len(ready) < len(refs):
            raise TimeoutError(f"a Ray actor did not answer within backend.timeout_s={timeout:g}s")


class RayPartExecutor:
    """The :class:`~flsim.hosts.event_parallel.PartExecutor` on :class:`RayEventParts`."""

    def __init__(self, pool: RayEventParts) -> None:
        self.pool = pool
        self.owned = pool.owned
        self.planner: SlotPlanner | None = None
        #: The driver's mapping of the stretches' control area (``None``: per-level calls),
        #: the number of levels run through it so far, and the calls submitted.
        self.control: Control | None = None
        self.base = 0
        self.calls = {"stretch": 0, "level": 0, "sync": 0}

    def _all(self, method: str, *args: Any) -> list[Any]:
        return self.pool._get([self.pool.call(p, method, *args) for p in range(len(self.owned))])

    def reset(self) -> None:
        """Every part back to the start, and the mailboxes set up anew (a replaced actor
        maps fresh ones)."""
        self._all("reset")
        self.planner = None
        if self.control is not None:
            self.control.close()
        self.control, self.base = None, 0
        self._all("attach", 0, None, None)  # fresh ones below, or the object store
        nodes = {actor["node_id"] for actor in self.pool.describe()["actors"]}
        if len(nodes) > 1:  # parts on several machines: states travel through the object store
            return
        layout = self._all("slot_layout")[0]
        paths = create_mailboxes(len(self.owned), layout)
        if paths is None:
            return
        control = create_control(len(self.owned)) if ordered_stores() else None
        try:
            parts = range(len(self.owned))
            self.pool._get([self.pool.call(p, "attach", p, paths, layout, control) for p in parts])
            self.control = None if control is None else Control(control, self.pool.scenario.backend.timeout_s)
        finally:
            # Mapped by every part (and the driver): the memory lives as long as they do.
            remove_mailboxes(paths + ([control] if control is not None else []))
        self.planner = SlotPlanner(len(self.owned), layout.slots())

    @property
    def handover(self) -> str:
        """How node states travel between the parts (recorded in ``summary.json``)."""
        return "object store" if self.planner is None else "shared memory"

    def run_levels(self, plan: LevelPlan) -> None:
        """Submit every level's calls without waiting between levels; an actor runs its calls
        in order, so waiting for each actor's latest call waits for all of them."""
        planner = self.planner
        if planner is not None and not all(
            planner.fits([len(call.exports) for call in calls]) for calls in plan.calls
        ):
            planner = None  # a level exports more states than the mailboxes hold: arrays
        if planner is not None and self.control is not None:
            self._run_stretch(plan, planner, self.control)
            return
        latest = self._submit(plan, planner)
        self.pool.wait(list(latest.values()))
        if planner is not None:
            planner.settled()

    def _run_stretch(self, plan: LevelPlan, planner: SlotPlanner, control: Control) -> None:
        """One call per part for the whole stretch; the parts wait for each other through
        ``control`` (see :mod:`flsim.hosts.event_stretch`)."""
        steps = plan_stretch(plan, planner, self.base)
        self.base += len(plan.calls)
        refs = [self.pool.call(p, "stretch", part) for p, part in enumerate(steps) if part]
        self.calls["stretch"] += len(refs)
        try:
            self.pool.watch(refs, control)
        finally:
            planner.settled()

    def _submit(self, plan: LevelPlan, planner: SlotPlanner | None) -> dict[int, Any]:
        parts = len(self.owned)
        outputs: list[Any] = [None] * parts
        latest: dict[int, Any] = {}
        waited: list[Any] = []
        for level, (calls, senders) in enumerate(zip(plan.calls, plan.senders, strict=True)):
            previous, outputs = outputs, [None] * parts
            heads = [self._head(call, planner, p) for p, call in enumerate(calls)]
            for p, (call, fences) in enumerate(heads):
                if call.imports or call.events or call.exports:
                    incoming = [previous[q] for q in senders[p]]
                    outputs[p] = latest[p] = self.pool.call(p, "level", call, *incoming, *fences)
                    self.calls["level"] += 1
                    for q in senders[p] if planner is not None else ():
                        planner.read_by(q, outputs[p])
            if planner is not None:
                planner.written([call.slots for call, _ in heads])
            for p, call in enumerate(calls):
                if call.later:  # after the exports left: partners do not wait for these
                    latest[p] = self.pool.call(p, "level", LevelCall(events=call.later))
                    self.calls["level"] += 1
            if level % CHUNK == CHUNK - 1:
                self.pool.wait(waited)  # the chunk before this one; this one stays in flight
                waited = list(latest.values())
        return latest

    @staticmethod
    def _head(call: LevelCall, planner: SlotPlanner | None, part: int) -> tuple[LevelCall, list[Any]]:
        """The level's first call of ``part``, with mailbox slots for its exports, and the
        calls it must wait for before it overwrites those slots."""
        if planner is None:
            return replace(call, later=[]), []
        slots, fences = planner.assign(part, len(call.exports))
        return replace(call, later=[], slots=slots, fences=len(fences)), fences

    def run_sync(self, iterations: int) -> None:
        gradients: list[Any] = []
        for index, another in enumerate([True] * iterations + [False]):
            gradients = [self.pool.call(p, "sync", another, *gradients) for p in range(len(self.owned))]
            self.calls["sync"] += len(gradients)
            if index % CHUNK == CHUNK - 1:
                self.pool.wait(gradients)
        self.pool.wait(gradients)

    def models(self, t: float) -> list[np.ndarray]:
        return self._all("models", t)

    def averaged(self) -> list[np.ndarray | None]:
        return self._all("averaged")

    def states(self) -> list[dict[str, np.ndarray]]:
        return self._all("state")

    def load(self, state: dict[str, Any]) -> None:
        import ray

        self._all("load", ray.put(state))


def part_count(scenario: Scenario) -> int:
    """``backend.num_actors``, else the cluster's CPUs per ``cpus_per_actor``; at most N."""
    import ray

    backend = scenario.backend
    size = backend.num_actors or int(ray.cluster_resources().get("CPU", 1) // backend.cpus_per_actor)
    return max(1, min(size, scenario.task.num_clients))


class RayEventRunner:
    """The Ray :class:`~flsim.backends.base.EventCoordinator`: parallel parts or one coordinator."""

    def __init__(self, scenario: Scenario, task: Task, writer: Writer, progress: Progress) -> None:
        self.scenario, self.task, self.writer, self.progress = scenario, task, writer, progress

    def run(self, checkpoint: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
        scenario = self.scenario
        if scenario.backend.event_parallelism == "off":
            return self._coordinator(None, checkpoint, {"mode": "off"})
        owns_ray = init_ray(scenario.backend.address, connect_timeout_s=scenario.backend.connect_timeout_s)
        try:
            return self._choose_and_run(checkpoint)
        finally:
            if owns_ray:
                import ray

                release_idle_workers()
                ray.shutdown()

    def _choose_and_run(self, checkpoint: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
        scenario = self.scenario
        probe = EventSimulation(scenario, self.task, RowCollector(), Silent())
        parts = part_count(scenario)
        # The rate-based cut decides; the drawn-work balancing costs a draw of the first
        # stretch, so it is done only for a run that will have parts.
        _, facts = plan_partition(probe, parts, checkpoint, balance=False)
        facts["setting"] = scenario.backend.event_parallelism
        if not can_run_in_parallel(probe.algorithm) or parts < 2:
            reason = "one actor" if parts < 2 else f"{probe.algorithm.name} has no parallel form"
            if facts["setting"] == "on":
                log.warning("backend.event_parallelism=on: %s; running on one coordinator actor", reason)
            return self._coordinator(None, checkpoint, {**facts, "mode": "off", "reason": reason})
        if facts["setting"] == "auto":
            coordinator = RayCoordinator(scenario)
            coordinator.start()
            try:
                facts.update(measure(probe, coordinator, facts["expected_cross_fraction"]))
                log.info("backend.event_parallelism=auto: %s", describe_choice(facts))
                if facts["mode"] == "off":
                    return self._coordinator(coordinator, checkpoint, facts)
            finally:
                coordinator.shutdown()  # pooled: the parts below reuse its actor
        owner, balanced = plan_partition(probe, parts, checkpoint)  # balanced by the first stretch's draws
        facts.update(balanced, mode="on")
        return self._parallel(owner, checkpoint, facts)

    def _coordinator(
        self, coordinator: RayCoordinator | None, checkpoint: dict[str, Any] | None, facts: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The whole run on one coordinator actor (started here unless given)."""
        own = coordinator is None
        coordinator = coordinator or RayCoordinator(self.scenario)
        try:
            if own:
                coordinator.start()
            final, recoveries = run_streamed(
                coordinator, self.scenario, self.writer, self.progress, checkpoint
            )
            placement = coordinator.describe()
        finally:
            if own:
                coordinator.shutdown()
        return final, {"placement": placement, "recoveries": recoveries, "event_parallelism": facts}

    def _parallel(
        self, owner: list[int], checkpoint: dict[str, Any] | None, facts: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The parts on their actors; a lost actor is replaced and the run restarts from the
        last checkpoint (or from the start), whose rows are written again."""
        scenario = self.scenario
        pool = RayEventParts(scenario, owned_nodes(owner, facts["parts"]))
        recoveries, finished = 0, False
        try:
            pool.start()
            while True:
                executor = RayPartExecutor(pool)
                simulation = ParallelEventSimulation(
                    scenario, self.task, self.writer, self.progress, executor, owner
                )
                try:
                    if checkpoint is not None:
                        simulation.restore(checkpoint)
                    final = simulation.run()
                    break
                except WorkerLost as exc:
                    recoveries += 1
                    if recoveries > scenario.backend.max_recoveries:
                        raise
                    checkpoint = _latest_checkpoint(self.writer)
                    start = "the start" if checkpoint is None else f"virtual time {checkpoint['loop']['t']:g}"
                    log.warning("%s; replacing it and continuing from %s", exc, start)
                    pool.recover()
                    self.writer.truncate_metrics(-1)
            facts["stats"] = simulation.stats.facts()
            facts["stats"]["actor_busy_s"] = executor._all("busy_seconds")
            facts["stats"]["actor_wait_s"] = executor._all("wait_seconds")
            facts["stats"]["handover"] = executor.handover
            facts["stats"]["calls"] = dict(executor.calls)
            finished = True
            return final, {"placement": pool.describe(), "recoveries": recoveries, "event_parallelism": facts}
        finally:
            if not finished:
                pool.abandon()
            pool.shutdown()


def _latest_checkpoint(writer: Writer) -> dict[str, Any] | None:
    checkpoint = writer.load_checkpoint()
    return checkpoint if checkpoint is not None and checkpoint.get("kind") == "events" else None


def measure(probe: EventSimulation, coordinator: RayCoordinator, cross: float) -> dict[str, Any]:
    """The figures ``auto`` decides from, and its decision (``mode``).

    Between two levels the actors share about ``1 / cross`` events (at least: a level
    holds one or more cross events), so running them on k actors saves (1 − 1/k) of that
    work, against two messages per level: a round trip and one exported node state each.
    """
    import ray

    event = event_cost(probe)
    # A synchronous iteration is one level; otherwise about 1 / cross events share one.
    per_level = event if probe.algorithm.synchronous else event / max(cross, 1e-9)
    trips = []
    for _ in range(5):
        start = time.perf_counter()
        coordinator._get([coordinator.actors[0].placement.remote()])
        trips.append(time.perf_counter() - start)
    sample = {name: np.array(getattr(probe.algorithm, name)[0]) for name in _exchanged(probe)}
    start = time.perf_counter()
    ray.get(ray.put(pickle.dumps(sample)))
    transfer = time.perf_counter() - start
    parallel = pays_off(per_level, part_count(probe.scenario), min(trips), transfer)
    return {
        "event_cost_s": event,
        "round_trip_s": min(trips),
        "state_transfer_s": transfer,
        "work_per_level_s": per_level,
        "mode": "on" if parallel else "off",
    }


def pays_off(work_per_level: float, parts: int, round_trip: float, transfer: float) -> bool:
    """Whether k parts save more per level, (1 − 1/k) of its work, than its two messages cost."""
    return work_per_level * (1 - 1 / parts) > 2 * (round_trip + transfer)


def _exchanged(probe: EventSimulation) -> list[str]:
    from flsim.hosts.event_parts import per_node_fields

    fields = probe.algorithm.edge_fields
    return list(fields) if fields is not None else per_node_fields(probe.algorithm)


def event_cost(probe: EventSimulation, samples: int = 8) -> float:
    """Seconds per event (per iteration, synchronous) on the driver, state restored after."""
    algorithm = probe.algorithm
    saved = algorithm.state_dict()
    try:
        start = time.perf_counter()
        if algorithm.synchronous:
            algorithm.step(0)  # type: ignore[attr-defined]
            return time.perf_counter() - start
        n, edges = probe.task.num_clients, probe.edges
        count = min(samples, n)
        for node in range(count):
            algorithm.on_compute(node, 1e-3)
        compute = (time.perf_counter() - start) / count
        start = time.perf_counter()
        for i, j in edges[:samples]:
            algorithm.on_edge(i, j, 1e-3)
        edge = (time.perf_counter() - start) / max(1, min(samples, len(edges)))
        node_rate = n * probe.compute_rate
        share = node_rate / probe.total_rate
        return share * compute + (1 - share) * edge
    finally:
        algorithm.load_state_dict(saved)


def describe_choice(facts: dict[str, Any]) -> str:
    return (
        f"an event costs {facts['event_cost_s'] * 1e3:.3g} ms, an actor round trip "
        f"{facts['round_trip_s'] * 1e3:.3g} ms plus {facts['state_transfer_s'] * 1e3:.3g} ms per node "
        f"state, {facts['expected_cross_fraction']:.1%} of events cross the {facts['parts']} parts "
        f"({facts['cut_edges']} of {facts['edges']} edges cut), a level priced at two round trips "
        f"and two node states -> " + ("parallel parts" if facts["mode"] == "on" else "one coordinator actor")
    )
