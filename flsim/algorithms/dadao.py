"""DADAO (docs/algorithms.md A2–A5): decoupled gradient and gossip events on Poisson clocks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
from pydantic import Field

from flsim.algorithms.base import register
from flsim.algorithms.dadao_ode import DadaoConstants, DadaoFlow
from flsim.algorithms.events import (
    EventAlgorithm,
    EventConfig,
    problem_constants,
)

if TYPE_CHECKING:
    pass


class DadaoConfig(EventConfig):
    """L and μ default to the task's (max L_i, min μ_i); give them to override."""

    smoothness: float | None = Field(None, gt=0)
    strong_convexity: float | None = Field(None, gt=0)


@register
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
    edge_fields = ("state", "last_event")  # (A5) reads the other endpoint's P and its clock

    def _setup(self) -> None:
        config, task, chi1 = self.config, self.task, self.chi1
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
        #: The partner of a cross-actor edge event, brought to the event's time (on_cross_edge).
        self._cross_partner = np.empty((6, dim))
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
        p[...] = self._flow_matrix(dt) @ p
        return p

    def _flow_matrix(self, dt: float) -> np.ndarray:
        """exp(M dt) (A3), from the flow's eigen-decomposition."""
        return (np.exp(self._rates * dt).view(np.float64) @ self._basis).reshape(6, 6)

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
        self._exchange(self._advance(i, t), self._advance(j, t))

    def on_cross_edge(
        self, i: int, j: int, t: float, local: int, remote_rows: Mapping[str, np.ndarray]
    ) -> None:
        """(A5) with the partner's P and clock read in place from its exported rows: the
        partner is brought to t into a preallocated buffer by the same flow as
        :meth:`_advance`, then the same jump runs, so the local row comes out as
        :meth:`on_edge` leaves it, bit for bit. The partner's replica rows (state, clock,
        running average) are left as they are: only the local node counts here."""
        remote = self._cross_partner
        np.matmul(self._flow_matrix(t - remote_rows["last_event"]), remote_rows["state"], out=remote)
        if local == i:
            self._exchange(self._advance(i, t), remote)
        else:
            self._exchange(remote, self._advance(j, t))

    def _exchange(self, pi: np.ndarray, pj: np.ndarray) -> None:
        """The jump of (A5) on the two endpoints' (6 × d) rows, both already at t."""
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
