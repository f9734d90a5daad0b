"""EF21-SGDM: EF21 with momentum on the client's gradient estimator.

Fatkhullin, Tyurin and Richtárik, "Momentum Provably Improves Error Feedback!", NeurIPS 2023,
Algorithm 1. Not in docs/algorithms.md; it extends E4 by one line.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field
from torch import Tensor

from flsim.algorithms.base import Tensors, register
from flsim.algorithms.batched import vectorizable
from flsim.algorithms.client import ClientContext
from flsim.algorithms.ef21 import EF21
from flsim.algorithms.ef_common import ContractiveConfig
from flsim.compression.wire import dense_payload


class EF21SGDMConfig(ContractiveConfig):
    """``eta``: the momentum weight η ∈ (0, 1] of the paper (η = 1 is EF21 itself)."""

    eta: float = Field(0.1, gt=0, le=1, description="Momentum weight η of v_i ← (1−η)v_i + η g_i.")


@vectorizable
@register
class EF21SGDM(EF21):
    """EF21-SGDM: (E4) with c_i = C(v_i − g_i), where v_i ← (1 − η) v_i + η ∇f_i(x; ξ).

    * State: client i keeps v_i and g_i; the server keeps x and g = Σ_i w_i g_i.
    * Init: v_i = g_i = ∇f_i(x⁰; ξ), sent once uncompressed.
    * Round: x ← x − γ g (broadcast); v_i ← (1 − η) v_i + η ∇f_i(x; ξ); c_i = C(v_i − g_i);
      g_i ← g_i + c_i; g ← g + Σ_{i∈S} w_i c_i.

    The momentum averages out minibatch noise before compression, which removes EF21-SGD's
    need for large batches. With η = 1, v_i is the fresh gradient and the iterates are EF21's
    bit for bit (a test checks it).
    """

    name = "ef21_sgdm"
    Config: ClassVar = EF21SGDMConfig
    example_compressor: ClassVar[dict[str, Any]] = {"kind": "natural", "scale_to_contractive": True}

    @property
    def cfg(self) -> EF21SGDMConfig:
        assert isinstance(self.config, EF21SGDMConfig)
        return self.config

    def client_update(self, message: Tensors, state: Tensors, ctx: ClientContext) -> tuple[Tensors, Tensors]:
        grad = self.gradient(message["x"], ctx)
        if "g" not in state:  # Init: v_i = g_i = ∇f_i(x⁰; ξ), sent uncompressed
            return dense_payload(grad), {"v": grad, "g": grad}
        eta = self.cfg.eta
        v: Tensor = (1.0 - eta) * state["v"] + eta * grad
        g = state["g"]
        payload, c = self.send(v - g, ctx)
        return payload, {"v": v, "g": g + c}
