"""SCAFFOLD, option II (docs/algorithms.md B3)."""

from __future__ import annotations

import torch
from torch import Tensor

from flsim.algorithms.base import Reply, RoundAlgorithm, Tensors, local_training, register
from flsim.algorithms.batched import BatchedContext, batched_training, stack_state, vectorizable
from flsim.algorithms.client import ClientContext


@vectorizable
@register
class Scaffold(RoundAlgorithm):
    """(B3) SCAFFOLD with option II control variates (Karimireddy et al., 2020).

    * Client: y_{k+1} = y_k − η_l (g_i(y_k) − c_i + c), then
      c_i⁺ = c_i − c + (x^t − y_K)/(K η_l), with K the steps actually taken and η_l this
      round's (decayed) local rate.
    * Server: x ← x + η_g Σ_i w_i (y_K^i − x); c ← c + (1/N) Σ_{i∈S}(c_i⁺ − c_i), summed in
      client-id order.

    Traffic is 2d each way, as in the paper: the broadcast carries (x, c) and the reply
    (y_K − x, c_i⁺ − c_i). c_i lives in the client-state store of the client's host (never a
    server-side N × d table); clients never sampled keep c_i = 0 without storing it.

    At a fixed point c_i = ∇f_i(x) and c = (1/N) Σ c_i = 0, so with full gradients the
    iterates converge to the minimiser of (1/N) Σ f_i: the global objective when shards
    have equal sizes (a test checks optimality_gap < 1e-8 on heterogeneous least squares).
    """

    name = "scaffold"
    #: Option II reads c_i off the displacement (x − y_K)/(K η_l), the mean corrected gradient
    #: only for plain gradient steps: SGD, or SGD on SAM's gradient (docs/client_optimizers.md).
    client_optimizers = frozenset({"sgd", "sam"})
    stateful_clients = True

    def init_server(self, x0: Tensor) -> Tensors:
        return {"x": x0.clone(), "c": torch.zeros_like(x0)}

    def init_client(self, client: int, x0: Tensor) -> Tensors:
        return {"c": torch.zeros_like(x0)}

    def broadcast(self, server: Tensors, round_index: int) -> Tensors:
        return {"x": server["x"], "c": server["c"]}

    def client_update(self, message: Tensors, state: Tensors, ctx: ClientContext) -> tuple[Tensors, Tensors]:
        cfg = self.config
        x, c = message["x"], message["c"]
        c_i = state["c"]
        drift = c - c_i  # constant during the round

        def corrected(y: Tensor, g: Tensor) -> Tensor:
            return g + drift

        steps = ctx.steps_for(cfg.local_steps, cfg.local_epochs)
        y = local_training(x, ctx, cfg, correction=corrected)
        c_new = c_i - c + (x - y) / (steps * ctx.lr)
        return {"delta": y - x, "delta_c": c_new - c_i}, {"c": c_new}

    def client_update_batched(
        self, message: Tensors, states: list[Tensors], bctx: BatchedContext
    ) -> tuple[Tensors, list[Tensors]]:
        """:meth:`client_update` for K clients: drift rows c − c_i, the same c_i⁺ (B3) per row."""
        x, c = message["x"], message["c"]
        c_i = stack_state(states, "c")
        drift = c - c_i

        def corrected(y: Tensor, g: Tensor) -> Tensor:
            return g + drift

        y = batched_training(x, bctx, self.config, correction=corrected)
        c_new = c_i - c + (x - y) / (bctx.num_steps * bctx.lr)
        return {"delta": y - x, "delta_c": c_new - c_i}, [{"c": row.clone()} for row in c_new]

    def aggregate(self, server: Tensors, replies: list[Reply], round_index: int) -> Tensors:
        x = server["x"] + self.config.server_lr * self.weighted_mean(replies, "delta")
        c = server["c"].clone()
        for reply in replies:
            c.add_(reply.message["delta_c"], alpha=1.0 / self.num_clients)
        return {"x": x, "c": c}
