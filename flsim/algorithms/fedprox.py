"""FedProx (docs/algorithms.md B2)."""

from __future__ import annotations

from typing import Any

from pydantic import Field
from torch import Tensor

from flsim.algorithms.base import AlgorithmConfig, register
from flsim.algorithms.batched import BatchedContext, vectorizable
from flsim.algorithms.client import ClientContext
from flsim.algorithms.fedavg import FedAvg


class FedProxConfig(AlgorithmConfig):
    """``mu`` is the proximal weight μ ≥ 0 (Li et al. tune μ ∈ {0.001, 0.01, 0.1, 1}; 0.01 here)."""

    mu: float = Field(0.01, ge=0)


@vectorizable
@register
class FedProx(FedAvg):
    """(B2): y_{k+1} = y_k − η_l (g_i(y_k) + μ (y_k − x^t)); the server is FedAvg's (B1).

    The proximal term is part of the corrected gradient, so ``clip_norm`` clips
    g + μ(y − x) and ``weight_decay``/``momentum`` act on top, as for every algorithm. With
    μ = 0 no term is added at all, so FedProx is FedAvg bit for bit (a test checks it).
    """

    name = "fedprox"
    Config = FedProxConfig

    def local_oracle(self, x: Tensor, ctx: ClientContext | None) -> dict[str, Any]:
        cfg = self.config
        assert isinstance(cfg, FedProxConfig)
        mu = cfg.mu
        if not mu:
            return {}

        def proximal(y: Tensor, g: Tensor) -> Tensor:
            return g + mu * (y - x)

        return {"correction": proximal}

    def batched_oracle(self, x: Tensor, bctx: BatchedContext) -> dict[str, Any]:
        """The same proximal term μ(y − x) on every row of the stack (x broadcasts over rows)."""
        return self.local_oracle(x, None)
