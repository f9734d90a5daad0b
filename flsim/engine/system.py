"""Virtual-time costs of compute and communication (the ``system.*`` section).

Each client's speed and bandwidth are drawn once from its own stream; per-round durations
come from a stream keyed by (client, round). So a client's timing never depends on which
other clients were sampled with it, and it is identical on every backend.
"""

from __future__ import annotations

import numpy as np

from flsim.config.schema import SystemConfig
from flsim.rng import numpy_rng


class SystemModel:
    def __init__(self, config: SystemConfig, seed: int, num_clients: int) -> None:
        self.config = config
        self.seed = seed
        compute = config.compute
        speeds = np.empty(num_clients)
        bandwidths = np.empty(num_clients)
        for client in range(num_clients):
            rng = numpy_rng(seed, "system.speed", client)
            speed = rng.lognormal(0.0, compute.sigma) if compute.sigma > 0 else 1.0
            if rng.random() < compute.slow_fraction:
                speed /= compute.slow_factor
            speeds[client] = speed
            link_rng = numpy_rng(seed, "system.bandwidth", client)
            sigma = config.link.sigma
            bandwidths[client] = config.link.bandwidth * (
                link_rng.lognormal(0.0, sigma) if sigma > 0 else 1.0
            )
        self.speeds = speeds
        self.bandwidths = bandwidths

    def compute_time(self, client: int, steps: int, round_index: int) -> float:
        """Virtual duration of ``steps`` local steps: deterministic, or a Poisson clock's sum."""
        mean_step = self.config.compute.step_time / self.speeds[client]
        if self.config.compute.jitter == "deterministic" or steps == 0:
            return float(steps * mean_step)
        rng = numpy_rng(self.seed, "system.compute", client, round_index)
        return float(rng.gamma(shape=steps, scale=mean_step))

    def latency(self, client: int, num_bytes: int) -> float:
        return float(self.config.link.base + num_bytes / self.bandwidths[client])
