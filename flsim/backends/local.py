"""The embedded backend: one in-process client host. The reference for every other backend."""

from __future__ import annotations

import os
from typing import Any

from torch import Tensor

from flsim.algorithms.base import Reply, Tensors
from flsim.backends.base import Backend
from flsim.config.schema import Scenario
from flsim.engine.host import ClientHost
from flsim.engine.node_host import NodeHost, NodeWork, Rows
from flsim.tasks.base import Task


class LocalBackend(Backend):
    def __init__(self, scenario: Scenario, task: Task | None = None) -> None:
        self.scenario = scenario
        self.task = task
        self.host: ClientHost | None = None

    def start(self) -> None:
        self.host = ClientHost(self.scenario, self.task)

    def _require_host(self) -> ClientHost:
        if self.host is None:
            raise RuntimeError("backend not started")
        return self.host

    def run_clients(
        self, message: Tensors, clients: list[int], round_index: int, stream: int | None = None
    ) -> list[Reply]:
        return self._require_host().run_clients(message, clients, round_index, stream)

    def get_states(self) -> dict[int, Tensors]:
        return self._require_host().export_states()

    def put_states(self, states: dict[int, Tensors]) -> None:
        self._require_host().import_states(states)

    def describe(self) -> dict[str, Any]:
        return {"kind": "local", "pid": os.getpid()}

    def shutdown(self) -> None:
        if self.host is not None:
            self.host.close()
        self.host = None


class LocalNodeBackend:
    """Decentralized nodes in process. A vector set is a plain ``{node: tensor}`` dict."""

    def __init__(self, scenario: Scenario, task: Task | None = None) -> None:
        self.scenario = scenario
        self.task = task
        self.host: NodeHost | None = None

    def start(self) -> None:
        self.host = NodeHost(self.scenario, self.task)

    def _require_host(self) -> NodeHost:
        if self.host is None:
            raise RuntimeError("backend not started")
        return self.host

    def nodes(self) -> list[int]:
        return list(range(self.scenario.task.num_clients))

    def current(self) -> dict[int, Tensor]:
        return self._require_host().current(self.nodes())

    def local(
        self, round_index: int, inputs: dict[int, Tensor] | None
    ) -> tuple[dict[int, Tensor], list[NodeWork]]:
        return self._require_host().local(self.nodes(), round_index, inputs)

    def mix(self, rows: Rows, vectors: dict[int, Tensor], stream: int) -> dict[int, Tensor]:
        return self._require_host().mix(rows, stream, vectors)

    def finish(self, mixed: dict[int, Tensor], round_index: int) -> None:
        self._require_host().finish(mixed, round_index)

    def gather(self, vectors: dict[int, Tensor]) -> dict[int, Tensor]:
        return vectors

    def get_states(self) -> dict[int, Tensors]:
        return self._require_host().export_states()

    def put_states(self, states: dict[int, Tensors]) -> None:
        self._require_host().import_states(states)

    def describe(self) -> dict[str, Any]:
        return {"kind": "local", "pid": os.getpid()}

    def shutdown(self) -> None:
        self.host = None
