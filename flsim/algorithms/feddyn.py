"""FedDyn (docs/algorithms.md B5)."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor

from flsim.algorithms.base import AlgorithmConfig, Reply, RoundAlgorithm, Tensors, local_training, register
from flsim.algorithms.batched import BatchedContext, batched_training, stack_state, vectorizable
from flsim.algorithms.client import ClientContext
from flsim.algorithms.client_optimizers import ALL_OPTIMIZERS


class FedDynConfig(AlgorithmConfig):
    """``alpha`` is α_d > 0, the dynamic-regulariser weight (Acar et al. tune {0.1, 0.01, 0.001})."""

    alpha: float = Field(0.01, gt=0)


@vectorizable
@register
class FedDyn(RoundAlgorithm):
    """(B5) FedDyn (Acar et al., ICLR 2021).

    * Client: y ← y − η_l (g_i(y) − ∇L_i + α_d (y − x^t)); then ∇L_i ← ∇L_i − α_d (y_K − x^t).
      ∇L_i starts at 0 and lives in the client-state store.
    * Server: h ← h − α_d (1/N) Σ_{i∈S}(y_K^i − x^t); x^{t+1} = x^t + η_g Σ_i w_i (y_K^i − x^t) − h/α_d,
      i.e. mean_S(y_K) − h/α_d for η_g = 1 (the spec's form; w_i are the B1 weights).

    The client uploads y_K − x^t (d) and receives x^t (d). FedSpeed with ρ = 0 is this
    algorithm with α_d = lamb, iterate for iterate (F, property (a); a test checks it).
    """

    name = "feddyn"
    #: ∇L_i is updated from the local problem's stationarity, whatever optimizer solves it; a
    #: Drop-Muon tail upload would not fit its server state h (docs/client_optimizers.md).
    client_optimizers = ALL_OPTIMIZERS - {"drop_muon"}
    Config = FedDynConfig
    stateful_clients = True

    def init_server(self, x0: Tensor) -> Tensors:
        return {"x": x0.clone(), "h": torch.zeros_like(x0)}

    def init_client(self, client: int, x0: Tensor) -> Tensors:
        return {"grad_l": torch.zeros_like(x0)}

    def client_update(self, message: Tensors, state: Tensors, ctx: ClientContext) -> tuple[Tensors, Tensors]:
        cfg = self.config
        assert isinstance(cfg, FedDynConfig)
        x = message["x"]
        grad_l = state["grad_l"]
        alpha = cfg.alpha

        def dynamic(y: Tensor, g: Tensor) -> Tensor:
            return g - grad_l + alpha * (y - x)

        y = local_training(x, ctx, cfg, correction=dynamic)
        delta = y - x
        return {"delta": delta}, {"grad_l": grad_l - alpha * delta}

    def client_update_batched(
        self, message: Tensors, states: list[Tensors], bctx: BatchedContext
    ) -> tuple[Tensors, list[Tensors]]:
        """:meth:`client_update` for K clients: the dynamic term and ∇L_i update (B5) per row."""
        cfg = self.config
        assert isinstance(cfg, FedDynConfig)
        x = message["x"]
        grad_l = stack_state(states, "grad_l")
        alpha = cfg.alpha

        def dynamic(y: Tensor, g: Tensor) -> Tensor:
            return g - grad_l + alpha * (y - x)

        delta = batched_training(x, bctx, cfg, correction=dynamic) - x
        return {"delta": delta}, [{"grad_l": row.clone()} for row in grad_l - alpha * delta]

    def aggregate(self, server: Tensors, replies: list[Reply], round_index: int) -> Tensors:
        cfg = self.config
        assert isinstance(cfg, FedDynConfig)
        h = server["h"].clone()
        for reply in replies:
            h.add_(reply.message["delta"], alpha=-cfg.alpha / self.num_clients)
        x = server["x"] + cfg.server_lr * self.weighted_mean(replies, "delta") - h / cfg.alpha
        return {"x": x, "h": h}
