"""Virtual-time costs of compute and communication (the ``system.*`` section).

Each client's speed and bandwidth are drawn once from its own stream; per-round durations
come from a stream keyed by (client, round). So a client's timing never depends on which
other clients were sampled with it, and it is identical on every backend.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from flsim.config.schema import SystemConfig
from flsim.rng import numpy_rng
from flsim.tasks.client_streams import client_generators

#: Clients whose speed and bandwidth stay memoised: a long run over 10⁶ clients meets most
#: of them, and an unbounded memo would grow with N; an evicted value is simply redrawn.
MEMO_CLIENTS = 2**16


def _remember(memo: dict[int, float], client: int, value: float) -> float:
    """Store ``value``, dropping the oldest entry beyond :data:`MEMO_CLIENTS` (insertion order)."""
    if len(memo) >= MEMO_CLIENTS:
        del memo[next(iter(memo))]
    memo[client] = value
    return value


class SystemModel:
    """Per-client speed and bandwidth, each drawn from the client's own stream on first use.

    Drawing them lazily (and memoising the recent ones) keeps a 10⁶-client run from paying two
    stream constructions per client at start-up, and its memory from growing with N (issue
    17); the values are the ones an eager loop over every client would draw, since each
    depends only on (seed, client).
    """

    def __init__(self, config: SystemConfig, seed: int, num_clients: int) -> None:
        self.config = config
        self.seed = seed
        self.num_clients = num_clients
        self._speeds: dict[int, float] = {}
        self._bandwidths: dict[int, float] = {}

    def speed(self, client: int) -> float:
        value = self._speeds.get(client)
        if value is None:
            rng = numpy_rng(self.seed, "system.speed", client)
            value = _remember(self._speeds, client, self._draw_speed(rng))
        return value

    def bandwidth(self, client: int) -> float:
        value = self._bandwidths.get(client)
        if value is None:
            rng = numpy_rng(self.seed, "system.bandwidth", client)
            value = _remember(self._bandwidths, client, self._draw_bandwidth(rng))
        return value

    def prefetch(self, clients: Sequence[int]) -> None:
        """Draw the speeds and bandwidths of a round's first-time clients in one pass.

        Building two ``numpy_rng`` streams a client costs tens of microseconds of Python, and in a
        10⁶-client population nearly every sampled client is new; block seeding
        (:func:`~flsim.tasks.client_streams.client_generators`) sets up the same streams with
        array arithmetic, so the values are the ones :meth:`speed` and :meth:`bandwidth` draw.
        """
        for memo, purpose, draw in (
            (self._speeds, "system.speed", self._draw_speed),
            (self._bandwidths, "system.bandwidth", self._draw_bandwidth),
        ):
            new = sorted({client for client in clients if client not in memo})
            for client, rng in zip(new, client_generators(self.seed, purpose, new), strict=True):
                _remember(memo, client, draw(rng))

    def _draw_speed(self, rng: np.random.Generator) -> float:
        compute = self.config.compute
        value = rng.lognormal(0.0, compute.sigma) if compute.sigma > 0 else 1.0
        if rng.random() < compute.slow_fraction:
            value /= compute.slow_factor
        return float(value)

    def _draw_bandwidth(self, rng: np.random.Generator) -> float:
        sigma = self.config.link.sigma
        return float(self.config.link.bandwidth * (rng.lognormal(0.0, sigma) if sigma > 0 else 1.0))

    @property
    def speeds(self) -> np.ndarray:
        """Every client's speed (O(N): for tests and small populations)."""
        return np.array([self.speed(c) for c in range(self.num_clients)])

    @property
    def bandwidths(self) -> np.ndarray:
        return np.array([self.bandwidth(c) for c in range(self.num_clients)])

    def compute_time(self, client: int, steps: int, round_index: int) -> float:
        """Virtual duration of ``steps`` local steps: deterministic, or a Poisson clock's sum."""
        mean_step = self.config.compute.step_time / self.speed(client)
        if self.config.compute.jitter == "deterministic" or steps == 0:
            return float(steps * mean_step)
        rng = numpy_rng(self.seed, "system.compute", client, round_index)
        return float(rng.gamma(shape=steps, scale=mean_step))

    def latency(self, client: int, num_bytes: int) -> float:
        return float(self.config.link.base + num_bytes / self.bandwidth(client))
