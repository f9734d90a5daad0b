"""FedBuff, asynchronous buffered aggregation (docs/algorithms.md B6); driven by flsim.engine.buffered."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, PositiveInt

from flsim.algorithms.base import AlgorithmConfig, Reply, Tensors, register
from flsim.algorithms.batched import vectorizable
from flsim.algorithms.fedavg import FedAvg
from flsim.config.errors import ConfigError


class FedBuffConfig(AlgorithmConfig):
    """``buffer_size`` (10, Nguyen et al.) replies per server update; at most ``max_concurrency``
    clients in flight (``null``: all clients). ``staleness_weight``: ``sqrt`` scales each delta
    by 1/√(1+τ) (the paper's choice, default) or ``none``. ``weighting`` defaults to
    ``uniform``: the server applies the plain mean of the buffer, as in B6."""

    buffer_size: PositiveInt = 10
    max_concurrency: PositiveInt | None = None
    staleness_weight: Literal["sqrt", "none"] = "sqrt"
    weighting: Literal["samples", "uniform"] = "uniform"
    server_lr: float = Field(1.0, gt=0)


@vectorizable  # FedAvg's local rule (B6): its batched update applies unchanged
@register
class FedBuff(FedAvg):
    """(B6) FedBuff (Nguyen et al., AISTATS 2022).

    Clients train as in FedAvg (B1) from the model version they received and upload
    Δ_i = y_K − x^{t_i}. The server applies the first ``buffer_size`` deltas to arrive:
    x ← x + η_g Σ_i w_i s(τ_i) Δ_i, with w the B1 weights of the buffer (1/B under the default
    uniform weighting, i.e. the mean of the buffer), s(τ) = 1/√(1+τ) or 1, and τ_i the number
    of server updates between the version client i trained from and this update. The
    buffered driver (:mod:`flsim.engine.buffered`) records τ per update; a "round" is one
    server update.
    """

    name = "fedbuff"
    Config = FedBuffConfig
    mode = "buffered"

    @classmethod
    def example_scenario(cls, base: dict[str, Any]) -> dict[str, Any]:
        algorithm = {
            "name": cls.name,
            "lr": 0.05,
            "local_steps": 3,
            "batch_size": 8,
            "buffer_size": 2,
            "max_concurrency": 3,
        }
        return {**base, "algorithm": algorithm}

    @classmethod
    def validate_against(cls, config: AlgorithmConfig, scenario: Any) -> None:
        assert isinstance(config, FedBuffConfig)
        clients = scenario.task.num_clients
        if config.buffer_size > clients:
            raise ConfigError(
                "algorithm.buffer_size", config.buffer_size, f"exceeds task.num_clients={clients}"
            )
        if config.max_concurrency is not None and config.max_concurrency > clients:
            raise ConfigError(
                "algorithm.max_concurrency", config.max_concurrency, f"exceeds task.num_clients={clients}"
            )

    @property
    def concurrency(self) -> int:
        cfg = self.config
        assert isinstance(cfg, FedBuffConfig)
        return self.num_clients if cfg.max_concurrency is None else cfg.max_concurrency

    def staleness_factor(self, staleness: float) -> float:
        cfg = self.config
        assert isinstance(cfg, FedBuffConfig)
        return 1.0 / math.sqrt(1.0 + staleness) if cfg.staleness_weight == "sqrt" else 1.0

    def aggregate(self, server: Tensors, replies: list[Reply], round_index: int) -> Tensors:
        """Apply one full buffer; each reply's ``extras["staleness"]`` is τ, set by the driver."""
        x = server["x"]
        step = self.weighted_mean(
            replies, "delta", like=x, factor=lambda reply: self.staleness_factor(reply.extras["staleness"])
        )
        return {"x": server["x"] + self.config.server_lr * step}
