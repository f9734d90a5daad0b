"""Gradients of K clients' losses at K parameter vectors in one call (docs/vectorized.md).

:func:`stacked_gradient` picks, for a task's objective, the fastest exact form it knows:

* the convex tasks' least squares and logistic losses: closed-form batched matmuls;
* a ``Sequential`` of ``Linear`` and ``ReLU`` layers (the ``linear``, ``logreg`` and ``mlp``
  models) with a cross-entropy or mean-squared-error loss: its forward and backward written
  as batched matmuls. ``torch.func`` would pay per-operator dispatch and autograd bookkeeping
  that dominate such small products;
* any other module built only of stateless fully connected layers, activations and
  batch-statistics normalisation (the ``mlp`` with SELU or ``norm: batch``): ``torch.func.vmap``
  of ``grad`` of ``functional_call`` over the stacked parameters, each client's minibatch
  normalised by its own statistics.

Each computes, row by row, the gradient the objective's own ``loss_and_grad`` returns (up to
the order of floating-point sums), and computes each row independently of the other rows, so
a client's result does not depend on which clients share its stack (a test checks it). A
module with buffers or random layers (batch norm, dropout) or convolutions (the ``cnn``) has
no such form here; the host then runs its clients one after another.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from flsim.algorithms.batched import StackedGradient
from flsim.tasks.base import ModuleObjective, Objective
from flsim.tasks.convex import LeastSquaresObjective, LogisticObjective
from flsim.tasks.layers import SELU, BatchStatNorm

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
    SELU,
    BatchStatNorm,
)
#: Losses whose batched backward is written out in :func:`_mlp_gradient`.
LOSSES = (nn.CrossEntropyLoss, nn.MSELoss)


def stacked_gradient(objective: Objective) -> StackedGradient | str:
    """The stacked gradient of ``objective``, or why it has none (a sentence for the log)."""
    found = _stacked_gradient(objective)
    return found if isinstance(found, str) else _never_one_row(found)


def _never_one_row(gradient: StackedGradient) -> StackedGradient:
    """A stack of one client runs as two copies of its row.

    PyTorch hands a batched product with a batch of one to its plain matrix kernels (a
    matrix-vector kernel when the minibatch is one sample), which round differently from the
    batched ones: a client alone in its stack (its host's only client of that shard size)
    would then get other bits than in a larger stack.
    """

    def guarded(params: Tensor, x: Tensor, y: Tensor) -> Tensor:
        if params.shape[0] != 1:
            return gradient(params, x, y)
        return gradient(
            params.expand(2, -1).contiguous(), x.expand(2, *x.shape[1:]), y.expand(2, *y.shape[1:])
        )[:1]

    return guarded


def _stacked_gradient(objective: Objective) -> StackedGradient | str:
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
        x = rows_aligned(x)
        rows = zip(x.unbind(0), rows_aligned(params).unbind(0), strict=True)
        logits = torch.stack([torch.mv(a, p) for a, p in rows])
        residual = torch.sigmoid(logits) - y if logistic else logits - y
        out = product(x.transpose(1, 2), rows_aligned(residual[:, :, None]))[:, :, 0] / x.shape[1]
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

    Activations are kept feature-major, [K, features, B]: with h_0 = xᵀ, z_l = W_l h_{l−1} + b_l
    and h_l = relu(z_l), δ_L = ∂loss/∂z_L (softmax − onehot, or 2(z − y), over the batch size
    B), ∂W_l = δ_l h_{l−1}ᵀ, ∂b_l = Σ_samples δ_l and δ_{l−1} = W_lᵀ δ_l ⊙ [z_{l−1} > 0]. In that
    layout the softmax runs over a middle dimension, which PyTorch's CPU kernel does about
    thirty times faster than over a short last one (10 classes).
    """
    shapes = [(layer.out_features, layer.in_features) for layer in layers]
    sizes = [n for out, inp in shapes for n in (out * inp, out)]
    classify = isinstance(objective.loss_fn, nn.CrossEntropyLoss)

    def gradient(params: Tensor, x: Tensor, y: Tensor) -> Tensor:
        weights = _as_layers(rows_aligned(params), shapes, sizes)
        inputs, pre = [rows_aligned(x).transpose(1, 2)], []
        for index, (w, b) in enumerate(weights):
            z = product(w, inputs[-1], bias=b[:, :, None])
            pre.append(z)
            if index < len(weights) - 1:
                inputs.append(torch.clamp_min(z, 0, out=aligned_empty(z.shape, z.dtype)))
        delta = rows_aligned(_output_delta(pre[-1], y, classify, x.shape[1]))
        parts: list[Tensor] = []
        for index in range(len(weights) - 1, -1, -1):
            # Fresh outputs, joined once at the end: a product written through ``out=`` into a
            # strided view of the [K, D] stack rounds differently with the number of rows.
            parts += [delta.sum(dim=2), product(delta, inputs[index].transpose(1, 2)).flatten(1)]
            if index:
                delta = product(weights[index][0].transpose(1, 2), delta).mul_(pre[index - 1] > 0)
        return torch.cat(parts[::-1], dim=1)

    return gradient


def aligned_empty(shape: torch.Size | tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """An empty [K, ...] stack whose every client's slice starts on a 64-byte boundary.

    MKL's matrix products take other paths, and round differently, when an operand or the
    output starts off a 16-byte boundary. In a plain [K, ...] stack client r's slice lies at
    r times the slice size, so its product would depend on its position in the stack (and on
    the host's share of the round). Padding every slice to a multiple of 64 bytes (CPU
    tensors start 64-byte aligned) gives each client the same alignment in any stack.
    """
    count = math.prod(shape[1:])
    size = torch.empty(0, dtype=dtype).element_size()
    per_row = -(-count * size // 64) * 64 // size
    return torch.empty(shape[0], per_row, dtype=dtype)[:, :count].view(shape)


def rows_aligned(stack: Tensor) -> Tensor:
    """``stack`` laid out as :func:`aligned_empty` lays it out (itself when it already is)."""
    size = stack[0].numel() * stack.element_size()
    if stack.is_contiguous() and size % 64 == 0 and stack.data_ptr() % 64 == 0:
        return stack
    return aligned_empty(stack.shape, stack.dtype).copy_(stack)


def product(a: Tensor, b: Tensor, bias: Tensor | None = None) -> Tensor:
    """[K, m, k] @ [K, k, n] (+ bias) into an aligned output; ``a`` and ``b`` come aligned."""
    out = aligned_empty((a.shape[0], a.shape[1], b.shape[2]), a.dtype)
    return torch.bmm(a, b, out=out) if bias is None else torch.baddbmm(bias, a, b, out=out)


def _as_layers(flat: Tensor, shapes: list[tuple[int, int]], sizes: list[int]) -> list[tuple[Tensor, Tensor]]:
    """Views [K, out, in] and [K, out] of each layer's weight and bias in a [K, D] stack."""
    parts = torch.split(flat, sizes, dim=1)
    return [(parts[2 * i].view(-1, out, inp), parts[2 * i + 1]) for i, (out, inp) in enumerate(shapes)]


def _output_delta(logits: Tensor, y: Tensor, classify: bool, rows: int) -> Tensor:
    """∂(mean loss)/∂logits, feature-major [K, out, B]: (softmax − onehot)/B for cross-entropy,
    2(z − y)/B for MSE."""
    if classify:
        delta = torch.softmax(logits, dim=1)
        delta.scatter_add_(1, y[:, None, :], torch.full_like(delta[:, :1, :], -1.0))
        return delta.div_(rows)
    return (logits - y[:, None, :].to(logits.dtype)).mul_(2.0 / rows)


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
