"""Gradients of K clients' losses at K parameter vectors in one call (docs/vectorized.md).

:func:`stacked_gradient` picks, for a task's objective, the fastest exact form it knows:

* the convex tasks' least squares and logistic losses: closed-form batched matmuls;
* a ``Sequential`` of ``Linear`` and ``ReLU`` layers (the ``linear``, ``logreg`` and ``mlp``
  models) with a cross-entropy or mean-squared-error loss: its forward and backward written
  as batched matmuls. ``torch.func`` would pay per-operator dispatch and autograd bookkeeping
  that dominate such small products;
* any other module built only of stateless fully connected layers and activations:
  ``torch.func.vmap`` of ``grad`` of ``functional_call`` over the stacked parameters.

Each computes, row by row, the gradient the objective's own ``loss_and_grad`` returns (up to
the order of floating-point sums), and computes each row independently of the other rows, so
a client's result does not depend on which clients share its stack (a test checks it). A
module with buffers or random layers (batch norm, dropout) or convolutions (the ``cnn``) has
no such form here; the host then runs its clients one after another.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from flsim.algorithms.batched import StackedGradient
from flsim.tasks.base import ModuleObjective, Objective
from flsim.tasks.convex import LeastSquaresObjective, LogisticObjective

#: Layers without buffers or randomness whose vmapped forward computes every client's row
#: independently of the others in the stack. Convolutions are not among them: vmap runs them
#: as one grouped convolution whose rounding changes with the number of clients stacked, so
#: a client's result would depend on its host's share of the round (local vs Ray).
STATELESS_LAYERS = (
    nn.Linear,
    nn.ReLU,
    nn.SELU,
    nn.Tanh,
    nn.Flatten,
    nn.Unflatten,
    nn.Sequential,
    nn.Identity,
)
#: Losses whose batched backward is written out in :func:`_mlp_gradient`.
LOSSES = (nn.CrossEntropyLoss, nn.MSELoss)


def stacked_gradient(objective: Objective) -> StackedGradient | str:
    """The stacked gradient of ``objective``, or why it has none (a sentence for the log)."""
    if isinstance(objective, LeastSquaresObjective | LogisticObjective):
        return _linear_model_gradient(objective)
    if not isinstance(objective, ModuleObjective):
        return f"the objective {type(objective).__name__} has no batched gradient"
    module, loss = objective.module, objective.loss_fn
    if not isinstance(loss, LOSSES) or getattr(loss, "reduction", "mean") != "mean":
        return f"the loss {type(loss).__name__} has no batched gradient"
    if any(True for _ in module.buffers()):
        return "the model has buffers (e.g. batch-norm statistics), which clients would share"
    unknown = sorted({type(m).__name__ for m in module.modules() if not isinstance(m, STATELESS_LAYERS)})
    if unknown:
        return f"the model's layers {unknown} have no batched form here"
    layers = _linear_relu_layers(module)
    if layers is not None:
        return _mlp_gradient(objective, layers)
    return _vmap_gradient(objective)


# --------------------------------------------------------------------------- convex


def _linear_model_gradient(objective: LeastSquaresObjective | LogisticObjective) -> StackedGradient:
    """Aᵀ r / n + l2·x per row, r = Ax − b (least squares) or σ(Ax) − y (logistic).

    Ax is one matrix-vector product a row: a batched product rounds it differently from the
    sequential ``torch.mv``, while Aᵀr as a batched product gives ``mv``'s bits, so the
    convex tasks' batched runs reproduce their sequential runs exactly.
    """
    logistic = isinstance(objective, LogisticObjective)
    l2 = objective.l2

    def gradient(params: Tensor, x: Tensor, y: Tensor) -> Tensor:
        logits = torch.stack([torch.mv(a, p) for a, p in zip(x.unbind(0), params.unbind(0), strict=True)])
        residual = torch.sigmoid(logits) - y if logistic else logits - y
        out = torch.bmm(x.transpose(1, 2), residual[:, :, None])[:, :, 0] / x.shape[1]
        return out + l2 * params if l2 else out

    return gradient


# --------------------------------------------------------------------------- MLP by hand


def _linear_relu_layers(module: nn.Module) -> list[nn.Linear] | None:
    """The Linear layers of Linear (ReLU Linear)* [Flatten(0) after a 1-output head], or None."""
    if not isinstance(module, nn.Sequential):
        return None
    children = list(module)
    if children and isinstance(children[-1], nn.Flatten):
        head = children[-2] if len(children) > 1 else None
        flat = children[-1]
        if not (isinstance(head, nn.Linear) and head.out_features == 1 and flat.start_dim == 0):
            return None
        children = children[:-1]
    linears = children[0::2]
    if not all(isinstance(m, nn.Linear) and m.bias is not None for m in linears):
        return None
    if not all(isinstance(m, nn.ReLU) for m in children[1::2]) or len(children) % 2 == 0:
        return None
    return linears  # type: ignore[return-value]


def _mlp_gradient(objective: ModuleObjective, layers: list[nn.Linear]) -> StackedGradient:
    """Forward and backward of Linear-ReLU-...-Linear + cross-entropy/MSE as batched matmuls.

    With h_0 = x, z_l = h_{l−1} W_lᵀ + b_l, h_l = relu(z_l): δ_L = ∂loss/∂z_L (softmax − onehot,
    or 2(z − y), over the batch size B), ∂W_l = δ_lᵀ h_{l−1}, ∂b_l = Σ_rows δ_l and
    δ_{l−1} = (δ_l W_l) ⊙ [z_{l−1} > 0].
    """
    shapes = [(layer.out_features, layer.in_features) for layer in layers]
    sizes = [n for out, inp in shapes for n in (out * inp, out)]
    classify = isinstance(objective.loss_fn, nn.CrossEntropyLoss)

    def gradient(params: Tensor, x: Tensor, y: Tensor) -> Tensor:
        rows = x.shape[1]
        grads = torch.empty_like(params)
        weights = _as_layers(params, shapes, sizes)
        grad_views = _as_layers(grads, shapes, sizes)
        inputs, pre = [x], []
        for index, (w, b) in enumerate(weights):
            z = torch.baddbmm(b[:, None, :], inputs[-1], w.transpose(1, 2))
            pre.append(z)
            if index < len(weights) - 1:
                inputs.append(z.clamp_min(0))
        delta = _output_delta(pre[-1], y, classify, rows)
        for index in range(len(weights) - 1, -1, -1):
            gw, gb = grad_views[index]
            torch.bmm(delta.transpose(1, 2), inputs[index], out=gw)
            torch.sum(delta, dim=1, out=gb)
            if index:
                delta = torch.bmm(delta, weights[index][0]).mul_(pre[index - 1] > 0)
        return grads

    return gradient


def _as_layers(flat: Tensor, shapes: list[tuple[int, int]], sizes: list[int]) -> list[tuple[Tensor, Tensor]]:
    """Views [K, out, in] and [K, out] of each layer's weight and bias in a [K, D] stack."""
    parts = torch.split(flat, sizes, dim=1)
    return [(parts[2 * i].view(-1, out, inp), parts[2 * i + 1]) for i, (out, inp) in enumerate(shapes)]


def _output_delta(logits: Tensor, y: Tensor, classify: bool, rows: int) -> Tensor:
    """∂(mean loss)/∂logits: (softmax − onehot)/B for cross-entropy, 2(z − y)/B for MSE."""
    if classify:
        delta = torch.softmax(logits, dim=2)
        delta.scatter_add_(2, y[:, :, None], torch.full_like(delta[:, :, :1], -1.0))
        return delta.div_(rows)
    return (logits - y[:, :, None].to(logits.dtype)).mul_(2.0 / rows)


# --------------------------------------------------------------------------- torch.func


def _vmap_gradient(objective: ModuleObjective) -> StackedGradient:
    """vmap over clients of grad(loss ∘ functional_call) at each client's flat parameters."""
    module, loss_fn = objective.module, objective.loss_fn
    layout = [(name, p.shape, p.numel()) for name, p in module.named_parameters()]

    def loss(flat: Tensor, x: Tensor, y: Tensor) -> Tensor:
        params, offset = {}, 0
        for name, shape, n in layout:
            params[name] = flat[offset : offset + n].view(shape)
            offset += n
        return loss_fn(functional_call(module, params, (x,)), y)

    batched: Callable[[Tensor, Tensor, Tensor], Tensor] = vmap(grad(loss))
    return batched
