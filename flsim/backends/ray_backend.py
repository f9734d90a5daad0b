"""The Ray backend: a small pool of actors, each hosting many virtual clients (DESIGN.md §4).

* Client c lives on actor ``c % num_actors`` for the whole run, so its persistent state
  (control variates, duals, error buffers) never leaves that actor between rounds.
* Each actor builds the task from the scenario itself: no dataset crosses the network.
* A round's broadcast is put in the object store once (``ray.put``) and every actor reads
  the same reference; replies come back as one list per actor.
* Every remote wait has a timeout (``backend.timeout_s``): no silent hangs.

The results are bit-identical to the local backend because a client's update depends only
on its inputs and its ``("client", id, round)`` generator, and every actor runs torch with
the same thread count and deterministic kernels.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from flsim.algorithms.base import Reply, Tensors
from flsim.backends.base import Backend, WorkerLost
from flsim.config.schema import Scenario
from flsim.engine.host import ClientHost

log = logging.getLogger("flsim.ray")


class _HostActor:
    """The actor body: a :class:`ClientHost` plus introspection for placement tests."""

    def __init__(self, scenario_data: dict[str, Any]) -> None:
        self.host = ClientHost(Scenario.model_validate(scenario_data))

    def run_clients(
        self, message: Tensors, clients: list[int], round_index: int, stream: int | None = None
    ) -> list[Reply]:
        return self.host.run_clients(message, clients, round_index, stream)

    def close(self) -> None:
        self.host.close()

    def export_states(self) -> dict[int, Tensors]:
        return self.host.export_states()

    def import_states(self, states: dict[int, Tensors]) -> None:
        self.host.import_states(states)

    def placement(self) -> dict[str, Any]:
        import ray

        return {"node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}


def init_ray(address: str | None, num_cpus: int | None = None) -> bool:
    """Join ``address`` or start a quiet local instance; returns whether we started it.

    A session that already exists (a test module's, or a ``ray job`` driver's) is reused.
    """
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "logging_level": logging.WARNING,
        "configure_logging": True,
    }
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(num_cpus=num_cpus, **kwargs)
    return True


class RayBackend(Backend):
    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.actors: list[Any] = []
        self._owns_ray = False

    # -- lifecycle ------------------------------------------------------------------------
    def pool_size(self) -> int:
        import ray

        cfg = self.scenario.backend
        if cfg.num_actors is not None:
            size = cfg.num_actors
        else:
            size = int(ray.cluster_resources().get("CPU", 1) // cfg.cpus_per_actor)
        return max(1, min(size, self.scenario.task.num_clients))

    def start(self) -> None:
        import ray

        self._owns_ray = init_ray(self.scenario.backend.address)
        # No automatic restarts: a restarted actor would silently come back with empty client
        # state. The simulation restores it from the last checkpoint instead (see recover).
        # SPREAD places the pool across every node of the cluster rather than packing it.
        self._actor_class = ray.remote(
            num_cpus=self.scenario.backend.cpus_per_actor, max_restarts=0, scheduling_strategy="SPREAD"
        )(_HostActor)
        self.actors = [self._new_actor() for _ in range(self.pool_size())]
        self._get([actor.placement.remote() for actor in self.actors])

    def _new_actor(self) -> Any:
        return self._actor_class.remote(self.scenario.model_dump(mode="json"))

    def recover(self) -> None:
        """Replace every actor that no longer answers; the caller then restores client state."""
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError

        for index, actor in enumerate(self.actors):
            try:
                ray.get(actor.placement.remote(), timeout=self.scenario.backend.timeout_s)
            except (RayActorError, GetTimeoutError):
                log.warning("actor %d was lost; starting a replacement", index)
                ray.kill(actor)
                self.actors[index] = self._new_actor()
        self._get([actor.placement.remote() for actor in self.actors])

    def shutdown(self) -> None:
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError

        # Let each host delete its spilled client state; ray.kill skips Python finalizers.
        try:
            ray.get([actor.close.remote() for actor in self.actors], timeout=self.scenario.backend.timeout_s)
        except (GetTimeoutError, RayActorError):
            log.warning("some actors did not release their client state before shutdown")
        for actor in self.actors:
            ray.kill(actor)
        self.actors = []
        if self._owns_ray and ray.is_initialized():
            ray.shutdown()

    # -- work -----------------------------------------------------------------------------
    def owner(self, client: int) -> int:
        return client % len(self.actors)

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

    def run_clients(
        self, message: Tensors, clients: list[int], round_index: int, stream: int | None = None
    ) -> list[Reply]:
        import ray

        message_ref = ray.put(message)  # one copy in the object store for the whole round
        by_actor: dict[int, list[int]] = {}
        for client in clients:
            by_actor.setdefault(self.owner(client), []).append(client)
        owners = sorted(by_actor)
        refs = [
            self.actors[a].run_clients.remote(message_ref, by_actor[a], round_index, stream) for a in owners
        ]
        replies = {reply.client: reply for batch in self._get(refs) for reply in batch}
        return [replies[client] for client in clients]

    def get_states(self) -> dict[int, Tensors]:
        merged: dict[int, Tensors] = {}
        for states in self._get([actor.export_states.remote() for actor in self.actors]):
            merged.update(states)
        return dict(sorted(merged.items()))

    def put_states(self, states: dict[int, Tensors]) -> None:
        parts: list[dict[int, Tensors]] = [{} for _ in self.actors]
        for client, state in states.items():
            parts[self.owner(client)][client] = state
        self._get([actor.import_states.remote(part) for actor, part in zip(self.actors, parts, strict=True)])

    def describe(self) -> dict[str, Any]:
        """Where the pool runs: recorded in ``summary.json`` so placement can be checked."""
        return {"kind": "ray", "actors": self._get([actor.placement.remote() for actor in self.actors])}


class _NodeActor:
    """The actor body for decentralized nodes: a :class:`NodeHost` over a fixed set of nodes."""

    def __init__(self, scenario_data: dict[str, Any], nodes: list[int]) -> None:
        from flsim.engine.node_host import NodeHost

        self.host = NodeHost(Scenario.model_validate(scenario_data))
        self.nodes = nodes

    def current(self) -> dict[int, Any]:
        return self.host.current(self.nodes)

    def local(self, round_index: int, *inputs: dict[int, Any]) -> tuple[dict[int, Any], list[Any]]:
        merged: dict[int, Any] | None = None
        if inputs:
            merged = {}
            for part in inputs:
                merged.update(part)
        return self.host.local(self.nodes, round_index, merged)

    def mix(self, rows: dict[int, list[tuple[int, float]]], *vector_sets: dict[int, Any]) -> dict[int, Any]:
        from flsim.engine.node_host import NodeHost

        return NodeHost.mix(rows, *vector_sets)

    def finish(self, mixed: dict[int, Any], round_index: int) -> None:
        self.host.finish(mixed, round_index)

    def export_states(self) -> dict[int, Tensors]:
        return self.host.export_states()

    def import_states(self, states: dict[int, Tensors]) -> None:
        self.host.import_states(states)

    def placement(self) -> dict[str, Any]:
        import ray

        return {"node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}


class RayNodeBackend:
    """Decentralized nodes pooled on a few actors (node i on actor i mod A).

    A vector set is a list of object references, one per actor. Gossip passes those
    references to the actors that own the receiving nodes, so vectors move between actors
    through the object store and never through the driver; only evaluation gathers them.
    """

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.actors: list[Any] = []
        self.assignment: list[list[int]] = []
        self._owns_ray = False

    def start(self) -> None:
        import ray

        self._owns_ray = init_ray(self.scenario.backend.address)
        n = self.scenario.task.num_clients
        cfg = self.scenario.backend
        size = cfg.num_actors or int(ray.cluster_resources().get("CPU", 1) // cfg.cpus_per_actor)
        size = max(1, min(size, n))
        self.assignment = [[node for node in range(n) if node % size == a] for a in range(size)]
        self._actor_class = ray.remote(
            num_cpus=cfg.cpus_per_actor, max_restarts=0, scheduling_strategy="SPREAD"
        )(_NodeActor)
        data = self.scenario.model_dump(mode="json")
        self.actors = [self._actor_class.remote(data, nodes) for nodes in self.assignment]
        self._get([actor.placement.remote() for actor in self.actors])

    _get = RayBackend._get

    def current(self) -> list[Any]:
        return [actor.current.remote() for actor in self.actors]

    def local(self, round_index: int, inputs: list[Any] | None) -> tuple[list[Any], list[Any]]:
        pairs = [
            actor.local.options(num_returns=2).remote(round_index, *([inputs[a]] if inputs else []))
            for a, actor in enumerate(self.actors)
        ]
        vectors = [vector_ref for vector_ref, _ in pairs]
        work = [item for batch in self._get([work_ref for _, work_ref in pairs]) for item in batch]
        return vectors, sorted(work, key=lambda w: w.node)

    def mix(self, rows: dict[int, list[tuple[int, float]]], vectors: list[Any]) -> list[Any]:
        return [
            actor.mix.remote({node: rows[node] for node in nodes if node in rows}, *vectors)
            for actor, nodes in zip(self.actors, self.assignment, strict=True)
        ]

    def finish(self, mixed: list[Any], round_index: int) -> None:
        self._get(
            [actor.finish.remote(part, round_index) for actor, part in zip(self.actors, mixed, strict=True)]
        )

    def gather(self, vectors: list[Any]) -> dict[int, Any]:
        merged: dict[int, Any] = {}
        for part in self._get(list(vectors)):
            merged.update(part)
        return dict(sorted(merged.items()))

    def get_states(self) -> dict[int, Tensors]:
        merged: dict[int, Tensors] = {}
        for states in self._get([actor.export_states.remote() for actor in self.actors]):
            merged.update(states)
        return dict(sorted(merged.items()))

    def put_states(self, states: dict[int, Tensors]) -> None:
        parts = [{node: states[node] for node in nodes if node in states} for nodes in self.assignment]
        self._get([actor.import_states.remote(part) for actor, part in zip(self.actors, parts, strict=True)])

    def describe(self) -> dict[str, Any]:
        return {"kind": "ray", "actors": self._get([actor.placement.remote() for actor in self.actors])}

    def shutdown(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor)
        self.actors = []
        if self._owns_ray and ray.is_initialized():
            ray.shutdown()
