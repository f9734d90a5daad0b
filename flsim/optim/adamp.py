"""AdamP and SGDP: momentum optimizers that do not inflate scale-invariant weights.

Heo, Chun, Oh, Han, Yun, Kim, Uh & Ha, "AdamP: Slowing Down the Slowdown for Momentum
Optimizers on Scale-invariant Weights", ICLR 2021 (arXiv:2006.08217); official code
github.com/clovaai/AdamP (``adamp/adamp.py``, ``adamp/sgdp.py``), also shipped as timm's
``timm/optim/adamp.py`` and ``timm/optim/sgdp.py``.

Why. A weight w is *scale-invariant* when the loss satisfies L(c·w) = L(w) for every c > 0,
as for the rows of a linear layer followed by batch normalisation. Then ⟨w, ∇L(w)⟩ = 0, so a
plain gradient step only adds η²‖g‖² to ‖w‖², and the *effective* step size η/‖w‖² shrinks
as the norm grows. Momentum (and Adam's per-coordinate scaling) adds a radial component to
the update, and the norm then grows much faster, decaying the effective step prematurely.
AdamP/SGDP remove the radial part of the update, Π_w(p) = p − (ŵ·p)ŵ with ŵ = w/‖w‖, which
leaves the update direction on the sphere (the only thing that matters for a
scale-invariant weight) unchanged and lets ‖w‖² grow only by η²‖Π_w(p)‖².

Which weights are projected. The optimizer cannot know which weights are scale-invariant, so
it tests the current gradient (paper, Algorithm 1/2 and §3.2): the projection is applied
when max |cos(w, ∇w)| < δ/√dim under the *channel view* (each output channel, i.e. row of the
tensor flattened to ``(shape[0], -1)``, is one vector; dim = its length) or else under the
*layer view* (the whole tensor is one vector; dim = its size). δ = 0.1 is the paper's value
for every experiment and the official default. The δ/√dim scale comes from the paper: a
random direction in R^dim has |cos| of order 1/√dim with a given vector, so a gradient that
is δ times more orthogonal than chance marks the weight as scale-invariant. Only tensors of
two or more dimensions are tested (biases and normalisation affine parameters never are),
as in the official code.

Weight decay is decoupled (``p ← p·(1 − lr·wd·r)``, applied before the step) with
r = ``wd_ratio`` = 0.1 on projected weights and r = 1 otherwise (official default); SGDP
divides the decay by (1 − momentum), as the official ``sgdp.py`` does.

Deviations from the official code:

* ŵ and the cosine use ``max(‖·‖, eps)`` in the denominators instead of ``‖·‖ + eps``. With
  the sum, the projected update keeps a radial part of relative size ~2·eps/‖w‖; with the
  clamp it is orthogonal to w up to float rounding, which is the property the paper's norm
  identity ‖w_{t+1}‖² = ‖w_t‖² + η²‖Π_w(p)‖² relies on (trajectories agree with the official
  AdamP to a few 1e-9 over 50 float64 steps).
* SGDP keeps the *unprojected* momentum buffer, as in the paper's Algorithm 1
  (p_t = β·p_{t−1} + g_t, q_t = Π(p_t), w ← w − η·q_t). Without Nesterov, the official
  ``sgdp.py`` projects the buffer in place, because its update and buffer are one tensor.

Both optimizers keep all their state in ``self.state`` (tensors and ints, so
``state_dict``/``load_state_dict`` round-trip), draw no random numbers and hold no global
state. Per parameter they count ``step`` and ``projected_steps`` (how many steps took the
projection), which is how the AdamP study measures where the projection fires.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.optim.optimizer import Optimizer, ParamsT

#: Paper §3.2 and official default: the projection threshold is δ/√dim with δ = 0.1.
DEFAULT_DELTA = 0.1
#: Official default (``wd_ratio=0.1``): weight decay is scaled by this on projected weights.
DEFAULT_WD_RATIO = 0.1


def _flat(tensor: Tensor, per_channel: bool) -> Tensor:
    """The channel view ``(shape[0], -1)`` or the layer view ``(1, -1)`` of a tensor."""
    return tensor.reshape(tensor.shape[0], -1) if per_channel else tensor.reshape(1, -1)


def max_abs_cosine(weight: Tensor, grad: Tensor, per_channel: bool, eps: float) -> float:
    """max over the rows of the view of |cos(w_row, g_row)| (norms clamped below at ``eps``)."""
    w, g = _flat(weight, per_channel), _flat(grad, per_channel)
    norms = w.norm(dim=1).clamp_min(eps) * g.norm(dim=1).clamp_min(eps)
    return float(((w * g).sum(dim=1).abs() / norms).max())


def remove_radial(weight: Tensor, update: Tensor, per_channel: bool, eps: float) -> Tensor:
    """Π_w(p) = p − (ŵ·p)ŵ per row of the view: the update with its component along w removed."""
    w, p = _flat(weight, per_channel), _flat(update, per_channel)
    unit = w / w.norm(dim=1, keepdim=True).clamp_min(eps)
    return (p - unit * (unit * p).sum(dim=1, keepdim=True)).reshape(update.shape)


def project_if_scale_invariant(
    weight: Tensor, grad: Tensor, update: Tensor, delta: float, eps: float
) -> Tensor | None:
    """The projected update if the gradient test fires (channel view first, then layer view).

    Returns None when neither view passes max |cos(w, ∇w)| < δ/√dim, i.e. when the weight is
    not detected as scale-invariant; the caller then uses ``update`` unchanged.
    """
    if weight.dim() < 2:
        return None
    for per_channel in (True, False):
        dim = _flat(weight, per_channel).shape[1]
        if max_abs_cosine(weight, grad, per_channel, eps) < delta / math.sqrt(dim):
            return remove_radial(weight, update, per_channel, eps)
    return None


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


class _ProjectedOptimizer(Optimizer):
    """Shared step loop: per-parameter update, projection test, decoupled decay, step count."""

    def _direction(self, param: Tensor, state: dict[str, Any], group: dict[str, Any]) -> Tensor:
        raise NotImplementedError

    def _decay_scale(self, group: dict[str, Any]) -> float:
        return float(group["lr"]) * float(group["weight_decay"])

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One update of every parameter with a gradient; returns the closure's loss if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                if param.grad.is_sparse:
                    raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
                self._update(param, group)
        return loss

    def _update(self, param: Tensor, group: dict[str, Any]) -> None:
        state = self.state[param]
        if not state:
            state["step"] = 0
            state["projected_steps"] = 0
        state["step"] += 1
        update = self._direction(param, state, group)
        projected = project_if_scale_invariant(param, param.grad, update, group["delta"], group["eps"])
        ratio = 1.0
        if projected is not None:
            update, ratio = projected, group["wd_ratio"]
            state["projected_steps"] += 1
        if group["weight_decay"] > 0:
            param.mul_(1.0 - self._decay_scale(group) * ratio)
        param.add_(update, alpha=-self._step_size(state, group))

    def _step_size(self, state: dict[str, Any], group: dict[str, Any]) -> float:
        return float(group["lr"])


class AdamP(_ProjectedOptimizer):
    """Adam whose update loses its radial part on weights detected as scale-invariant.

    Moments and bias corrections are Adam's (Kingma & Ba 2015), as in the official code:
    p = m_t / (√v_t / √(1−β₂ᵗ) + eps), step lr/(1−β₁ᵗ). With ``nesterov`` the numerator is
    β₁·m_t + (1−β₁)·g_t. On weights the test does not flag, AdamP is exactly AdamW (Adam
    with decoupled weight decay), and with ``weight_decay=0`` exactly Adam.
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        delta: float = DEFAULT_DELTA,
        wd_ratio: float = DEFAULT_WD_RATIO,
        nesterov: bool = False,
    ) -> None:
        _check(lr >= 0.0, f"lr must be >= 0, got {lr}")
        _check(all(0.0 <= b < 1.0 for b in betas), f"betas must lie in [0, 1), got {betas}")
        _check(eps > 0.0, f"eps must be > 0, got {eps}")
        _check(weight_decay >= 0.0, f"weight_decay must be >= 0, got {weight_decay}")
        _check(delta >= 0.0, f"delta must be >= 0, got {delta}")
        _check(wd_ratio >= 0.0, f"wd_ratio must be >= 0, got {wd_ratio}")
        defaults = {
            "lr": lr,
            "betas": tuple(betas),
            "eps": eps,
            "weight_decay": weight_decay,
            "delta": delta,
            "wd_ratio": wd_ratio,
            "nesterov": nesterov,
        }
        super().__init__(params, defaults)

    def _direction(self, param: Tensor, state: dict[str, Any], group: dict[str, Any]) -> Tensor:
        grad = param.grad
        beta1, beta2 = group["betas"]
        if "exp_avg" not in state:
            state["exp_avg"] = torch.zeros_like(param)
            state["exp_avg_sq"] = torch.zeros_like(param)
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg.mul_(beta1).add_(grad, alpha=1.0 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
        denom = (exp_avg_sq.sqrt() / math.sqrt(1.0 - beta2 ** state["step"])).add_(group["eps"])
        if group["nesterov"]:
            return (beta1 * exp_avg + (1.0 - beta1) * grad) / denom
        return exp_avg / denom

    def _step_size(self, state: dict[str, Any], group: dict[str, Any]) -> float:
        return float(group["lr"]) / (1.0 - group["betas"][0] ** state["step"])


class SGDP(_ProjectedOptimizer):
    """SGD with heavy-ball (or Nesterov) momentum whose update is projected like AdamP's.

    buf ← μ·buf + (1−dampening)·g; the update is buf, or g + μ·buf with ``nesterov``. On
    weights the test does not flag and with ``weight_decay=0`` this is ``torch.optim.SGD``
    with the same momentum (with ``dampening=0``, whose first step also uses buf = g).
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        eps: float = 1e-8,
        delta: float = DEFAULT_DELTA,
        wd_ratio: float = DEFAULT_WD_RATIO,
    ) -> None:
        _check(lr >= 0.0, f"lr must be >= 0, got {lr}")
        _check(0.0 <= momentum < 1.0, f"momentum must lie in [0, 1), got {momentum}")
        _check(0.0 <= dampening <= 1.0, f"dampening must lie in [0, 1], got {dampening}")
        _check(weight_decay >= 0.0, f"weight_decay must be >= 0, got {weight_decay}")
        _check(not nesterov or momentum > 0.0, "nesterov needs momentum > 0")
        _check(eps > 0.0, f"eps must be > 0, got {eps}")
        _check(delta >= 0.0, f"delta must be >= 0, got {delta}")
        _check(wd_ratio >= 0.0, f"wd_ratio must be >= 0, got {wd_ratio}")
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
            "eps": eps,
            "delta": delta,
            "wd_ratio": wd_ratio,
        }
        super().__init__(params, defaults)

    def _direction(self, param: Tensor, state: dict[str, Any], group: dict[str, Any]) -> Tensor:
        grad, momentum = param.grad, group["momentum"]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(param)
        buf = state["momentum_buffer"]
        buf.mul_(momentum).add_(grad, alpha=1.0 - group["dampening"])
        if group["nesterov"]:
            return grad + momentum * buf
        return buf

    def _decay_scale(self, group: dict[str, Any]) -> float:
        # Official sgdp.py: the decoupled decay is divided by (1 − momentum).
        return float(group["lr"]) * float(group["weight_decay"]) / (1.0 - float(group["momentum"]))
