"""FedProx (ALGORITHMS.md B2)."""

from __future__ import annotations

from pydantic import Field
from torch import Tensor

from flsim.algorithms.base import AlgorithmConfig, Reply, RoundAlgorithm, Tensors, register
from flsim.algorithms.client import ClientContext, local_sgd


class FedProxConfig(AlgorithmConfig):
    """``mu`` is the proximal weight μ ≥ 0 (Li et al. tune μ ∈ {0.001, 0.01, 0.1, 1}; 0.01 here)."""

    mu: float = Field(0.01, ge=0)


@register
class FedProx(RoundAlgorithm):
    """(B2): y_{k+1} = y_k − η_l (g_i(y_k) + μ (y_k − x^t)); the server is FedAvg's (B1).

    The proximal term is part of the corrected gradient, so ``clip_norm`` clips
    g + μ(y − x) and ``weight_decay``/``momentum`` act on top, as for every algorithm. With
    μ = 0 no term is added at all, so FedProx is FedAvg bit for bit (a test checks it).
    """

    name = "fedprox"
    Config = FedProxConfig

    def client_update(self, message: Tensors, state: Tensors, ctx: ClientContext) -> tuple[Tensors, Tensors]:
        cfg = self.config
        assert isinstance(cfg, FedProxConfig)
        x = message["x"]
        mu = cfg.mu

        def proximal(y: Tensor, g: Tensor) -> Tensor:
            return g + mu * (y - x)

        y = local_sgd(
            x,
            ctx,
            ctx.steps_for(cfg.local_steps, cfg.local_epochs),
            correction=proximal if mu else None,
            momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
            clip_norm=cfg.clip_norm,
        )
        return {"delta": y - x}, state

    def aggregate(self, server: Tensors, replies: list[Reply], round_index: int) -> Tensors:
        return {"x": server["x"] + self.config.server_lr * self.weighted_mean(replies, "delta")}
