"""The backend contracts, one per role: where the host code of a run executes.

* :class:`Backend` (the client pool): client hosts and the server core of round-based runs;
* :class:`NodePool`: the node hosts of synchronous decentralized runs;
* :class:`EventCoordinator`: a whole event-driven simulation, in process or on one actor.

Each role has a ``local`` implementation (:mod:`flsim.backends.local`, the reference) and a
``ray`` one (:mod:`flsim.backends.ray_backend`). The drivers in :mod:`flsim.engine` see only
these contracts, and :mod:`flsim.engine.modes` picks the implementation per backend kind.
See docs/architecture.md.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Protocol

from flsim.algorithms.base import Reply, Tensors

if TYPE_CHECKING:
    from flsim.hosts.server import ServerRole


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


class NodePool(Protocol):
    """Hosts the nodes of a synchronous decentralized run (the gossip driver's backend).

    A *vector set* is whatever the pool moves cheaply: ``{node: tensor}`` in process, one
    object reference per actor on Ray. The driver passes vector sets along without looking
    inside, and only :meth:`gather` turns one into tensors.
    """

    def start(self) -> None: ...

    def current(self) -> Any:
        """Every node's current model, as a vector set."""

    def local(self, round_index: int, inputs: Any | None) -> tuple[Any, list[Any]]:
        """The local phase from ``inputs`` (None: the current models): (vector set, node work)."""

    def mix(self, rows: dict[int, list[tuple[int, float]]], vectors: Any, stream: int) -> Any:
        """One gossip step with the mixing ``rows``; ``stream`` keys its random draws."""

    def finish(self, mixed: Any, round_index: int) -> None:
        """Store the mixed vector set as the nodes' models for the next round."""

    def gather(self, vectors: Any) -> dict[int, Any]:
        """A vector set as ``{node: tensor}``, for evaluation."""

    def get_states(self) -> dict[int, Tensors]: ...

    def put_states(self, states: dict[int, Tensors]) -> None: ...

    def describe(self) -> dict[str, Any]: ...

    def recover(self) -> None: ...

    def shutdown(self) -> None: ...


class EventCoordinator(Protocol):
    """Runs a whole event-driven simulation and writes its rows and checkpoints as it goes.

    Event runs are sequential (one heap), so the unit of placement is the whole run: in
    process, or on one Ray actor that streams its rows back.
    """

    def run(self, checkpoint: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
        """(the last metrics row, facts for ``summary.json``: placement and recoveries)."""
