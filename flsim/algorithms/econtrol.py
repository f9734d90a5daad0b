"""EControl (docs/algorithms.md E1–E2), Gao, Islamov and Stich, ICLR 2024."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import Field
from torch import Tensor

from flsim.algorithms.base import Reply, Tensors, register
from flsim.algorithms.batched import vectorizable
from flsim.algorithms.client import ClientContext
from flsim.algorithms.ef_common import CompressedRoundAlgorithm, ContractiveConfig
from flsim.compression.wire import dense_payload


class EControlConfig(ContractiveConfig):
    """``eta``: the feedback strength η ∈ [0, 1]; ``null`` (default) means δ of the compressor
    for the model's dimension (E: "tune it on a log grid in [0.01, 1] that includes δ")."""

    eta: float | None = Field(None, ge=0, le=1, description="Feedback strength η; null → δ(d).")


@vectorizable
@register
class EControl(CompressedRoundAlgorithm):
    """EControl: one round is one step of (E1) on the participants and (E2) on the server.

    * State: client i keeps e_i and h_i; the server keeps x and h = Σ_i w_i h_i over all N.
    * Init (E, "Init"): e_i = 0, h_i = g_i(x⁰), sent once uncompressed (d values) by every
      client in the engine's initial phase, charged like a round; the server sets h.
    * (E1) Δ_i = C(η e_i + g_i − h_i), the only message; e_i ← e_i + g_i − h_i − Δ_i;
      h_i ← h_i + Δ_i.
    * (E2) Δ = Σ_{i∈S} w_i Δ_i; x ← x − γ (h + Δ); h ← h + Δ (h + Δ is formed once, as the
      step and the new h). With full participation and equal weights this is E2 verbatim;
      with partial participation absent clients keep their h_i, so h stays Σ_i w_i h_i.

    Properties (tests): with C = identity the iterates are gradient descent for any η (e_i
    stays exactly 0); e_i + h_i advances by g_i, so x − γ ē moves exactly along −γ ḡ (the
    virtual iterate); with η = 0 the iterates equal :class:`~flsim.algorithms.ef21.EF21`'s.
    With deterministic gradients the first round sends Δ_i = C(0) = 0 and steps along h(x⁰).
    """

    name = "econtrol"
    Config: ClassVar = EControlConfig
    stateful_clients = True
    example_compressor: ClassVar[dict[str, Any]] = {"kind": "topk", "k": 2}

    @property
    def cfg(self) -> EControlConfig:
        assert isinstance(self.config, EControlConfig)
        return self.config

    def eta(self, d: int) -> float:
        """η for a d-dimensional model: the configured one, or the compressor's δ(d)."""
        return self.cfg.eta if self.cfg.eta is not None else self.compressor.delta(d)

    def init_server(self, x0: Tensor) -> Tensors:
        return {"x": x0.clone(), "h": torch.zeros_like(x0)}

    def init_phase(self, server: Tensors) -> Tensors | None:
        return {"x": server["x"]}

    def finish_init_phase(self, server: Tensors, replies: list[Reply]) -> Tensors:
        """h = Σ_i w_i h_i with every client's h_i = g_i(x⁰) (the reset messages)."""
        x = server["x"]
        return {"x": x, "h": server["h"] + self.weighted_sum(replies, x)}

    def client_update(self, message: Tensors, state: Tensors, ctx: ClientContext) -> tuple[Tensors, Tensors]:
        x = message["x"]
        g = self.gradient(x, ctx)
        if "h" not in state:  # Init: h_i = g_i(x⁰), e_i = 0, sent uncompressed
            return dense_payload(g), {"e": torch.zeros_like(g), "h": g}
        e, h = state["e"], state["h"]
        u = g - h  # formed once: with C = identity and e = 0 the error stays exactly 0
        payload, delta = self.send(self.eta(x.numel()) * e + u, ctx)
        e_new = e + u - delta
        ctx.extras["error_norm"] = float(torch.linalg.vector_norm(e_new))
        return payload, {"e": e_new, "h": h + delta}

    def aggregate(self, server: Tensors, replies: list[Reply], round_index: int) -> Tensors:
        """(E2). A reset (first) message counts as Δ_i = h_i, its client having counted as 0."""
        x, h = server["x"], server["h"]
        estimate = h + self.weighted_sum(replies, x)
        return {"x": x - self.config.round_lr(round_index) * estimate, "h": estimate}
