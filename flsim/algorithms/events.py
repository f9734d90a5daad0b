"""Event-driven decentralized algorithms on Poisson clocks (ALGORITHMS.md A).

Each node fires gradient events on its own Poisson clock and each edge fires communication
events on its own (rate λ_ij). The engine (:mod:`flsim.engine.event_driver`) draws the
superposed process and calls ``on_compute(node, t)`` or ``on_edge(i, j, t)``; algorithms keep
their per-node state as one float64 array and never look at the clock otherwise.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, PositiveInt

from flsim.algorithms.base import REGISTRY, AlgorithmConfig
from flsim.algorithms.dadao_ode import DadaoConstants, DadaoFlow
from flsim.engine.rng import torch_rng
from flsim.tasks.base import Task


class EventConfig(AlgorithmConfig):
    """``batch_size: full`` gives deterministic gradients; ``compute_rate`` is each node's clock rate."""

    batch_size: PositiveInt | Literal["full"] = "full"
    compute_rate: float = Field(1.0, gt=0)


class EventAlgorithm(ABC):
    """Base for asynchronous algorithms driven by node and edge clocks (driver: ``events``)."""

    name: ClassVar[str]
    Config: ClassVar[type[EventConfig]] = EventConfig
    mode: ClassVar[str] = "events"

    def __init__(
        self,
        config: EventConfig,
        task: Task,
        edges: list[tuple[int, int]],
        chi1: float,
        seed: int,
        x0: torch.Tensor,
    ) -> None:
        self.config = config
        self.task = task
        self.edges = edges
        self.chi1 = chi1
        self.seed = seed
        self.num_nodes = task.num_clients
        self.grad_events = np.zeros(self.num_nodes, dtype=np.int64)
        self.x0 = x0.detach().to(torch.float64).numpy()

    @classmethod
    def validate_against(cls, config: AlgorithmConfig, scenario: Any) -> None:
        from flsim.config.errors import ConfigError

        if getattr(scenario, "topology", None) is None:
            raise ConfigError(
                "topology", None, f"algorithm {cls.name!r} is decentralized and needs a topology"
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
            generator = torch_rng(self.seed, "client", node, int(self.grad_events[node]))
            index = torch.randperm(len(shard), generator=generator)[: int(batch)]
            features, targets = shard.x[index], shard.y[index]
        self.grad_events[node] += 1
        _, grad = self.task.objective.loss_and_grad(torch.from_numpy(x), features, targets)
        return grad.numpy()

    @abstractmethod
    def on_compute(self, node: int, t: float) -> None: ...

    @abstractmethod
    def on_edge(self, i: int, j: int, t: float) -> None: ...

    @abstractmethod
    def models_at(self, t: float) -> np.ndarray:
        """Every node's model at time t (N × d), without changing the state."""

    def averaged_models(self) -> np.ndarray | None:
        """Running averages of each node's iterates (stochastic gradients), if kept."""
        return None


def register_event(cls: type[EventAlgorithm]) -> type[EventAlgorithm]:
    if cls.name in REGISTRY:
        raise ValueError(f"algorithm {cls.name!r} registered twice")
    REGISTRY[cls.name] = cls  # type: ignore[assignment]
    return cls


class DadaoConfig(EventConfig):
    """L and μ default to the task's (max L_i, min μ_i); give them to override."""

    smoothness: float | None = Field(None, gt=0)
    strong_convexity: float | None = Field(None, gt=0)


@register_event
class DADAO(EventAlgorithm):
    """DADAO, exactly as the official code (A2–A5).

    State per node: (x, x̃, y, ỹ, z, z̃) and the time of its last event (A2); x_i starts at the
    model init, the rest at 0. Between events every node follows dP/dt = M P (A3), applied
    lazily with the exact flow of :class:`DadaoFlow`. A gradient event at i (A4) and a
    communication event on (i, j) (A5) first bring the touched nodes to t, then jump.
    """

    name = "dadao"
    Config = DadaoConfig

    def __init__(self, config: EventConfig, task: Task, edges, chi1, seed, x0) -> None:
        super().__init__(config, task, edges, chi1, seed, x0)
        assert isinstance(config, DadaoConfig)
        smoothness = config.smoothness or max(task.smoothness or [0.0])
        strong = config.strong_convexity or min(task.strong_convexity or [0.0])
        if smoothness <= 0 or strong <= 0:
            from flsim.config.errors import ConfigError

            raise ConfigError(
                "algorithm.strong_convexity", strong, "DADAO needs L-smooth, μ-strongly convex f_i with μ > 0"
            )
        self.constants = DadaoConstants.from_problem(smoothness, strong, chi1)
        self.flow = DadaoFlow(self.constants.ode_matrix())
        dim = self.x0.shape[0]
        self.state = np.zeros((self.num_nodes, 6, dim))
        self.state[:, 0, :] = self.x0
        self.last_event = np.zeros(self.num_nodes)
        self.iterate_sum = np.zeros((self.num_nodes, dim))

    def _advance(self, node: int, t: float) -> None:
        self.state[node] = self.flow(t - self.last_event[node]) @ self.state[node]
        self.last_event[node] = t

    def on_compute(self, node: int, t: float) -> None:
        """(A4) r = ∇f_i(x_i) − ν x_i − ỹ_i; x −= γ r; x̃ −= γ̃ r; ỹ += (δ + δ̃) r."""
        self._advance(node, t)
        c = self.constants
        p = self.state[node]
        residual = self.gradient(node, p[0]) - c.nu * p[0] - p[3]
        p[0] -= c.gamma * residual
        p[1] -= c.gamma_tilde * residual
        p[3] += (c.delta + c.delta_tilde) * residual
        self.iterate_sum[node] += p[0]

    def on_edge(self, i: int, j: int, t: float) -> None:
        """(A5) m = (y_i + z_i) − (y_j + z_j); z_i −= βm, z̃_i −= β̃m, z_j += βm, z̃_j += β̃m."""
        self._advance(i, t)
        self._advance(j, t)
        c = self.constants
        pi, pj = self.state[i], self.state[j]
        message = (pi[2] + pi[4]) - (pj[2] + pj[4])
        pi[4] -= c.beta * message
        pi[5] -= c.beta_tilde * message
        pj[4] += c.beta * message
        pj[5] += c.beta_tilde * message

    def states_at(self, t: float) -> np.ndarray:
        """All six vectors of every node at time t (N × 6 × d), state untouched."""
        out = np.empty_like(self.state)
        for node in range(self.num_nodes):
            out[node] = self.flow(t - self.last_event[node]) @ self.state[node]
        return out

    def models_at(self, t: float) -> np.ndarray:
        return self.states_at(t)[:, 0, :]

    def averaged_models(self) -> np.ndarray | None:
        if self.config.batch_size == "full":
            return None
        counts = np.maximum(self.grad_events, 1)[:, None]
        return self.iterate_sum / counts


@register_event
class AsyncGossipSGD(EventAlgorithm):
    """Randomized pairwise gossip + local SGD: x_i −= η g_i(x_i) on node clocks, and
    x_i = x_j = (x_i + x_j)/2 on edge clocks (the asynchronous D-SGD baseline of A)."""

    name = "async_gossip_sgd"

    def __init__(self, config: EventConfig, task: Task, edges, chi1, seed, x0) -> None:
        super().__init__(config, task, edges, chi1, seed, x0)
        self.models = np.tile(self.x0, (self.num_nodes, 1))
        self.iterate_sum = np.zeros_like(self.models)

    def on_compute(self, node: int, t: float) -> None:
        self.models[node] -= self.config.lr * self.gradient(node, self.models[node])
        self.iterate_sum[node] += self.models[node]

    def on_edge(self, i: int, j: int, t: float) -> None:
        average = 0.5 * (self.models[i] + self.models[j])
        self.models[i] = average
        self.models[j] = average.copy()

    def models_at(self, t: float) -> np.ndarray:
        return self.models.copy()

    def averaged_models(self) -> np.ndarray | None:
        if self.config.batch_size == "full":
            return None
        return self.iterate_sum / np.maximum(self.grad_events, 1)[:, None]
