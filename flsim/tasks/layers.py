"""Layers for the self-normalising and normalised MLPs (``task.model.activation`` / ``norm``).

SELU and alpha dropout follow Klambauer et al., "Self-Normalizing Neural Networks" (2017):
selu(x) = λx for x > 0 and λα(eˣ − 1) otherwise, with λ and α chosen so that mean 0 and
variance 1 are a fixed point of the layer-to-layer moment map (paper eqs. (4)-(5), eq. (14)
for the constants); LeCun-normal weights w ~ N(0, 1/fan_in) put a layer at that fixed point.

Randomness: layers that draw (alpha dropout) are :class:`Stochastic`. They never touch the
global generator: whoever runs them hands them a ``torch.Generator`` (the client's round
stream, see :class:`flsim.tasks.base.ModuleObjective`), and with none they are the identity,
which is what evaluation uses.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

#: Paper eq. (14) and the official selu.py: λ₀₁ and α₀₁, the solution for the fixed point (0, 1).
SELU_LAMBDA = 1.0507009873554804934193349852946
SELU_ALPHA = 1.6732632423543772848170429916717


class SELU(nn.Module):
    """selu(x) = λx for x > 0, λα(eˣ − 1) otherwise (α, λ as attributes, for the tests)."""

    def __init__(self, alpha: float = SELU_ALPHA, scale: float = SELU_LAMBDA) -> None:
        super().__init__()
        self.alpha, self.scale = alpha, scale

    def forward(self, x: Tensor) -> Tensor:
        return self.scale * torch.where(x > 0, x, self.alpha * torch.expm1(x))


class Stochastic(nn.Module):
    """A layer whose forward pass draws random numbers from ``generator`` (None: it is off)."""

    generator: torch.Generator | None = None


class AlphaDropout(Stochastic):
    """Alpha dropout (paper §4): dropped units take α′ = −λα, then x ↦ a·x + b keeps (0, 1).

    With keep probability q: a = (q + α′²q(1 − q))^(−1/2) and b = −a(1 − q)α′. Masks come
    from ``generator``; without one (evaluation) the layer is the identity.
    """

    def __init__(
        self, rate: float, generator: torch.Generator | None = None, alpha: float = SELU_ALPHA
    ) -> None:
        super().__init__()
        keep = 1.0 - rate
        self.rate, self.generator = rate, generator
        self.saturation = -SELU_LAMBDA * alpha
        self.a = (keep + self.saturation**2 * keep * (1.0 - keep)) ** -0.5
        self.b = -self.a * (1.0 - keep) * self.saturation

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.rate == 0.0 or self.generator is None:
            return x
        kept = torch.rand(x.shape, generator=self.generator, dtype=x.dtype) >= self.rate
        return self.a * torch.where(kept, x, torch.full_like(x, self.saturation)) + self.b


class BatchStatNorm(nn.Module):
    """Batch normalisation with the statistics of the batch in hand, and no running buffers.

    y = γ (x − mean_B) / √(var_B + ε) + β, mean and (biased) variance per feature over the
    batch B, in training and evaluation alike. Keeping no running statistics makes the model a
    pure function of its flat parameter vector (γ, β are parameters and are aggregated like any
    weight); evaluation normalises with the statistics of the evaluated set. A one-sample batch
    maps to β (torch's BatchNorm1d refuses it in training mode; a client's last minibatch of an
    epoch can be that small).
    """

    def __init__(self, width: int, dtype: torch.dtype, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(width, dtype=dtype))
        self.bias = nn.Parameter(torch.zeros(width, dtype=dtype))

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(dim=0)
        var = x.var(dim=0, correction=0)
        return (x - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias


@torch.no_grad()
def fan_in_normal_(layer: nn.Module, gain: float, generator: torch.Generator) -> None:
    """Weights N(0, gain/fan_in) (LeCun: gain 1, He: gain 2) and a zero bias, from ``generator``."""
    weight = layer.weight
    weight.normal_(0.0, math.sqrt(gain / weight[0].numel()), generator=generator)
    bias = getattr(layer, "bias", None)
    if isinstance(bias, Tensor):
        bias.zero_()


def lecun_normal_(layer: nn.Module, generator: torch.Generator) -> None:
    """LeCun-normal init, the one SELU's fixed point assumes (weights summing to variance 1)."""
    fan_in_normal_(layer, 1.0, generator)
