"""Asynchronous gossip SGD on Poisson clocks (docs/algorithms.md A): the event-driven baseline."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from flsim.algorithms.base import register
from flsim.algorithms.events import (
    EventAlgorithm,
    read_only,
)

if TYPE_CHECKING:
    pass


@register
class AsyncGossipSGD(EventAlgorithm):
    """Randomized pairwise gossip + local SGD: x_i −= η g_i(x_i) on node clocks, and
    x_i = x_j = (x_i + x_j)/2 on edge clocks (the asynchronous D-SGD baseline of A)."""

    name = "async_gossip_sgd"
    state_fields = ("grad_events", "models", "iterate_sum")
    edge_fields = ("models",)  # an edge event reads only the other endpoint's model

    def _setup(self) -> None:
        self.models = np.tile(self.x0, (self.num_nodes, 1))
        self.iterate_sum = np.zeros_like(self.models)

    def on_compute(self, node: int, t: float) -> None:
        self.models[node] -= self.config.lr * self.gradient(node, self.models[node])
        self.iterate_sum[node] += self.models[node]

    def on_edge(self, i: int, j: int, t: float) -> None:
        average = 0.5 * (self.models[i] + self.models[j])
        self.models[i] = average
        self.models[j] = average

    def on_cross_edge(
        self, i: int, j: int, t: float, local: int, remote_rows: Mapping[str, np.ndarray]
    ) -> None:
        """The average of :meth:`on_edge`, written into the local row only and read from the
        partner's exported model in place (no copy of it into the replica, no temporaries).
        Bit for bit the same: the same sum (addition commutes, so the operands' order does
        not matter) halved by the same multiplication."""
        row = self.models[local]
        np.add(row, remote_rows["models"], out=row)
        row *= 0.5

    def models_at(self, t: float) -> np.ndarray:
        return read_only(self.models)

    def averaged_models(self) -> np.ndarray | None:
        if self.config.batch_size == "full":
            return None
        return self.iterate_sum / np.maximum(self.grad_events, 1)[:, None]
