"""The server role of a round-based run: the algorithm's server state and everything done with it.

The role owns the O(d) server state (x, SCAFFOLD's c, FedDyn's h, FedAMD's table, ...) and
the downlink channel's public model, and it is the only place where they are read or
written: it builds each broadcast, aggregates replies and evaluates the global model. The
drivers only schedule (who takes part, when a reply arrives, what it cost), so the same
role runs in the driver's process (local backend) or on its own Ray actor, where the
broadcast goes to the client actors and their replies come back to it without passing
through the driver (:class:`flsim.backends.ray_backend.RayServer`).
"""

from __future__ import annotations

from typing import Any, Protocol

from flsim.algorithms.base import Reply, RoundAlgorithm, Tensors
from flsim.config.schema import Scenario
from flsim.hosts.channels import DownlinkChannel
from flsim.hosts.client_host import build_algorithm, initial_model
from flsim.rng import torch_rng
from flsim.tasks import build_task
from flsim.tasks.base import Task


class ServerRole(Protocol):
    """What a driver asks of the server. Messages and replies are opaque handles to the driver:
    tensors in process, object references on Ray."""

    def init_phase(self, clients: list[int]) -> tuple[Any | None, dict[int, int]]: ...

    def finish_init_phase(self, replies: list[Reply]) -> None: ...

    def broadcast(self, round_index: int, clients: list[int]) -> tuple[Any, dict[int, int]]: ...

    def aggregate(self, replies: list[Reply], round_index: int) -> None: ...

    def evaluate(self, train_loss: bool) -> dict[str, Any]: ...

    def export_state(self) -> dict[str, Any]: ...

    def import_state(self, state: dict[str, Any]) -> None: ...


class ServerCore:
    """The server role, in process. Its methods return plain data, so they can run remotely."""

    def __init__(self, scenario: Scenario, task: Task | None = None) -> None:
        self.scenario = scenario
        self.task = task if task is not None else build_task(scenario.task, scenario.seed)
        self.algorithm: RoundAlgorithm = build_algorithm(scenario, self.task)
        self.server: Tensors = self.algorithm.init_server(initial_model(scenario, self.task))
        self.downlink = DownlinkChannel(scenario.compression)

    def init_phase(self, clients: list[int]) -> tuple[Tensors | None, dict[int, int]]:
        """The initial-phase message every client answers before round 0, and its bytes per client."""
        message = self.algorithm.init_phase(self.server)
        if message is None:
            return None, {}
        return message, {client: self.algorithm.bytes_down(message, client) for client in clients}

    def finish_init_phase(self, replies: list[Reply]) -> None:
        self.server = self.algorithm.finish_init_phase(self.server, replies)

    def broadcast(self, round_index: int, clients: list[int]) -> tuple[Tensors, dict[int, int]]:
        """(what ``clients`` receive for ``round_index``, the bytes sent to each of them).

        With a compressed downlink every client receives the tracked public model and the
        bytes are those of one compressed copy (docs/algorithms.md E; :class:`DownlinkChannel`).
        """
        message = self.algorithm.broadcast(self.server, round_index)
        if self.downlink.channel is None:
            return message, {client: self.algorithm.bytes_down(message, client) for client in clients}
        generator = torch_rng(self.scenario.seed, "compression.downlink", 0, round_index)
        received, copy_bytes = self.downlink.send(message, generator)
        return received, dict.fromkeys(clients, copy_bytes)

    def aggregate(self, replies: list[Reply], round_index: int) -> None:
        """The server update from ``replies``, which arrive in client-id order."""
        self.server = self.algorithm.aggregate(self.server, replies, round_index)

    def evaluate(self, train_loss: bool) -> dict[str, Any]:
        return self.task.evaluate(self.algorithm.global_model(self.server), train_loss)

    def export_state(self) -> dict[str, Any]:
        """What a checkpoint keeps of the server: its state and the downlink's public model."""
        return {"server": self.server, "downlink": dict(self.downlink.public)}

    def import_state(self, state: dict[str, Any]) -> None:
        self.server = state["server"]
        self.downlink.public = dict(state.get("downlink", {}))
