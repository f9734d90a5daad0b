"""The Ray backend: a small pool of actors, each hosting many virtual clients or nodes (DESIGN.md §4).

* Client (or node) c lives on actor ``c % pool_size`` for the whole run, so its persistent
  state (control variates, duals, error buffers, x_i) never leaves that actor between rounds.
* Each actor builds the task from the scenario itself: no dataset crosses the network.
* A round's broadcast is put in the object store once (``ray.put``) and every actor reads
  the same reference; gossip vectors move between actors as object references.
* Every remote wait has a timeout (``backend.timeout_s``): no silent hangs.
* Actors are generic workers, configured per run. Within one Ray session they are pooled
  and reused by later runs (a sweep, a test module), which saves a process start and a torch
  import per actor per run. A pool lives as long as its Ray session.

The results are bit-identical to the local backend because an update depends only on its
inputs and on generators derived from the seed, and every actor runs torch with the same
thread count and deterministic kernels.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from flsim.algorithms.base import Reply, Tensors
from flsim.backends.base import Backend, WorkerLost
from flsim.config.schema import Scenario

log = logging.getLogger("flsim.ray")


class _Worker:
    """The actor body: hosts either a :class:`ClientHost` or a :class:`NodeHost` for one run."""

    def __init__(self) -> None:
        self.host: Any = None
        self.nodes: list[int] = []

    def configure(self, role: str, scenario_data: dict[str, Any], nodes: list[int]) -> None:
        from flsim.engine.host import ClientHost
        from flsim.engine.node_host import NodeHost

        self.release()
        scenario = Scenario.model_validate(scenario_data)
        if role == "clients":
            self.host = ClientHost(scenario)
        elif role == "nodes":
            self.host = NodeHost(scenario)
        self.nodes = nodes

    def run_events(self, scenario_data: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """A whole event-driven simulation on this actor (the coordinator role)."""
        from flsim.engine.event_driver import run_collected

        return run_collected(scenario_data)

    def release(self) -> None:
        """Drop the run's state (and any spilled client state on disk)."""
        if self.host is not None and hasattr(self.host, "close"):
            self.host.close()
        self.host = None

    # -- clients --------------------------------------------------------------------------
    def run_clients(
        self, message: Tensors, clients: list[int], round_index: int, stream: int | None = None
    ) -> list[Reply]:
        return self.host.run_clients(message, clients, round_index, stream)

    # -- decentralized nodes --------------------------------------------------------------
    def current(self) -> dict[int, Any]:
        return self.host.current(self.nodes)

    def local(self, round_index: int, *inputs: dict[int, Any]) -> tuple[dict[int, Any], list[Any]]:
        merged: dict[int, Any] | None = None
        if inputs:
            merged = {}
            for part in inputs:
                merged.update(part)
        return self.host.local(self.nodes, round_index, merged)

    def mix(
        self, rows: dict[int, list[tuple[int, float]]], stream: int, *vector_sets: dict[int, Any]
    ) -> dict[int, Any]:
        return self.host.mix(rows, stream, *vector_sets)

    def finish(self, mixed: dict[int, Any], round_index: int) -> None:
        self.host.finish(mixed, round_index)

    # -- state and placement --------------------------------------------------------------
    def export_states(self) -> dict[int, Tensors]:
        return self.host.export_states()

    def import_states(self, states: dict[int, Tensors]) -> None:
        self.host.import_states(states)

    def placement(self) -> dict[str, Any]:
        import ray

        return {"node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}


#: Idle workers of the current Ray session, by CPUs per actor (see the module docstring).
_IDLE: dict[tuple[str, float], list[Any]] = {}


def release_idle_workers() -> None:
    """Kill pooled idle actors so that their CPUs are free for Ray tasks (sweeps)."""
    import ray

    for actors in _IDLE.values():
        for actor in actors:
            ray.kill(actor)
    _IDLE.clear()


def _session_key(cpus: float) -> tuple[str, float]:
    import ray

    return (ray.get_runtime_context().get_job_id(), cpus)


def init_ray(address: str | None, num_cpus: int | None = None) -> bool:
    """Join ``address`` or start a quiet local instance; returns whether we started it.

    A session that already exists (a test module's, or a ``ray job`` driver's) is reused.
    """
    import ray

    if ray.is_initialized():
        return False
    _IDLE.clear()  # handles from an earlier session are dead
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "logging_level": logging.WARNING,
        "configure_logging": True,
    }
    if address:
        ray.init(address=address, **kwargs)
    else:
        # "local": always a fresh instance, never a cluster some other process started here.
        ray.init(address="local", num_cpus=num_cpus, **kwargs)
    return True


class _RayPool:
    """Acquires, configures, checks and returns the actors of one run."""

    def __init__(self, scenario: Scenario, role: str, size: int | None = None) -> None:
        self.scenario = scenario
        self.role = role
        self.fixed_size = size
        self.actors: list[Any] = []
        self.assignment: list[list[int]] = []
        self._owns_ray = False

    def _size(self) -> int:
        import ray

        cfg = self.scenario.backend
        size = (
            self.fixed_size
            or cfg.num_actors
            or int(ray.cluster_resources().get("CPU", 1) // cfg.cpus_per_actor)
        )
        return max(1, min(size, self.scenario.task.num_clients))

    def _get(self, refs: list[Any]) -> list[Any]:
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError

        timeout = self.scenario.backend.timeout_s
        try:
            return ray.get(refs, timeout=timeout)
        except GetTimeoutError as exc:
            raise TimeoutError(f"a Ray actor did not answer within backend.timeout_s={timeout}s") from exc
        except RayActorError as exc:
            raise WorkerLost(f"a Ray actor died: {exc}") from exc

    def _new_actor(self) -> Any:
        import ray

        # No automatic restarts: a restarted actor would silently come back with empty state;
        # the simulation restores it from the last checkpoint instead (see ``recover``).
        # SPREAD places the pool across every node of the cluster rather than packing it.
        return ray.remote(
            num_cpus=self.scenario.backend.cpus_per_actor, max_restarts=0, scheduling_strategy="SPREAD"
        )(_Worker).remote()

    def _configure(self, indices: list[int]) -> None:
        data = self.scenario.model_dump(mode="json")
        refs = [self.actors[i].configure.remote(self.role, data, self.assignment[i]) for i in indices]
        self._get(refs)

    def start(self) -> None:
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError

        self._owns_ray = init_ray(self.scenario.backend.address)
        size = self._size()
        n = self.scenario.task.num_clients
        self.assignment = [[c for c in range(n) if c % size == a] for a in range(size)]
        idle = _IDLE.setdefault(_session_key(self.scenario.backend.cpus_per_actor), [])
        while idle and len(self.actors) < size:
            actor = idle.pop()
            try:
                ray.get(actor.placement.remote(), timeout=10)
                self.actors.append(actor)
            except (RayActorError, GetTimeoutError):
                ray.kill(actor)
        self.actors += [self._new_actor() for _ in range(size - len(self.actors))]
        self._configure(list(range(size)))

    def recover(self) -> None:
        """Replace every actor that no longer answers; the caller then restores the state."""
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError

        for index, actor in enumerate(self.actors):
            try:
                ray.get(actor.placement.remote(), timeout=self.scenario.backend.timeout_s)
            except (RayActorError, GetTimeoutError):
                log.warning("actor %d was lost; starting a replacement", index)
                ray.kill(actor)
                self.actors[index] = self._new_actor()
                self._configure([index])

    def shutdown(self) -> None:
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError

        if not ray.is_initialized():
            return
        try:
            self._get([actor.release.remote() for actor in self.actors])
            if not self._owns_ray:
                _IDLE.setdefault(_session_key(self.scenario.backend.cpus_per_actor), []).extend(self.actors)
        except (GetTimeoutError, RayActorError, TimeoutError, WorkerLost):
            log.warning("some actors did not release their state; killing them")
            for actor in self.actors:
                ray.kill(actor)
        self.actors = []
        if self._owns_ray:
            _IDLE.clear()
            ray.shutdown()

    def describe(self) -> dict[str, Any]:
        """Where the pool runs: recorded in ``summary.json`` so placement can be checked."""
        return {"kind": "ray", "actors": self._get([actor.placement.remote() for actor in self.actors])}

    def get_states(self) -> dict[int, Tensors]:
        merged: dict[int, Tensors] = {}
        for states in self._get([actor.export_states.remote() for actor in self.actors]):
            merged.update(states)
        return dict(sorted(merged.items()))

    def put_states(self, states: dict[int, Tensors]) -> None:
        parts = [{c: states[c] for c in owned if c in states} for owned in self.assignment]
        self._get([actor.import_states.remote(part) for actor, part in zip(self.actors, parts, strict=True)])


class RayBackend(_RayPool, Backend):
    """Round-based clients on the pool: one batch of clients per actor per round."""

    def __init__(self, scenario: Scenario) -> None:
        super().__init__(scenario, "clients")

    def owner(self, client: int) -> int:
        return client % len(self.actors)

    def run_clients(
        self, message: Tensors, clients: list[int], round_index: int, stream: int | None = None
    ) -> list[Reply]:
        import ray

        message_ref = ray.put(message)  # one copy in the object store for the whole round
        by_actor: dict[int, list[int]] = {}
        for client in clients:
            by_actor.setdefault(self.owner(client), []).append(client)
        refs = [
            self.actors[a].run_clients.remote(message_ref, by_actor[a], round_index, stream)
            for a in sorted(by_actor)
        ]
        replies = {reply.client: reply for batch in self._get(refs) for reply in batch}
        return [replies[client] for client in clients]


class RayCoordinator(_RayPool):
    """One pooled actor that runs a whole sequential (event-driven) simulation."""

    def __init__(self, scenario: Scenario) -> None:
        super().__init__(scenario, "events", size=1)

    def run_events(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        return self._get([self.actors[0].run_events.remote(self.scenario.model_dump(mode="json"))])[0]


class RayNodeBackend(_RayPool):
    """Decentralized nodes on the pool. A vector set is a list of references, one per actor.

    Gossip hands those references to the actors that own the receiving nodes, so vectors
    move between actors through the object store and never through the driver; only
    evaluation gathers them.
    """

    def __init__(self, scenario: Scenario) -> None:
        super().__init__(scenario, "nodes")

    def current(self) -> list[Any]:
        return [actor.current.remote() for actor in self.actors]

    def local(self, round_index: int, inputs: list[Any] | None) -> tuple[list[Any], list[Any]]:
        pairs = [
            actor.local.options(num_returns=2).remote(round_index, *([inputs[a]] if inputs else []))
            for a, actor in enumerate(self.actors)
        ]
        work = [item for batch in self._get([work_ref for _, work_ref in pairs]) for item in batch]
        return [vector_ref for vector_ref, _ in pairs], sorted(work, key=lambda w: w.node)

    def mix(self, rows: dict[int, list[tuple[int, float]]], vectors: list[Any], stream: int) -> list[Any]:
        return [
            actor.mix.remote({node: rows[node] for node in owned if node in rows}, stream, *vectors)
            for actor, owned in zip(self.actors, self.assignment, strict=True)
        ]

    def finish(self, mixed: list[Any], round_index: int) -> None:
        pairs = zip(self.actors, mixed, strict=True)
        self._get([actor.finish.remote(part, round_index) for actor, part in pairs])

    def gather(self, vectors: list[Any]) -> dict[int, Any]:
        merged: dict[int, Any] = {}
        for part in self._get(list(vectors)):
            merged.update(part)
        return dict(sorted(merged.items()))
