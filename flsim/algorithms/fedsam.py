"""FedSAM (ALGORITHMS.md B4)."""

from __future__ import annotations

from pydantic import Field

from flsim.algorithms.base import AlgorithmConfig, Reply, RoundAlgorithm, Tensors, register
from flsim.algorithms.client import ClientContext, local_sgd
from flsim.algorithms.sam import sam_oracle


class FedSAMConfig(AlgorithmConfig):
    """``rho`` ≥ 0 is the SAM radius (0.05, the usual SAM/FedSAM value); ``perturb_eps`` guards
    ‖g‖ = 0 (1e-12 as in the reference SAM implementation)."""

    rho: float = Field(0.05, ge=0)
    perturb_eps: float = Field(1e-12, ge=0)


@register
class FedSAM(RoundAlgorithm):
    """(B4): g = g_i(y; ξ), then y ← y − η_l g_i(y + ρ g/‖g‖; ξ) on the same minibatch ξ.

    The server is FedAvg's (B1). Each step costs 2 gradient-oracle calls (1 when ρ = 0, where
    the perturbation vanishes). For f = ½ xᵀAx the step direction is A(x + ρ Ax/‖Ax‖)
    (F, property (c)); a test checks it.
    """

    name = "fedsam"
    Config = FedSAMConfig

    def client_update(self, message: Tensors, state: Tensors, ctx: ClientContext) -> tuple[Tensors, Tensors]:
        cfg = self.config
        assert isinstance(cfg, FedSAMConfig)
        x = message["x"]
        y = local_sgd(
            x,
            ctx,
            ctx.steps_for(cfg.local_steps, cfg.local_epochs),
            gradient=sam_oracle(ctx, cfg.rho, eps=cfg.perturb_eps),
            momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
            clip_norm=cfg.clip_norm,
        )
        return {"delta": y - x}, state

    def aggregate(self, server: Tensors, replies: list[Reply], round_index: int) -> Tensors:
        return {"x": server["x"] + self.config.server_lr * self.weighted_mean(replies, "delta")}
