"""The backend contract: where batches of independent client work execute (DESIGN.md §4)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from flsim.algorithms.base import Reply, Tensors


class Backend(ABC):
    """Runs batches of client updates. Results come back in the order of ``clients``."""

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def run_clients(
        self, message: Tensors, clients: list[int], round_index: int, stream: int | None = None
    ) -> list[Reply]:
        """Run one batch; ``stream`` (default ``round_index``) keys each client's minibatch draws."""

    @abstractmethod
    def get_states(self) -> dict[int, Tensors]:
        """Every client's persistent state (for checkpoints), keyed by client id."""

    @abstractmethod
    def put_states(self, states: dict[int, Tensors]) -> None: ...

    @abstractmethod
    def shutdown(self) -> None: ...

    def describe(self) -> dict[str, Any]:
        """Facts about where work runs, for ``summary.json``."""
        return {"kind": type(self).__name__}

    def recover(self) -> None:
        """Replace dead workers after :class:`WorkerLost` (their client state is then empty)."""
        raise NotImplementedError(f"{type(self).__name__} cannot recover lost workers")


class WorkerLost(RuntimeError):
    """A worker hosting clients died; its clients' state must be restored from a checkpoint."""
