"""FedAvg (docs/algorithms.md B1)."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from flsim.algorithms.base import Reply, RoundAlgorithm, Tensors, local_training, register
from flsim.algorithms.batched import BatchedContext, batched_training, vectorizable
from flsim.algorithms.client import ClientContext
from flsim.algorithms.client_optimizers import ALL_OPTIMIZERS


@vectorizable
@register
class FedAvg(RoundAlgorithm):
    """(B1): y_{k+1} = y_k − η_l g_i(y_k) from y_0 = x^t; x^{t+1} = x^t + η_g Σ_i w_i (y_K^i − x^t).

    Weights w_i are proportional to sample counts, or uniform with ``weighting: uniform``.
    With one full-batch local step, full participation and η_g = 1, this is exactly gradient
    descent on f = Σ (n_i/n) f_i (a test checks it iterate for iterate).

    FedProx, FedSAM and FedBuff train their clients the same way and differ only in the local
    gradient (:meth:`local_oracle`) or the server step, so they subclass this class.
    """

    name = "fedavg"
    selection_weights = True
    #: Plain local steps: every client optimizer applies (docs/client_optimizers.md).
    client_optimizers = ALL_OPTIMIZERS

    def local_oracle(self, x: Tensor, ctx: ClientContext) -> dict[str, Any]:
        """Extra :func:`local_sgd` arguments that change the local gradient; none for FedAvg."""
        return {}

    def client_update(self, message: Tensors, state: Tensors, ctx: ClientContext) -> tuple[Tensors, Tensors]:
        cfg = self.config
        x = message["x"]
        y = local_training(x, ctx, cfg, **self.local_oracle(x, ctx))
        if ctx.upload_from:
            # Drop-Muon left the layers below the cut untouched: send only the tail that moved.
            return {"delta": y[ctx.upload_from :] - x[ctx.upload_from :]}, state
        return {"delta": y - x}, state

    def batched_oracle(self, x: Tensor, bctx: BatchedContext) -> dict[str, Any]:
        """:meth:`local_oracle` for a stack of clients (docs/vectorized.md); none for FedAvg."""
        return {}

    def client_update_batched(
        self, message: Tensors, states: list[Tensors], bctx: BatchedContext
    ) -> tuple[Tensors, list[Tensors]]:
        """:meth:`client_update` for K clients at once: the stacked deltas [K, D]."""
        x = message["x"]
        y = batched_training(x, bctx, self.config, **self.batched_oracle(x, bctx))
        return {"delta": y - x}, states

    def aggregate(self, server: Tensors, replies: list[Reply], round_index: int) -> Tensors:
        step = self.weighted_mean(replies, "delta", like=server["x"])
        return {"x": server["x"] + self.config.server_lr * step}
