"""The sharpness-aware gradient oracle shared by FedSAM (B4) and FedSpeed (F1)."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from flsim.algorithms.client import Batch, ClientContext


def sam_oracle(
    ctx: ClientContext,
    rho: float,
    *,
    eps: float,
    normalized: bool = True,
    alpha: float = 1.0,
) -> Callable[[Tensor, Batch], Tensor]:
    """g ↦ (1−α) g1 + α g2 with g1 = g_i(y; ξ), g2 = g_i(y + e; ξ) on the *same* minibatch ξ.

    e = ρ g1/(‖g1‖ + eps) when ``normalized`` (F1 default, B4), else e = ρ g1. Each step
    costs two oracle calls, except where the second gradient is provably unused or equal to
    the first (ρ = 0 gives e = 0, α = 0 drops g2): then only g1 is computed and only one call
    is charged, which is the honest count.
    """

    def oracle(y: Tensor, batch: Batch) -> Tensor:
        g1 = ctx.grad(y, batch)
        if rho == 0 or alpha == 0:
            return g1
        scale = rho / (float(g1.norm()) + eps) if normalized else rho
        g2 = ctx.grad(y + scale * g1, batch)
        if alpha == 1:
            return g2
        return (1.0 - alpha) * g1 + alpha * g2

    return oracle
