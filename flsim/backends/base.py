"""The backend contract: where batches of independent client work execute (docs/architecture.md §4)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

from flsim.algorithms.base import Reply, Tensors

if TYPE_CHECKING:
    from flsim.engine.server import ServerRole


class Backend(ABC):
    """Hosts a run's server role and runs batches of client updates.

    Messages and reply payloads are whatever the backend moves cheaply: tensors in process,
    object references on Ray. The driver passes them along without looking inside; it
    only reads a reply's accounting fields (client, bytes, steps, extras).
    """

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def run_clients(
        self, message: Tensors, clients: list[int], round_index: int, stream: int | None = None
    ) -> list[Reply]:
        """Run one batch; ``stream`` (default ``round_index``) keys each client's minibatch draws.

        Replies come back in the order of ``clients``.
        """

    @abstractmethod
    def server_role(self) -> ServerRole:
        """The run's server (algorithm state, broadcast, aggregation, evaluation); after ``start``."""

    def materialize(self, replies: list[Reply]) -> list[Reply]:
        """The replies with their payloads as tensors, for a checkpoint (identity in process)."""
        return replies

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
