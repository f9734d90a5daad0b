"""An flsim plugin: FedAvg with server momentum, registered as ``fedavgm_example``.

Importing this module is what registers the algorithm: flsim imports it before it
validates a scenario, either because the package is installed (its ``flsim.plugins`` entry
point) or because a scenario names it (``plugins: [flsim_plugin_example]``).

Update rule (Hsu et al. 2019, "FedAvgM"): clients run FedAvg's local SGD and reply
Δ_i = y_K^i − x^t; the server keeps a velocity v^{t+1} = β v^t + Σ_i w_i Δ_i and steps
x^{t+1} = x^t + η_g v^{t+1}. With β = 0 it is FedAvg, bit for bit.
"""

from __future__ import annotations

from pydantic import Field
from torch import Tensor

from flsim.algorithms.base import AlgorithmConfig, Reply, RoundAlgorithm, Tensors, local_training, register
from flsim.algorithms.client import ClientContext


class FedAvgMConfig(AlgorithmConfig):
    """FedAvg's client optimizer plus the server's momentum β."""

    server_momentum: float = Field(0.9, ge=0, lt=1, description="β of the server's velocity.")


@register
class FedAvgM(RoundAlgorithm):
    """FedAvg with a momentum buffer ``v`` in the server state (checkpointed with ``x``)."""

    name = "fedavgm_example"
    Config = FedAvgMConfig

    def init_server(self, x0: Tensor) -> Tensors:
        return {"x": x0.clone(), "v": x0.new_zeros(x0.shape)}

    def client_update(self, message: Tensors, state: Tensors, ctx: ClientContext) -> tuple[Tensors, Tensors]:
        x = message["x"]
        return {"delta": local_training(x, ctx, self.config) - x}, state

    def aggregate(self, server: Tensors, replies: list[Reply], round_index: int) -> Tensors:
        velocity = self.config.server_momentum * server["v"] + self.weighted_mean(replies, "delta")
        return {"x": server["x"] + self.config.server_lr * velocity, "v": velocity}
