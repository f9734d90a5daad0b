"""The embedded backend: one in-process host. The reference for every other backend."""

from __future__ import annotations

import os
from typing import Any, Generic, TypeVar

from torch import Tensor

from flsim.algorithms.base import Reply, Tensors
from flsim.backends.base import Backend
from flsim.config.schema import Scenario
from flsim.hosts.client_host import ClientHost
from flsim.hosts.event_host import EventSimulation
from flsim.hosts.node_host import NodeHost, NodeWork, Rows
from flsim.hosts.server import ServerCore
from flsim.hosts.sinks import Progress, RowSink
from flsim.tasks.base import Task

HostT = TypeVar("HostT", ClientHost, NodeHost)


class _InProcess(Generic[HostT]):
    """One host of clients or nodes in this process, sharing the driver's task."""

    host_class: type[HostT]

    def __init__(self, scenario: Scenario, task: Task | None = None) -> None:
        self.scenario = scenario
        self.task = task
        self.host: HostT | None = None

    def start(self) -> None:
        self.host = self.host_class(self.scenario, self.task)

    def _require_host(self) -> HostT:
        if self.host is None:
            raise RuntimeError("backend not started")
        return self.host

    def get_states(self) -> dict[int, Tensors]:
        return self._require_host().export_states()

    def put_states(self, states: dict[int, Tensors]) -> None:
        self._require_host().import_states(states)

    def describe(self) -> dict[str, Any]:
        return {"kind": "local", "pid": os.getpid()}

    def shutdown(self) -> None:
        close = getattr(self.host, "close", None)
        if close is not None:
            close()  # deletes spilled client state, if any
        self.host = None


class LocalBackend(_InProcess[ClientHost], Backend):
    """Round-based clients and their server in process."""

    host_class = ClientHost

    def __init__(self, scenario: Scenario, task: Task | None = None) -> None:
        super().__init__(scenario, task)
        self._server: ServerCore | None = None

    def start(self) -> None:
        super().start()
        self._server = ServerCore(self.scenario, self._require_host().task)

    def server_role(self) -> ServerCore:
        if self._server is None:
            raise RuntimeError("backend not started")
        return self._server

    def run_clients(
        self, message: Tensors, clients: list[int], round_index: int, stream: int | None = None
    ) -> list[Reply]:
        return self._require_host().run_clients(message, clients, round_index, stream)


class LocalNodeBackend(_InProcess[NodeHost]):
    """Decentralized nodes in process. A vector set is a plain ``{node: tensor}`` dict."""

    host_class = NodeHost

    def nodes(self) -> list[int]:
        return list(range(self.scenario.task.num_clients))

    def current(self) -> dict[int, Tensor]:
        return self._require_host().current(self.nodes())

    def local(
        self, round_index: int, inputs: dict[int, Tensor] | None
    ) -> tuple[dict[int, Tensor], list[NodeWork]]:
        return self._require_host().local(self.nodes(), round_index, inputs)

    def mix(self, rows: Rows, vectors: dict[int, Tensor], stream: int) -> dict[int, Tensor]:
        host = self._require_host()
        if host.choco is not None:
            return host.choco_mix(rows, vectors, host.publish(stream, vectors))
        return host.mix(rows, stream, vectors)

    def finish(self, mixed: dict[int, Tensor], round_index: int) -> None:
        self._require_host().finish(mixed, round_index)

    def gather(self, vectors: dict[int, Tensor]) -> dict[int, Tensor]:
        return vectors


class LocalEventCoordinator:
    """An event-driven run in this process: the reference :class:`EventCoordinator`."""

    def __init__(self, scenario: Scenario, task: Task, writer: RowSink, progress: Progress) -> None:
        self.simulation = EventSimulation(scenario, task, writer, progress)

    def run(self, checkpoint: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
        if checkpoint is not None:
            self.simulation.restore(checkpoint)
        return self.simulation.run(), {"placement": {"kind": "local", "pid": os.getpid()}, "recoveries": 0}
