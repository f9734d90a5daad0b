"""Event-driven decentralized algorithms on Poisson clocks (docs/algorithms.md A).

Each node fires gradient events on its own Poisson clock and each edge fires communication
events on its own (rate λ_ij). The engine (:mod:`flsim.hosts.event_host`) draws the
superposed process and calls ``on_compute(node, t)`` or ``on_edge(i, j, t)``; algorithms keep
their per-node state as float64 arrays and never look at the clock otherwise.

Synchronous baselines (ADOM+) run in the same driver on a global clock: iteration k ends at
virtual time k / compute_rate, i.e. every node computes one gradient per unit of its clock,
as in the asynchronous methods, so gradients, communications and virtual time stay
comparable across the three algorithms.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, PositiveInt

from flsim.algorithms.base import AlgorithmConfig
from flsim.rng import Streams
from flsim.tasks.base import Task

if TYPE_CHECKING:
    from flsim.topology import EdgeRates


class EventConfig(AlgorithmConfig):
    """``batch_size: full`` gives deterministic gradients; ``compute_rate`` is each node's clock rate.

    ``switch_every``: with ``topology.time_varying: cycle``, the virtual time between graph
    switches. ``None`` is the official DADAO code's 1/χ₁, with χ₁ the worst case over the
    cycle of χ₁(Λ_k / Σλ) (the probability Laplacian L/|E| for uniform rates).
    """

    batch_size: PositiveInt | Literal["full"] = "full"
    compute_rate: float = Field(1.0, gt=0)
    switch_every: float | None = Field(None, gt=0)


class EventAlgorithm(ABC):
    """Base for asynchronous algorithms driven by node and edge clocks (driver: ``events``).

    ``graphs`` is the list of graphs (with their rates) the run cycles through; ``edges`` and
    ``chi1`` are those the algorithm's constants use: the first graph's edges and the worst
    χ₁(Λ) over the cycle (the official DADAO code also takes the worst case).
    """

    name: ClassVar[str]
    Config: ClassVar[type[EventConfig]] = EventConfig
    mode: ClassVar[str] = "events"
    #: Iterations on a global clock (``step``) instead of node and edge clocks.
    synchronous: ClassVar[bool] = False
    #: Gradient events, not local training: nothing for ``client_optimizer.state: persist`` to keep.
    has_local_steps: ClassVar[bool] = False
    #: Attributes that make up the whole state (checkpoints): arrays, copied on save.
    state_fields: ClassVar[tuple[str, ...]] = ("grad_events",)
    #: The per-node fields an edge event reads from its other endpoint (None: every per-node
    #: field). A parallel run ships only these across actors (docs/parallel_events.md).
    edge_fields: ClassVar[tuple[str, ...] | None] = None

    def __init__(
        self,
        config: EventConfig,
        task: Task,
        edges: list[tuple[int, int]],
        chi1: float,
        streams: Streams,
        x0: torch.Tensor,
        graphs: Sequence[EdgeRates] | None = None,
    ) -> None:
        self.config = config
        self.task = task
        self.edges = edges
        self.chi1 = chi1
        self.streams = streams
        self.graphs = list(graphs) if graphs is not None else None
        self.num_nodes = task.num_clients
        self.grad_events = np.zeros(self.num_nodes, dtype=np.int64)
        self.x0 = x0.detach().to(torch.float64).numpy()
        self._setup()

    @abstractmethod
    def _setup(self) -> None:
        """Per-algorithm state, built from the fields above (each algorithm defines it here
        rather than repeating the constructor's signature)."""

    @classmethod
    def validate_against(cls, config: AlgorithmConfig, scenario: Any) -> None:
        from flsim.config.errors import ConfigError

        topology = getattr(scenario, "topology", None)
        if topology is None:
            raise ConfigError(
                "topology", None, f"algorithm {cls.name!r} is decentralized and needs a topology"
            )
        if topology.time_varying not in ("none", "cycle"):
            raise ConfigError(
                "topology.time_varying",
                topology.time_varying,
                f"event-driven algorithm {cls.name!r} supports 'none' or 'cycle' (switch every 1/χ₁)",
            )
        budget = scenario.budget
        if budget.time is None and budget.gradients is None and budget.communications is None:
            raise ConfigError("budget", None, "give budget.time, budget.gradients or budget.communications")

    @classmethod
    def example_scenario(cls, base: dict[str, Any]) -> dict[str, Any]:
        return {
            **base,
            "algorithm": {"name": cls.name},
            "topology": {"kind": "ring"},
            "clients_per_round": None,
            "budget": {"time": 3.0},
            "eval": {"every_time": 1.0},
        }

    def gradient(self, node: int, x: np.ndarray) -> np.ndarray:
        """∇f_i(x) (full batch) or a minibatch gradient from the node's k-th event stream."""
        shard = self.task.clients[node]
        batch = self.config.batch_size
        if batch == "full" or int(batch) >= len(shard):
            features, targets = shard.x, shard.y
        else:
            generator = self.streams.torch("client", node, int(self.grad_events[node]))
            index = torch.randperm(len(shard), generator=generator)[: int(batch)]
            features, targets = shard.x[index], shard.y[index]
        self.grad_events[node] += 1
        _, grad = self.task.objective.loss_and_grad(torch.from_numpy(x), features, targets)
        return grad.numpy()

    @abstractmethod
    def on_compute(self, node: int, t: float) -> None: ...

    @abstractmethod
    def on_edge(self, i: int, j: int, t: float) -> None: ...

    def on_cross_edge(
        self, i: int, j: int, t: float, local: int, remote_rows: Mapping[str, np.ndarray]
    ) -> None:
        """Edge event (i, j) at t on a replica where only node ``local`` (i or j) counts.

        A parallel run calls this for an edge whose other endpoint lives on another actor
        (docs/parallel_events.md): ``remote_rows`` holds that endpoint's ``edge_fields`` rows,
        read-only and possibly views into shared memory valid only during the call. This
        default copies them into the replica and runs :meth:`on_edge`. An override may
        instead read them in place and update only ``local``'s rows, which must come out bit
        for bit as :meth:`on_edge` leaves them; the other endpoint's replica rows may then be
        stale, which is safe because a part only ever reads, returns or exports the rows of
        the nodes it owns, and imports a partner's rows afresh for each cross event.
        """
        remote = j if local == i else i
        for name, value in remote_rows.items():
            getattr(self, name)[remote] = value
        self.on_edge(i, j, t)

    @abstractmethod
    def models_at(self, t: float) -> np.ndarray:
        """Every node's model at time t (N × d), without changing the state. It may be a
        read-only view of the state (see :func:`read_only`), valid until the next event."""

    def averaged_models(self) -> np.ndarray | None:
        """Running averages of each node's iterates (stochastic gradients), if kept."""
        return None

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of every state array, for checkpoints (resumed runs are bit-identical)."""
        return {name: np.array(getattr(self, name), copy=True) for name in self.state_fields}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        for name in self.state_fields:
            setattr(self, name, np.array(state[name], copy=True))


def read_only(array: np.ndarray) -> np.ndarray:
    """A view of ``array`` that cannot be written: what :meth:`EventAlgorithm.models_at`
    returns where the models are the state itself. An evaluation row only reads them, and a
    copy of a neural network's N × d models costs most of a row (fresh pages, 0.1 s for
    32 × 190k parameters); a caller that tried to write through the view fails loudly."""
    view = array.view()
    view.flags.writeable = False
    return view


def problem_constants(
    task: Task, smoothness: float | None, strong: float | None, who: str
) -> tuple[float, float]:
    """(L, μ): the config's, else the task's max L_i and min μ_i; μ > 0 is required (A)."""
    smoothness = smoothness or max(task.smoothness or [0.0])
    strong = strong or min(task.strong_convexity or [0.0])
    if smoothness <= 0 or strong <= 0:
        from flsim.config.errors import ConfigError

        raise ConfigError(
            "algorithm.strong_convexity", strong, f"{who} needs L-smooth, μ-strongly convex f_i with μ > 0"
        )
    return smoothness, strong


@dataclass(frozen=True)
class StepCost:
    """What one synchronous iteration cost: gradient evaluations, edge activations, bytes."""

    gradients: int
    communications: int
    bytes_sent: int


class SynchronousEventAlgorithm(EventAlgorithm):
    """An algorithm whose iterations fire on one global clock (driver: ``events``, sync branch)."""

    synchronous = True
    #: Whether ``step`` splits into :meth:`gradient_points`, the per-node gradients and
    #: :meth:`finish_step`, so that a parallel run spreads the gradients over actors.
    splits_steps: ClassVar[bool] = False

    def on_compute(self, node: int, t: float) -> None:
        raise TypeError(f"{self.name} is synchronous: the driver calls step(), not on_compute()")

    def on_edge(self, i: int, j: int, t: float) -> None:
        raise TypeError(f"{self.name} is synchronous: the driver calls step(), not on_edge()")

    @abstractmethod
    def step(self, iteration: int) -> StepCost:
        """Run iteration ``iteration`` (0-based) and say what it cost."""

    def gradient_points(self) -> np.ndarray:
        """Where each node evaluates its gradient in the next iteration (N × d)."""
        raise NotImplementedError(f"{self.name} does not split its steps")

    def finish_step(self, points: np.ndarray, gradients: np.ndarray) -> StepCost:
        """The rest of the iteration, given every node's gradient at ``points``."""
        raise NotImplementedError(f"{self.name} does not split its steps")

    def account_step(self) -> StepCost:
        """Advance the counters an iteration advances and return its cost, without computing."""
        raise NotImplementedError(f"{self.name} does not split its steps")


def laplacian(num_nodes: int, edges: Sequence[tuple[int, int]]) -> np.ndarray:
    """The unweighted graph Laplacian L = D − A."""
    out = np.zeros((num_nodes, num_nodes))
    for i, j in edges:
        out[i, i] += 1.0
        out[j, j] += 1.0
        out[i, j] -= 1.0
        out[j, i] -= 1.0
    return out
