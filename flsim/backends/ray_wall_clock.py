"""Wall-clock asynchronous mode (``time: wall``, Ray only): real system effects, then a replay.

Every actor owns a set of nodes and runs their Poisson clocks in scaled real time
(``wall.seconds_per_unit`` seconds per unit of virtual time): a gradient event fires on its
node's clock, a communication event on the clock of an edge owned by the actor of its
lower-id end. An edge whose other end lives on another actor is a real asynchronous message:
the initiator locks its node, sends the node's state, and the other actor applies the event
under its own node lock and returns the initiator's new state. Nothing orders these events
but the machines: the run is **not deterministic**.

What it records is the realised event log (``events.jsonl``): every event with the virtual
time at which it was applied. Per-node locks make each node's events happen in time order,
and an event touches only its own nodes, so applying the log in time order on the
virtual-time engine reproduces the wall run exactly; that replay is what writes
``metrics.jsonl`` (``flsim replay RUN_DIR`` does it again, deterministically).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

import numpy as np

from flsim.config.errors import ConfigError
from flsim.config.schema import Scenario
from flsim.hosts.event_host import node_state, set_node_state


class _WallWorker:
    """An asyncio actor: its nodes' and edges' clocks, and the far end of remote edges."""

    def __init__(self, scenario_data: dict[str, Any], index: int, pool_size: int) -> None:
        from flsim.backends.actor_scenario import scenario_from_data
        from flsim.hosts.client_host import configure_torch
        from flsim.hosts.event_host import EventSimulation
        from flsim.hosts.sinks import RowCollector, Silent
        from flsim.tasks import build_task

        scenario = scenario_from_data(scenario_data)  # registers sections, loads plugins
        configure_torch(scenario.backend.torch_threads)
        task = build_task(scenario.task, scenario.seed)
        simulation = EventSimulation(scenario, task, RowCollector(), Silent())
        self.algorithm = simulation.algorithm
        self.edges = simulation.edges
        self.edge_rates = simulation.edge_rates
        self.compute_rate = simulation.compute_rate
        self.scenario = scenario
        self.index = index
        self.pool_size = pool_size
        self.nodes = [node for node in range(task.num_clients) if node % pool_size == index]
        self.locks: dict[int, asyncio.Lock] = {}
        self.log: list[tuple[float, str, int, int]] = []

    async def ready(self) -> int:
        return os.getpid()

    def _lock(self, node: int) -> asyncio.Lock:
        if node not in self.locks:
            self.locks[node] = asyncio.Lock()
        return self.locks[node]

    def _now(self) -> float:
        return (time.time() - self.start) / self.scale

    async def _node_clock(self, node: int, horizon: float) -> None:
        rng = np.random.default_rng([self.scenario.seed, 1, node])  # timing only; runs are not replayable
        while True:
            await asyncio.sleep(rng.exponential(1.0 / self.compute_rate) * self.scale)
            async with self._lock(node):
                t = self._now()
                if t >= horizon:
                    return
                self.algorithm.on_compute(node, t)
                self.log.append((t, "gradient", node, -1))

    async def _edge_clock(self, edge: int, horizon: float) -> None:
        i, j = self.edges[edge]
        rng = np.random.default_rng([self.scenario.seed, 2, edge])
        while True:
            await asyncio.sleep(rng.exponential(1.0 / self.edge_rates[edge]) * self.scale)
            async with self._lock(i):
                if self._now() >= horizon:
                    return
                owner = self.peers[j % self.pool_size]
                if j % self.pool_size == self.index:
                    async with self._lock(j):
                        t = self._now()
                        self.algorithm.on_edge(i, j, t)
                else:
                    new_state, t = await owner.remote_edge.remote(i, j, node_state(self.algorithm, i))
                    set_node_state(self.algorithm, i, new_state)
                self.log.append((t, "communication", i, j))

    async def remote_edge(
        self, i: int, j: int, state_i: dict[str, np.ndarray]
    ) -> tuple[dict[str, Any], float]:
        """The far end of edge (i, j): apply the event on a copy of i and on our own j."""
        async with self._lock(j):
            t = self._now()
            set_node_state(self.algorithm, i, state_i)
            self.algorithm.on_edge(i, j, t)
            return node_state(self.algorithm, i), t

    async def run(self, peers: list[Any], start: float, scale: float, horizon: float) -> dict[str, Any]:
        self.peers, self.start, self.scale = peers, start, scale
        await asyncio.sleep(max(0.0, start - time.time()))
        owned_edges = [e for e, (i, _) in enumerate(self.edges) if i % self.pool_size == self.index]
        tasks = [self._node_clock(node, horizon) for node in self.nodes]
        tasks += [self._edge_clock(edge, horizon) for edge in owned_edges]
        await asyncio.gather(*tasks)
        return {
            "log": self.log,
            "states": {node: node_state(self.algorithm, node) for node in self.nodes},
            "pid": os.getpid(),
        }


def _check_cpus_fit(size: int, scenario: Scenario) -> None:
    """Fail fast when the actors cannot all run at once: wall-clock actors run concurrently.

    Ray would keep the actors that do not fit pending, and the run would wait for them
    until ``startup_timeout_s`` while the others sit idle.
    """
    import ray

    cpus = scenario.backend.cpus_per_actor
    total = float(ray.cluster_resources().get("CPU", 0.0))
    if size * cpus > total:
        raise ConfigError(
            "backend.num_actors",
            scenario.backend.num_actors,
            f"wall-clock mode runs all {size} actors at once: {size} actors × {cpus:g} CPUs "
            f"(backend.cpus_per_actor) = {size * cpus:g} CPUs, but the cluster has {total:g}; "
            "lower backend.num_actors or backend.cpus_per_actor",
        )


def _run_actors(scenario: Scenario, size: int) -> list[dict[str, Any]]:
    """Start the pool, run every actor's clocks to the horizon, and kill every actor after.

    The ``finally`` covers every exit: a timeout, an actor that died, an interrupt. A Ray
    session that outlives the run (a sweep's, a test module's) keeps no actor of ours.
    """
    import ray

    from flsim.backends.ray_backend import plugin_options, user_error

    options = {"num_cpus": scenario.backend.cpus_per_actor, "max_restarts": 0, **plugin_options(scenario)}
    actor_class = ray.remote(**options)(_WallWorker)
    data = scenario.model_dump(mode="json")
    actors: list[Any] = []
    try:
        actors = [actor_class.remote(data, index, size) for index in range(size)]
        ray.get([actor.ready.remote() for actor in actors], timeout=scenario.backend.startup_timeout_s)
        horizon = float(scenario.budget.time or 0.0)
        scale = scenario.wall.seconds_per_unit
        start = time.time() + scenario.wall.start_delay_s
        refs = [actor.run.remote(actors, start, scale, horizon) for actor in actors]
        return ray.get(refs, timeout=scenario.backend.timeout_s + horizon * scale)
    except ray.exceptions.RayTaskError as exc:
        error = user_error(exc)  # bad input found where it is used: exit 2, one line
        if error is None:
            raise
        raise error from None
    finally:
        for actor in actors:
            ray.kill(actor)


def run_wall(
    scenario: Scenario, run_dir: Any
) -> tuple[list[tuple[float, str, int, int]], dict[int, Any], list[Any]]:
    """Run the wall-clock mode on Ray; returns (event log in time order, node states, placements)."""
    import ray

    from flsim.backends.ray_backend import init_ray, release_idle_workers

    owns = init_ray(scenario.backend.address, connect_timeout_s=scenario.backend.connect_timeout_s)
    try:
        release_idle_workers()
        size = max(1, min(scenario.backend.num_actors or 2, scenario.task.num_clients))
        _check_cpus_fit(size, scenario)
        results = _run_actors(scenario, size)
    finally:
        if owns:
            ray.shutdown()
    log = sorted((event for result in results for event in result["log"]), key=lambda e: e[0])
    states = {node: state for result in results for node, state in result["states"].items()}
    with open(f"{run_dir}/events.jsonl", "w") as handle:
        for t, kind, i, j in log:
            handle.write(json.dumps({"t": t, "kind": kind, "i": i, "j": j}) + "\n")
    return log, states, [{"pid": result["pid"]} for result in results]
