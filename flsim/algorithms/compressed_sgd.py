"""Compressed SGD without error correction (docs/algorithms.md E5): the baseline of section E."""

from __future__ import annotations

from typing import Any, ClassVar

from flsim.algorithms.base import Reply, Tensors, register
from flsim.algorithms.batched import vectorizable
from flsim.algorithms.client import ClientContext
from flsim.algorithms.ef_common import CompressedConfig, CompressedRoundAlgorithm


@vectorizable
@register
class CompressedSGD(CompressedRoundAlgorithm):
    """(E5) x ← x − γ Σ_{i∈S} w_i C(g_i) / Σ_{i∈S} w_i: stateless clients, any compressor.

    With an unbiased C (rand-k, QSGD, natural) this is unbiased SGD with extra variance; with
    a biased contractive C (top-k, sign) it may stall or diverge on heterogeneous problems,
    which is what error feedback fixes (E, property (d)).
    """

    name = "compressed_sgd"
    Config: ClassVar = CompressedConfig
    example_compressor: ClassVar[dict[str, Any]] = {"kind": "qsgd", "levels": 2}

    def client_update(self, message: Tensors, state: Tensors, ctx: ClientContext) -> tuple[Tensors, Tensors]:
        payload, _ = self.send(self.gradient(message["x"], ctx), ctx)
        return payload, state

    def aggregate(self, server: Tensors, replies: list[Reply], round_index: int) -> Tensors:
        x = server["x"]
        return {"x": x - self.config.round_lr(round_index) * self.participant_mean(replies, x)}
