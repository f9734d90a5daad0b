"""Muon and Drop-Muon: momentum orthogonalised by a Newton–Schulz iteration, on all or some layers.

Muon (K. Jordan et al., 2024, "Muon: An optimizer for hidden layers in neural networks",
kellerjordan.github.io/posts/muon; official code github.com/KellerJordan/Muon, ``muon.py``).
For each weight matrix W with gradient G the official ``muon_update`` does

    M ← β·M + (1 − β)·G                       (``momentum.lerp_(grad, 1 − beta)``)
    U ← (1 − β)·G + β·M  if Nesterov, else M   (``grad.lerp_(momentum, beta)``)
    W ← W·(1 − η·λ) − η · √max(1, rows/cols) · NS5(U)

with β = 0.95, Nesterov on, five Newton–Schulz steps and decoupled weight decay λ (all official
defaults). The update replaces the momentum by (approximately) the orthogonal factor of its
polar decomposition, the steepest-descent direction under the spectral norm, so every singular
direction of the layer moves by about the same amount. The shape factor √max(1, rows/cols)
(official ``update *= max(1, grad.size(-2) / grad.size(-1))**0.5``) scales up tall matrices, whose
orthogonal factor has a smaller RMS entry.

The momentum is the exponential moving average of the official code, not the plain sum
M ← βM + G of the Muon blog post's pseudocode. The two differ only by the factor (1 − β) on the
buffer (and on the Nesterov mix), and NS5 first divides its input by its Frobenius norm, so
the resulting steps agree up to the 1e-7 guard in that division.

NS5 (official ``zeropower_via_newtonschulz5``). X ← G/(‖G‖_F + 1e-7), transposed so that it is
wide, then five times X ← a·X + (b·A + c·A²)·X with A = X·Xᵀ. On the singular values this is
the scalar map x ↦ a·x + b·x³ + c·x⁵ with (a, b, c) = (3.4445, −4.7750, 2.0315), the official
coefficients, chosen there to maximise the slope at zero (a) while keeping the iterates near 1:
after five steps the singular values are not exactly 1 but lie in a band around it (the official
docstring: roughly uniform in (0.5, 1.5) in bfloat16; in float64 about [0.68, 1.2]).

Drop-Muon (K. Gruntkowska, Y. Maziane, Z. Qu & P. Richtárik, "Drop-Muon: Update Less, Converge
Faster", arXiv:2510.02239, 2025). Randomized Progressive Training: each step draws a starting
layer s from a distribution over {0, …, b − 1} (layers numbered from the input) and updates only
the layers s, …, b − 1 with the Muon rule; the layers below s keep their weights *and* their
momentum buffers unchanged. Since only the layers above the cut are updated, backpropagation can
stop at layer s, which is where the saving comes from: the training loop must cut the graph
there (see :meth:`DropMuon.sample_cut`). The paper's experiments draw s uniformly ("uniform index
sampling"), the default here. Its algorithm writes the momentum as M ← (1 − β′)M + β′∇ with β′
the weight of the new gradient; β′ = 1 − β is the same EMA as Muon's above.

Deviations from the official code: NS5 runs in the dtype of the parameter instead of bfloat16
(on CPU, bfloat16 matmuls are slow and not needed; the flsim oracle tests run in float64), the
gradient is not overwritten by the Nesterov mix (the official code reuses ``grad`` as scratch),
and a parameter whose ``grad`` is ``None`` is skipped (the official code substitutes zeros to keep
its distributed all-gather in step; there is no all-gather here). Only matrices are accepted:
the official docstring assigns vectors (biases, gains) and embeddings to another optimizer.

Both optimizers keep all their state in ``self.state`` and ``param_groups`` (so
``state_dict``/``load_state_dict`` round-trip) and never touch the global random generator;
Drop-Muon's cut is drawn from a ``torch.Generator`` the caller passes in and owns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.optim.optimizer import Optimizer, ParamsT

#: Official ``zeropower_via_newtonschulz5``: ``a, b, c = (3.4445, -4.7750, 2.0315)``.
NS5_COEFFICIENTS: tuple[float, float, float] = (3.4445, -4.7750, 2.0315)
#: Official default ``ns_steps=5``.
NS5_STEPS = 5
#: Official guard in the Frobenius normalisation, ``X.norm() + 1e-7``.
NS5_EPS = 1e-7
#: Official defaults of ``Muon``/``SingleDeviceMuon``: lr 0.02, momentum 0.95, Nesterov on.
DEFAULT_LR = 0.02
DEFAULT_MOMENTUM = 0.95


def newton_schulz5(
    matrix: Tensor,
    steps: int = NS5_STEPS,
    coefficients: tuple[float, float, float] = NS5_COEFFICIENTS,
    eps: float = NS5_EPS,
) -> Tensor:
    """The quintic Newton–Schulz approximation of the orthogonal polar factor of ``matrix``.

    Runs in ``matrix``'s dtype. Each step applies x ↦ a·x + b·x³ + c·x⁵ to every singular value of
    the Frobenius-normalised matrix and leaves the singular vectors unchanged.
    """
    if matrix.ndim != 2:
        raise ValueError(f"newton_schulz5 takes a matrix, got shape {tuple(matrix.shape)}")
    a, b, c = coefficients
    tall = matrix.shape[0] > matrix.shape[1]
    x = matrix.mT if tall else matrix
    x = x / (x.norm() + eps)
    for _ in range(steps):
        gram = x @ x.mT
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.mT if tall else x


def shape_scale(shape: torch.Size) -> float:
    """√max(1, rows/cols): the official factor that enlarges the update of a tall matrix."""
    return max(1.0, shape[0] / shape[1]) ** 0.5


class Muon(Optimizer):
    """Muon for matrix parameters (every parameter must be two-dimensional)."""

    def __init__(
        self,
        params: ParamsT,
        lr: float = DEFAULT_LR,
        momentum: float = DEFAULT_MOMENTUM,
        nesterov: bool = True,
        weight_decay: float = 0.0,
        ns_steps: int = NS5_STEPS,
    ) -> None:
        _check(lr > 0.0, f"lr must be positive, got {lr}")
        _check(0.0 <= momentum < 1.0, f"momentum must lie in [0, 1), got {momentum}")
        _check(weight_decay >= 0.0, f"weight_decay must be >= 0, got {weight_decay}")
        _check(ns_steps >= 1, f"ns_steps must be >= 1, got {ns_steps}")
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "nesterov": nesterov,
            "weight_decay": weight_decay,
            "ns_steps": ns_steps,
        }
        super().__init__(params, defaults)
        for group in self.param_groups:
            for param in group["params"]:
                _check(param.ndim == 2, f"Muon takes matrices only, got shape {tuple(param.shape)}")

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            if self._group_active(group):
                for param in group["params"]:
                    if param.grad is not None:
                        self._update(param, group)
        return loss

    def _group_active(self, group: dict[str, Any]) -> bool:
        return True

    def _update(self, param: Tensor, group: dict[str, Any]) -> None:
        state = self.state[param]
        if not state:
            state["momentum_buffer"] = torch.zeros_like(param)
            state["step"] = 0
        beta, grad = group["momentum"], param.grad
        buffer: Tensor = state["momentum_buffer"]
        buffer.lerp_(grad, 1.0 - beta)
        direction = grad.lerp(buffer, beta) if group["nesterov"] else buffer
        update = newton_schulz5(direction, steps=group["ns_steps"]) * shape_scale(param.shape)
        param.mul_(1.0 - group["lr"] * group["weight_decay"])
        param.add_(update, alpha=-group["lr"])
        state["step"] += 1


class DropMuon(Muon):
    """Muon with Randomized Progressive Training: each step updates only the layers s, …, b − 1.

    The layers are the parameter groups, in forward order (input first); a plain iterable of
    tensors makes each tensor its own layer. Before each forward pass the training loop calls
    :meth:`sample_cut`, which draws s from ``generator`` with the given ``probabilities``
    (uniform by default) and marks the groups from s on as active; the loop must run the layers
    below s without building a graph (or detach the activation entering layer s), so that
    backpropagation stops there. :meth:`step` then updates only the active groups; the frozen
    ones keep their weights and momentum. :meth:`set_cut` fixes s instead of drawing it.
    """

    def __init__(
        self,
        params: ParamsT,
        generator: torch.Generator,
        probabilities: Sequence[float] | None = None,
        **muon: Any,
    ) -> None:
        super().__init__(_layers(params), **muon)
        layers = len(self.param_groups)
        weights = [1.0 / layers] * layers if probabilities is None else list(probabilities)
        _check(len(weights) == layers, f"{len(weights)} probabilities for {layers} layers")
        _check(all(w >= 0.0 for w in weights) and sum(weights) > 0.0, "probabilities must be >= 0, not all 0")
        self.generator = generator
        self.probabilities = torch.tensor(weights, dtype=torch.float64)
        self.set_cut(0)

    def sample_cut(self) -> int:
        """Draw the starting layer s from ``generator``, activate layers s, …, b − 1, return s."""
        cut = int(torch.multinomial(self.probabilities, 1, generator=self.generator))
        self.set_cut(cut)
        return cut

    def set_cut(self, cut: int) -> None:
        """Activate the layers ``cut``, …, b − 1 for the next :meth:`step` (kept in ``param_groups``)."""
        _check(0 <= cut < len(self.param_groups), f"cut {cut} outside 0..{len(self.param_groups) - 1}")
        for index, group in enumerate(self.param_groups):
            group["active"] = index >= cut

    def _group_active(self, group: dict[str, Any]) -> bool:
        return bool(group["active"])


def _layers(params: ParamsT) -> list[dict[str, Any]]:
    """Parameter groups as given, or one group per tensor when plain tensors are given."""
    if isinstance(params, Tensor) or not isinstance(params, Iterable):
        raise TypeError("params must be an iterable of tensors or of parameter groups")
    items = list(params)
    return [item if isinstance(item, dict) else {"params": [item]} for item in items]


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)
