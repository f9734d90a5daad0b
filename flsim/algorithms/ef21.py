"""EF21 (docs/algorithms.md E4), Richtárik, Sokolov and Fatkhullin, NeurIPS 2021."""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor

from flsim.algorithms.base import Reply, Tensors, register
from flsim.algorithms.batched import vectorizable
from flsim.algorithms.client import ClientContext
from flsim.algorithms.ef_common import CompressedRoundAlgorithm, ContractiveConfig
from flsim.compression.wire import dense_payload


@vectorizable
@register
class EF21(CompressedRoundAlgorithm):
    """EF21: one round is one step of (E4).

    * State: client i keeps g_i; the server keeps x and g = Σ_i w_i g_i over all N clients.
    * Init: g_i = ∇f_i(x⁰), sent once uncompressed by every client in the engine's initial
      phase (charged like a round); the server sets g.
    * (E4) x ← x − γ g; c_i = C(∇f_i(x) − g_i) at the *new* x; g_i ← g_i + c_i;
      g ← g + Σ_{i∈S} w_i c_i. The broadcast is the stepped iterate x − γ g, and ``aggregate``
      stores the same expression as the new x, so both are the same bits.

    With the literal E1/E4 orders, EControl with η = 0 and EF21 have the same iterates after
    every round (a test checks it bit for bit); EControl's h then lags EF21's g by one round.
    """

    name = "ef21"
    Config: ClassVar = ContractiveConfig
    stateful_clients = True
    example_compressor: ClassVar[dict[str, Any]] = {"kind": "randk", "k": 2, "scale_to_contractive": True}

    def init_server(self, x0: Tensor) -> Tensors:
        return {"x": x0.clone(), "g": x0.new_zeros(x0.shape)}

    def init_phase(self, server: Tensors) -> Tensors | None:
        return {"x": server["x"]}

    def finish_init_phase(self, server: Tensors, replies: list[Reply]) -> Tensors:
        x = server["x"]
        return {"x": x, "g": server["g"] + self.weighted_sum(replies, x)}

    def stepped(self, server: Tensors, round_index: int) -> Tensor:
        """x − γ g, the first line of (E4)."""
        return server["x"] - self.config.round_lr(round_index) * server["g"]

    def broadcast(self, server: Tensors, round_index: int) -> Tensors:
        return {"x": self.stepped(server, round_index)}

    def client_update(self, message: Tensors, state: Tensors, ctx: ClientContext) -> tuple[Tensors, Tensors]:
        grad = self.gradient(message["x"], ctx)
        if "g" not in state:  # Init: g_i = ∇f_i(x⁰), sent uncompressed
            return dense_payload(grad), {"g": grad}
        g = state["g"]
        payload, c = self.send(grad - g, ctx)
        return payload, {"g": g + c}

    def aggregate(self, server: Tensors, replies: list[Reply], round_index: int) -> Tensors:
        """g ← g + Σ w_i c_i (a reset message counts as c_i = g_i); x ← x − γ g_old."""
        x = self.stepped(server, round_index)
        return {"x": x, "g": server["g"] + self.weighted_sum(replies, x)}
