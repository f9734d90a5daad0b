"""FedSpeed (docs/algorithms.md F1–F4), Sun et al., ICLR 2023; official code: FL-Simulator."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from pydantic import Field, PositiveInt, model_validator
from torch import Tensor

from flsim.algorithms.base import (
    AlgorithmConfig,
    Reply,
    RoundAlgorithm,
    Tensors,
    Weighting,
    local_training,
    register,
    tensor_bytes,
)
from flsim.algorithms.batched import (
    BatchedContext,
    batched_sam_oracle,
    batched_training,
    stack_state,
    vectorizable,
)
from flsim.algorithms.client import ClientContext
from flsim.algorithms.sam import sam_oracle


class FedSpeedConfig(AlgorithmConfig):
    """Defaults are the official code's (F, "Defaults from the code").

    * ``lr`` 0.1 with ``lr_decay`` 0.998 per round, ``batch_size`` 50, ``local_epochs`` 5
      (give ``local_steps`` instead to count steps), ``weight_decay`` 1e-3, ``clip_norm`` 10
      (the code clips before the decay terms, F2).
    * ``lamb`` = 1/λ (0.1), ``rho`` (0.1) the perturbation radius.
    * ``alpha``: gq = (1−α) g1 + α g2 (F1). The code runs α = 1 (pure SAM, default); the
      paper ablates α ∈ {0, 0.5, 0.75, 0.875, 0.9375, 1}.
    * ``perturb_normalized``: e = ρ g1/(‖g1‖ + 1e-7) (code, default) or e = ρ g1.
    * ``h_average``: ``all`` (code, default) x^{t+1} = mean_S(y_K) + (1/N) Σ_all h_i, or
      ``active`` (paper) x^{t+1} = mean_S(y_K + h_i) (F4).
    * ``downlink``: ``code`` (default) charges 2d per client, x^t and h_i − x^t, which is what
      the official code sends; ``model`` charges d, since here h_i stays with the client.
    * ``weighting``: ``uniform`` (default), the plain mean over S_t of F4 in the paper and in
      the official code; ``samples`` weights clients by sample count as B1 does.
    """

    lr: float = Field(0.1, gt=0)
    lr_decay: float = Field(0.998, gt=0, le=1)
    batch_size: PositiveInt | Literal["full"] = 50
    weight_decay: float = Field(1e-3, ge=0)
    clip_norm: float | None = Field(10.0, gt=0)
    lamb: float = Field(0.1, gt=0)
    rho: float = Field(0.1, ge=0)
    alpha: float = Field(1.0, ge=0, le=1)
    perturb_normalized: bool = True
    perturb_eps: float = Field(1e-7, ge=0)
    h_average: Literal["all", "active"] = "all"
    downlink: Literal["code", "model"] = "code"
    weighting: Weighting = "uniform"

    @model_validator(mode="before")
    @classmethod
    def _default_epochs(cls, data: Any) -> Any:
        """5 local epochs unless the user counts K otherwise (steps or epochs)."""
        if isinstance(data, dict) and data.get("local_steps") is None and data.get("local_epochs") is None:
            data = {**data, "local_epochs": 5}
        return data


@vectorizable
@register
class FedSpeed(RoundAlgorithm):
    """FedSpeed in the official code's form, with the paper's variants behind flags.

    Client i keeps h_i = Σ over its rounds of (y_K − x^t) in the client-state store (starts
    at 0). In round t, from y_0 = x^t:

    * (F1) g1 = g_i(y_k; ξ), e = ρ g1/(‖g1‖ + 1e-7), g2 = g_i(y_k + e; ξ), gq = (1−α) g1 + α g2;
    * (F2) y_{k+1} = y_k − η_l [clip(gq + lamb (h_i − x^t), 10) + lamb·y_k + wd·y_k];
    * (F3) h_i ← h_i + (y_K − x^t).

    The server (F4) keeps H = Σ_all h_i, which it can track exactly from the uploads because
    every change of h_i is the y_K − x^t that client uploads; ``h_average: all`` sets
    x^{t+1} = x^t + η_g Σ_{i∈S} w_i (y_K^i − x^t) + H/N. ``active`` uploads y_K − x^t + h_i⁺
    (h_i after F3) and sets x^{t+1} = x^t + η_g Σ_{i∈S} w_i (that). η_g = ``server_lr`` (1 in
    the spec). Default weighting: w_i = 1/|S|, the plain mean of F4 that paper and code both
    use; ``weighting: samples`` gives w_i ∝ n_i (B1).

    Cost: 2 gradient calls a step (1 if ρ = 0 or α = 0, where g2 is not needed); d up; 2d down
    in code form. ``momentum`` acts on the full F2 direction like every client optimizer option.
    """

    name = "fedspeed"
    Config = FedSpeedConfig
    stateful_clients = True

    @classmethod
    def example_scenario(cls, base: dict[str, Any]) -> dict[str, Any]:
        algorithm = {"name": cls.name, "lr": 0.05, "local_steps": 3, "batch_size": 8, "rho": 0.05}
        return {**base, "algorithm": algorithm}

    def init_server(self, x0: Tensor) -> Tensors:
        return {"x": x0.clone(), "h_sum": torch.zeros_like(x0)}

    def init_client(self, client: int, x0: Tensor) -> Tensors:
        return {"h": torch.zeros_like(x0)}

    def bytes_down(self, message: Tensors, client: int) -> int:
        cfg = self.config
        assert isinstance(cfg, FedSpeedConfig)
        model = tensor_bytes(message)
        return 2 * model if cfg.downlink == "code" else model

    def client_update(self, message: Tensors, state: Tensors, ctx: ClientContext) -> tuple[Tensors, Tensors]:
        cfg = self.config
        assert isinstance(cfg, FedSpeedConfig)
        oracle = sam_oracle(
            ctx, cfg.rho, eps=cfg.perturb_eps, normalized=cfg.perturb_normalized, alpha=cfg.alpha
        )
        reply, h_new = _local_round(
            cfg,
            message["x"],
            state["h"],
            lambda x, **hooks: local_training(x, ctx, cfg, gradient=oracle, **hooks),
        )
        return reply, {"h": h_new}

    def client_update_batched(
        self, message: Tensors, states: list[Tensors], bctx: BatchedContext
    ) -> tuple[Tensors, list[Tensors]]:
        """:meth:`client_update` for K clients: F1–F3 on every row of the stack."""
        cfg = self.config
        assert isinstance(cfg, FedSpeedConfig)
        oracle = batched_sam_oracle(
            bctx, cfg.rho, eps=cfg.perturb_eps, normalized=cfg.perturb_normalized, alpha=cfg.alpha
        )
        h = stack_state(states, "h")  # one row a client: every step below works row-wise
        reply, h_new = _local_round(
            cfg, message["x"], h, lambda x, **hooks: batched_training(x, bctx, cfg, gradient=oracle, **hooks)
        )
        return reply, [{"h": row.clone()} for row in h_new]

    def aggregate(self, server: Tensors, replies: list[Reply], round_index: int) -> Tensors:
        cfg = self.config
        assert isinstance(cfg, FedSpeedConfig)
        if cfg.h_average == "active":
            x = server["x"] + cfg.server_lr * self.weighted_mean(replies, "delta_plus_h")
            return {"x": x, "h_sum": server["h_sum"]}
        h_sum = server["h_sum"].clone()
        for reply in replies:
            h_sum.add_(reply.message["delta"])
        x = server["x"] + cfg.server_lr * self.weighted_mean(replies, "delta") + h_sum / self.num_clients
        return {"x": x, "h_sum": h_sum}


def _local_round(
    cfg: FedSpeedConfig, x: Tensor, h: Tensor, train: Callable[..., Tensor]
) -> tuple[Tensors, Tensor]:
    """F1–F3 around ``train`` (the client loop, or the batched stack with one row of h a client).

    The prox-correction lamb (h_i − x^t) is constant during the round and added to the SAM
    gradient before clipping; the decay lamb·y_k comes after clipping (F2). Returns the reply
    (Δ, or Δ + h_i⁺ for the ``h_average: active`` form) and h_i⁺ = h_i + Δ (F3).
    """
    lamb = cfg.lamb
    shift = lamb * (h - x)

    def prox_corrected(y: Tensor, g: Tensor) -> Tensor:
        return g + shift

    def decay(y: Tensor) -> Tensor:
        return lamb * y

    y = train(x, correction=prox_corrected, after_clip=decay)
    delta = y - x
    h_new = h + delta
    reply = {"delta": delta} if cfg.h_average == "all" else {"delta_plus_h": delta + h_new}
    return reply, h_new
