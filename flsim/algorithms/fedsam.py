"""FedSAM (docs/algorithms.md B4)."""

from __future__ import annotations

from typing import Any

from pydantic import Field
from torch import Tensor

from flsim.algorithms.base import AlgorithmConfig, register
from flsim.algorithms.batched import BatchedContext, batched_sam_oracle, vectorizable
from flsim.algorithms.client import ClientContext
from flsim.algorithms.fedavg import FedAvg
from flsim.algorithms.sam import sam_oracle


class FedSAMConfig(AlgorithmConfig):
    """``rho`` ≥ 0 is the SAM radius (0.05, the usual SAM/FedSAM value); ``perturb_eps`` guards
    ‖g‖ = 0 (1e-12 as in the reference SAM implementation)."""

    rho: float = Field(0.05, ge=0)
    perturb_eps: float = Field(1e-12, ge=0)


@vectorizable
@register
class FedSAM(FedAvg):
    """(B4): g = g_i(y; ξ), then y ← y − η_l g_i(y + ρ g/‖g‖; ξ) on the same minibatch ξ.

    The server is FedAvg's (B1). Each step costs 2 gradient-oracle calls (1 when ρ = 0, where
    the perturbation vanishes). For f = ½ xᵀAx the step direction is A(x + ρ Ax/‖Ax‖)
    (F, property (c)); a test checks it.
    """

    name = "fedsam"
    #: Its SAM step is the rule itself (docs/client_optimizers.md).
    client_optimizers = frozenset({"sgd"})
    Config = FedSAMConfig

    def local_oracle(self, x: Tensor, ctx: ClientContext) -> dict[str, Any]:
        cfg = self.config
        assert isinstance(cfg, FedSAMConfig)
        return {"gradient": sam_oracle(ctx, cfg.rho, eps=cfg.perturb_eps)}

    def batched_oracle(self, x: Tensor, bctx: BatchedContext) -> dict[str, Any]:
        """The same SAM step (B4) on every row: perturbation radius ρ along each row's own g."""
        cfg = self.config
        assert isinstance(cfg, FedSAMConfig)
        return {"gradient": batched_sam_oracle(bctx, cfg.rho, eps=cfg.perturb_eps)}
