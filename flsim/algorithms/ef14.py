"""EF14: error feedback (docs/algorithms.md E3), Seide et al. 2014; Stich, Cordonnier and Jaggi 2018."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from flsim.algorithms.base import Reply, Tensors, register
from flsim.algorithms.batched import vectorizable
from flsim.algorithms.client import ClientContext
from flsim.algorithms.ef_common import CompressedRoundAlgorithm, ContractiveConfig


@vectorizable
@register
class EF14(CompressedRoundAlgorithm):
    """EF14: one round is one step of (E3).

    * State: client i keeps e_i (0 before its first round); the server keeps x only.
    * (E3) p_i = γ g_i + e_i; Δ_i = C(p_i) is the message; e_i ← p_i − Δ_i;
      x ← x − Σ_{i∈S} w_i Δ_i / Σ_{i∈S} w_i (the mean Δ_i over this round's participants).

    The error is kept in the units of the step (γ g_i), so with a constant γ the method
    levels off at a γ-dependent floor on heterogeneous problems (E, property (d)).
    """

    name = "ef14"
    Config: ClassVar = ContractiveConfig
    stateful_clients = True
    example_compressor: ClassVar[dict[str, Any]] = {"kind": "sign"}

    def init_client(self, client: int, x0: Tensor) -> Tensors:
        return {"e": torch.zeros_like(x0)}

    def client_update(self, message: Tensors, state: Tensors, ctx: ClientContext) -> tuple[Tensors, Tensors]:
        p = ctx.lr * self.gradient(message["x"], ctx) + state["e"]
        payload, delta = self.send(p, ctx)
        e_new = p - delta
        ctx.extras["error_norm"] = float(torch.linalg.vector_norm(e_new))
        return payload, {"e": e_new}

    def aggregate(self, server: Tensors, replies: list[Reply], round_index: int) -> Tensors:
        x = server["x"]
        return {"x": x - self.participant_mean(replies, x)}
