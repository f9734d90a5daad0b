"""Event-driven decentralized algorithms on Poisson clocks (docs/algorithms.md A).

Each node fires gradient events on its own Poisson clock and each edge fires communication
events on its own (rate λ_ij). The engine (:mod:`flsim.engine.event_driver`) draws the
superposed process and calls ``on_compute(node, t)`` or ``on_edge(i, j, t)``; algorithms keep
their per-node state as float64 arrays and never look at the clock otherwise.

Synchronous baselines (ADOM+) run in the same driver on a global clock: iteration k ends at
virtual time k / compute_rate, i.e. every node computes one gradient per unit of its clock,
as in the asynchronous methods, so gradients, communications and virtual time stay
comparable across the three algorithms.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, PositiveInt

from flsim.algorithms.base import REGISTRY, AlgorithmConfig
from flsim.algorithms.dadao_ode import DadaoConstants, DadaoFlow
from flsim.rng import numpy_rng, torch_rng
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
    #: Attributes that make up the whole state (checkpoints): arrays, copied on save.
    state_fields: ClassVar[tuple[str, ...]] = ("grad_events",)

    def __init__(
        self,
        config: EventConfig,
        task: Task,
        edges: list[tuple[int, int]],
        chi1: float,
        seed: int,
        x0: torch.Tensor,
        graphs: Sequence[EdgeRates] | None = None,
    ) -> None:
        self.config = config
        self.task = task
        self.edges = edges
        self.chi1 = chi1
        self.seed = seed
        self.graphs = list(graphs) if graphs is not None else None
        self.num_nodes = task.num_clients
        self.grad_events = np.zeros(self.num_nodes, dtype=np.int64)
        self.x0 = x0.detach().to(torch.float64).numpy()

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

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of every state array, for checkpoints (resumed runs are bit-identical)."""
        return {name: np.array(getattr(self, name), copy=True) for name in self.state_fields}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        for name in self.state_fields:
            setattr(self, name, np.array(state[name], copy=True))


def register_event(cls: type[EventAlgorithm]) -> type[EventAlgorithm]:
    if cls.name in REGISTRY:
        raise ValueError(f"algorithm {cls.name!r} registered twice")
    REGISTRY[cls.name] = cls  # type: ignore[assignment]
    return cls


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

    Running average (stochastic gradients), as the official code: every event that touches
    node i adds x_i as stored before the event (its value after i's previous event, without
    the flow) to i's sum, and the average is sum / number of such events.
    """

    name = "dadao"
    Config = DadaoConfig
    state_fields = ("grad_events", "state", "last_event", "iterate_sum", "iterate_count")

    def __init__(
        self,
        config: EventConfig,
        task: Task,
        edges: list[tuple[int, int]],
        chi1: float,
        seed: int,
        x0: torch.Tensor,
        graphs: Sequence[EdgeRates] | None = None,
    ) -> None:
        super().__init__(config, task, edges, chi1, seed, x0, graphs)
        assert isinstance(config, DadaoConfig)
        smoothness, strong = problem_constants(task, config.smoothness, config.strong_convexity, "DADAO")
        self.constants = DadaoConstants.from_problem(smoothness, strong, chi1)
        self.flow = DadaoFlow(self.constants.ode_matrix())
        dim = self.x0.shape[0]
        self.state = np.zeros((self.num_nodes, 6, dim))
        self.state[:, 0, :] = self.x0
        self.last_event = np.zeros(self.num_nodes)
        self.iterate_sum = np.zeros((self.num_nodes, dim))
        self.iterate_count = np.zeros(self.num_nodes, dtype=np.int64)
        self._average = config.batch_size != "full"
        # Hot-path copies of the flow's factorisation (A3) and of the jump constants (A4, A5).
        self._rates, self._basis = self.flow.rates, self.flow.basis
        c = self.constants
        self._nu, self._gamma, self._gamma_tilde = c.nu, c.gamma, c.gamma_tilde
        self._delta_sum, self._beta, self._beta_tilde = c.delta + c.delta_tilde, c.beta, c.beta_tilde

    def _advance(self, node: int, t: float) -> np.ndarray:
        """Bring node i to time t with the exact flow (A3); returns its (6 × d) state row."""
        p = self.state[node]
        if self._average:
            self.iterate_sum[node] += p[0]
            self.iterate_count[node] += 1
        dt = t - self.last_event[node]
        self.last_event[node] = t
        flow = (np.exp(self._rates * dt).view(np.float64) @ self._basis).reshape(6, 6)
        p[...] = flow @ p
        return p

    def on_compute(self, node: int, t: float) -> None:
        """(A4) r = ∇f_i(x_i) − ν x_i − ỹ_i; x −= γ r; x̃ −= γ̃ r; ỹ += (δ + δ̃) r."""
        p = self._advance(node, t)
        x = p[0]
        residual = self.gradient(node, x)
        residual -= self._nu * x
        residual -= p[3]
        x -= self._gamma * residual
        p[1] -= self._gamma_tilde * residual
        p[3] += self._delta_sum * residual

    def on_edge(self, i: int, j: int, t: float) -> None:
        """(A5) m = (y_i + z_i) − (y_j + z_j); z_i −= βm, z̃_i −= β̃m, z_j += βm, z̃_j += β̃m."""
        pi = self._advance(i, t)
        pj = self._advance(j, t)
        message = pi[2] + pi[4]
        message -= pj[2]
        message -= pj[4]
        step = self._beta * message
        pi[4] -= step
        pj[4] += step
        message *= self._beta_tilde
        pi[5] -= message
        pj[5] += message

    def states_at(self, t: float) -> np.ndarray:
        """All six vectors of every node at time t (N × 6 × d), state untouched."""
        out = np.empty_like(self.state)
        for node in range(self.num_nodes):
            out[node] = self.flow(t - self.last_event[node]) @ self.state[node]
        return out

    def models_at(self, t: float) -> np.ndarray:
        return self.states_at(t)[:, 0, :]

    def averaged_models(self) -> np.ndarray | None:
        if not self._average:
            return None
        return self.iterate_sum / np.maximum(self.iterate_count, 1)[:, None]


@register_event
class AsyncGossipSGD(EventAlgorithm):
    """Randomized pairwise gossip + local SGD: x_i −= η g_i(x_i) on node clocks, and
    x_i = x_j = (x_i + x_j)/2 on edge clocks (the asynchronous D-SGD baseline of A)."""

    name = "async_gossip_sgd"
    state_fields = ("grad_events", "models", "iterate_sum")

    def __init__(
        self,
        config: EventConfig,
        task: Task,
        edges: list[tuple[int, int]],
        chi1: float,
        seed: int,
        x0: torch.Tensor,
        graphs: Sequence[EdgeRates] | None = None,
    ) -> None:
        super().__init__(config, task, edges, chi1, seed, x0, graphs)
        self.models = np.tile(self.x0, (self.num_nodes, 1))
        self.iterate_sum = np.zeros_like(self.models)

    def on_compute(self, node: int, t: float) -> None:
        self.models[node] -= self.config.lr * self.gradient(node, self.models[node])
        self.iterate_sum[node] += self.models[node]

    def on_edge(self, i: int, j: int, t: float) -> None:
        average = 0.5 * (self.models[i] + self.models[j])
        self.models[i] = average
        self.models[j] = average

    def models_at(self, t: float) -> np.ndarray:
        return self.models.copy()

    def averaged_models(self) -> np.ndarray | None:
        if self.config.batch_size == "full":
            return None
        return self.iterate_sum / np.maximum(self.grad_events, 1)[:, None]


# --------------------------------------------------------------------------- ADOM+


@dataclass(frozen=True)
class StepCost:
    """What one synchronous iteration cost: gradient evaluations, edge activations, bytes."""

    gradients: int
    communications: int
    bytes_sent: int


class SynchronousEventAlgorithm(EventAlgorithm):
    """An algorithm whose iterations fire on one global clock (driver: ``events``, sync branch)."""

    synchronous = True

    def on_compute(self, node: int, t: float) -> None:
        raise TypeError(f"{self.name} is synchronous: the driver calls step(), not on_compute()")

    def on_edge(self, i: int, j: int, t: float) -> None:
        raise TypeError(f"{self.name} is synchronous: the driver calls step(), not on_edge()")

    @abstractmethod
    def step(self, iteration: int) -> StepCost:
        """Run iteration ``iteration`` (0-based) and say what it cost."""


@dataclass(frozen=True)
class AdomPlusConstants:
    """ADOM+ (Kovalev et al., 2021) constants exactly as in the official DADAO code.

    χ = λ_max(L)/λ⁺_min(L) of the graph Laplacians (worst over a cycle). Multi-consensus
    (Kovalev et al., eq. 18–20) applies ⌈χ ln 2⌉ gossip matrices per iteration, and the code
    then sets χ = 2 (only if that count exceeds 1).
    """

    chi: float
    tau1: float
    tau2: float
    sigma1: float
    sigma2: float
    eta: float
    alpha: float
    beta: float
    delta: float
    nu: float
    gamma: float
    theta: float
    zeta: float

    @classmethod
    def from_problem(cls, smoothness: float, strong_convexity: float, chi: float) -> AdomPlusConstants:
        mu, big_l = strong_convexity, smoothness
        tau2 = math.sqrt(mu / big_l)
        sigma2 = tau2 / (16 * chi)
        nu = mu / 2
        return cls(
            chi=chi,
            tau1=1 / (math.sqrt(big_l / mu) + 0.5),
            tau2=tau2,
            sigma1=1 / (1 / sigma2 + 0.5),
            sigma2=sigma2,
            eta=1 / (big_l * tau2),
            alpha=mu / 2,
            beta=1 / (2 * big_l),
            delta=1 / (17 * big_l),
            nu=nu,
            gamma=nu / (14 * sigma2 * chi**2),
            theta=nu / (4 * sigma2),
            zeta=0.5,
        )


def laplacian(num_nodes: int, edges: Sequence[tuple[int, int]]) -> np.ndarray:
    """The unweighted graph Laplacian L = D − A."""
    out = np.zeros((num_nodes, num_nodes))
    for i, j in edges:
        out[i, i] += 1.0
        out[j, j] += 1.0
        out[i, j] -= 1.0
        out[j, i] -= 1.0
    return out


class AdomPlusConfig(DadaoConfig):
    """``multi_consensus``: ⌈χ ln 2⌉ gossip steps per iteration (the code's ``use_multi_consensus``)."""

    multi_consensus: bool = False


@register_event
class AdomPlus(SynchronousEventAlgorithm):
    """ADOM+ as in the official DADAO code (the synchronous baseline of docs/algorithms.md A).

    Per iteration every node evaluates one gradient (at its x_g) and the network runs
    ``gossip_steps`` gossip steps with W_k = I − L_k/λ_max(L_k), L_k the Laplacian of the
    graph in force at gossip step k; with ``time_varying: cycle`` the graph advances by one
    cycle entry per gossip step, as in the code. The product W = Π_q W_{k_q} is applied to
    two vectors per step ((γ/ν)(y_g + z_g) + m and y_g + z_g), so every edge carries two
    d-vectors each way per gossip step. One *communication* is one edge activation (the
    code's count and the unit of a DADAO edge event); bytes count both vectors.

    State (N × d each): x, m, y, z and x_f, y_f, z_f; m and y start as N(0, 1) draws from
    the ``adom_plus.init`` stream (the code uses ``torch.randn``), z at 0, x at the model init.
    """

    name = "adom_plus"
    Config = AdomPlusConfig
    state_fields = ("grad_events", "x", "m", "y", "z", "x_f", "y_f", "z_f", "gossip_count")

    def __init__(
        self,
        config: EventConfig,
        task: Task,
        edges: list[tuple[int, int]],
        chi1: float,
        seed: int,
        x0: torch.Tensor,
        graphs: Sequence[EdgeRates] | None = None,
    ) -> None:
        super().__init__(config, task, edges, chi1, seed, x0, graphs)
        assert isinstance(config, AdomPlusConfig)
        smoothness, strong = problem_constants(task, config.smoothness, config.strong_convexity, "ADOM+")
        edge_lists = [g.edges for g in self.graphs] if self.graphs else [edges]
        n = self.num_nodes
        self.normalised: list[np.ndarray] = []  # L_k / λ_max(L_k), the code's "W"
        chis: list[float] = []
        for graph_edges in edge_lists:
            lap = laplacian(n, graph_edges)
            values = np.linalg.eigvalsh(lap)
            positive = values[values > 1e-10 * values[-1]]
            chis.append(float(values[-1] / positive[0]))
            self.normalised.append(lap / values[-1])
        self.edge_counts = [len(e) for e in edge_lists]
        chi = max(chis)
        self.gossip_steps = math.ceil(chi * math.log(2)) if config.multi_consensus else 1
        if self.gossip_steps > 1:
            chi = 2.0
        self.constants = AdomPlusConstants.from_problem(smoothness, strong, chi)
        dim = self.x0.shape[0]
        init = numpy_rng(seed, "adom_plus.init")
        self.x = np.tile(self.x0, (n, 1))
        self.m = init.standard_normal((n, dim))
        self.y = init.standard_normal((n, dim))
        self.z = np.zeros((n, dim))
        self.x_f, self.y_f, self.z_f = self.x.copy(), self.y.copy(), self.z.copy()
        self.gossip_count = np.zeros((), dtype=np.int64)
        self.message_bytes = 8 * dim
        c = self.constants
        denominator = 1 + c.eta * c.alpha
        self._c1 = denominator / ((1 + c.theta * c.beta) * denominator + c.theta * c.eta)
        self._c2 = c.theta * c.beta + c.eta * c.theta / denominator
        self._c3 = c.theta * (c.beta * c.nu + c.eta * (c.nu + c.alpha) / denominator)
        self._c4 = c.theta / denominator
        self._c5 = 1 / denominator
        self._mixing_cache: dict[int, np.ndarray] = {}

    def mixing(self, first: int) -> np.ndarray:
        """W = Π_{q<Q} (I − L_{first+q}/λ_max), multiplied on the right as in the code."""
        cycle = len(self.normalised)
        key = first % cycle
        if key not in self._mixing_cache:
            n = self.num_nodes
            weights = np.eye(n)
            for q in range(self.gossip_steps):
                weights = weights @ (np.eye(n) - self.normalised[(first + q) % cycle])
            self._mixing_cache[key] = weights
        return self._mixing_cache[key]

    def step(self, iteration: int) -> StepCost:
        c = self.constants
        first = int(self.gossip_count)
        weights = self.mixing(first)
        x_g = c.tau1 * self.x + (1 - c.tau1) * self.x_f
        grad = np.stack([self.gradient(node, x_g[node]) for node in range(self.num_nodes)])
        y_g = c.sigma1 * self.y + (1 - c.sigma1) * self.y_f
        z_g = c.sigma1 * self.z + (1 - c.sigma1) * self.z_f
        y_new = self._c1 * (
            self.y + self._c2 * grad - self._c3 * x_g - self._c4 * self.x - (c.theta / c.nu) * (y_g + z_g)
        )
        x_new = self._c5 * (self.x + c.eta * c.alpha * x_g - c.eta * (grad - c.nu * x_g - y_new))
        dual = y_g + z_g
        carried = (c.gamma / c.nu) * dual + self.m
        mixed = weights @ carried
        z_new = self.z + c.gamma * c.delta * (z_g - self.z) - (carried - mixed)
        self.x_f = x_g + c.tau2 * (x_new - self.x)
        self.y_f = y_g + c.sigma2 * (y_new - self.y)
        self.z_f = z_g - c.zeta * (dual - weights @ dual)
        self.x, self.y, self.z, self.m = x_new, y_new, z_new, mixed
        cycle = len(self.edge_counts)
        edges = sum(self.edge_counts[(first + q) % cycle] for q in range(self.gossip_steps))
        self.gossip_count = np.array(first + self.gossip_steps, dtype=np.int64)
        return StepCost(self.num_nodes, edges, 2 * 2 * edges * self.message_bytes)

    def models_at(self, t: float) -> np.ndarray:
        return self.x.copy()
