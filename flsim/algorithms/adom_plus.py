"""ADOM+ (docs/algorithms.md A), the synchronous baseline of the event-driven comparison."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from flsim.algorithms.base import register
from flsim.algorithms.dadao import DadaoConfig
from flsim.algorithms.events import (
    StepCost,
    SynchronousEventAlgorithm,
    laplacian,
    problem_constants,
    read_only,
)

if TYPE_CHECKING:
    pass


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


class AdomPlusConfig(DadaoConfig):
    """``multi_consensus``: ⌈χ ln 2⌉ gossip steps per iteration (the code's ``use_multi_consensus``)."""

    multi_consensus: bool = False


@register
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
    splits_steps = True

    def _setup(self) -> None:
        config, task, edges = self.config, self.task, self.edges
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
        init = self.streams.numpy("adom_plus.init")
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
        x_g = self.gradient_points()
        grad = np.stack([self.gradient(node, x_g[node]) for node in range(self.num_nodes)])
        return self.finish_step(x_g, grad)

    def gradient_points(self) -> np.ndarray:
        c = self.constants
        return c.tau1 * self.x + (1 - c.tau1) * self.x_f

    def finish_step(self, points: np.ndarray, gradients: np.ndarray) -> StepCost:
        c = self.constants
        weights = self.mixing(int(self.gossip_count))
        x_g, grad = points, gradients
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
        return self.account_step()

    def account_step(self) -> StepCost:
        first = int(self.gossip_count)
        cycle = len(self.edge_counts)
        edges = sum(self.edge_counts[(first + q) % cycle] for q in range(self.gossip_steps))
        self.gossip_count = np.array(first + self.gossip_steps, dtype=np.int64)
        return StepCost(self.num_nodes, edges, 2 * 2 * edges * self.message_bytes)

    def models_at(self, t: float) -> np.ndarray:
        return read_only(self.x)
