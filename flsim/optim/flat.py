"""flsim's optimizers on the flat parameter vectors that federated algorithms work with.

Algorithms see a model as one 1-D vector (``flsim.tasks.base``), but AdamP's projection test
needs each weight's shape (its channel view), Muon orthogonalises matrices, and Drop-Muon
freezes whole layers. :func:`layout_of` recovers that structure from a task's objective
(the parameters of the wrapped module, in the order of the flat vector), and
:class:`FlatOptimizer` runs a ``torch.optim`` optimizer on *views* of the flat iterate, so
each step updates the vector in place with exactly the optimizer's own arithmetic.

Optimizer state crosses rounds as flat tensors (:meth:`FlatOptimizer.export_state`): a
per-parameter tensor becomes one vector of the model's size, a per-parameter number (a step
count) one entry per parameter block, under a ``per_block.`` key. That is the form the
client-state store spills to disk and checkpoints keep, and it loads back into a fresh
optimizer bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.optim.optimizer import Optimizer

FlatState = dict[str, Tensor]
#: Key prefix of per-block numbers (step counts) in an exported state; others are flat vectors.
PER_BLOCK = "per_block."


@dataclass(frozen=True)
class Block:
    """One parameter tensor inside the flat vector: where it starts, its shape, its layer."""

    offset: int
    shape: tuple[int, ...]
    layer: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class Layout:
    """The parameter blocks of a model in flat order; layers are numbered from the input."""

    blocks: tuple[Block, ...]
    dim: int

    @property
    def num_layers(self) -> int:
        return self.blocks[-1].layer + 1

    def layer_offset(self, layer: int) -> int:
        """Where layer ``layer`` starts in the flat vector: layers ≥ it form the tail from there."""
        return next(block.offset for block in self.blocks if block.layer == layer)


def layout_of(objective: Any) -> Layout:
    """The blocks of an objective: each module that owns parameters is one layer.

    An objective without a module (the closed-form convex tasks) is one layer of one vector.
    The flat order of a module objective is ``module.parameters()``, which walks the modules
    in the same pre-order as ``module.modules()``, so the offsets below are the vector's.
    """
    module = getattr(objective, "module", None)
    if module is None:
        return Layout((Block(0, (int(objective.dim),), 0),), int(objective.dim))
    blocks: list[Block] = []
    offset, layer = 0, -1
    for sub in module.modules():
        own = list(sub.parameters(recurse=False))
        if not own:
            continue
        layer += 1
        for param in own:
            blocks.append(Block(offset, tuple(param.shape), layer))
            offset += param.numel()
    if offset != objective.dim:
        raise ValueError(f"parameter blocks cover {offset} entries, the objective has {objective.dim}")
    return Layout(tuple(blocks), offset)


#: Builds the torch optimizer for the given parameter views and learning rate.
OptimizerFactory = Callable[[list[Tensor], float], Optimizer]
#: A hand-written update for the blocks the optimizer does not take: (param, grad, state, lr).
AuxRule = Callable[[Tensor, Tensor, dict[str, Any], float], None]


class FlatOptimizer:
    """One local run of an optimizer on the flat iterate ``y``, which it updates in place.

    ``takes(block)`` says which blocks the torch optimizer owns (all of them for AdamP/SGDP,
    the matrices for Muon); the others are updated by ``aux`` (Muon's rule for vectors).
    ``matrix_view`` presents a block of more than two dimensions as ``(shape[0], −1)``, as
    Muon's official code does for convolution kernels.
    """

    def __init__(
        self,
        y: Tensor,
        layout: Layout,
        factory: OptimizerFactory,
        lr: float,
        *,
        takes: Callable[[Block], bool] = lambda block: True,
        aux: AuxRule | None = None,
        matrix_view: bool = False,
    ) -> None:
        self.layout = layout
        self.params: list[Tensor] = []
        for block in layout.blocks:
            view = y[block.offset : block.offset + block.numel]
            shape = (block.shape[0], -1) if matrix_view and len(block.shape) > 2 else block.shape
            self.params.append(view.view(shape))
        self.owned = [takes(block) for block in layout.blocks]
        if aux is None and not all(self.owned):
            raise ValueError("blocks outside the optimizer need an aux rule")
        self.optimizer = factory([p for p, own in zip(self.params, self.owned, strict=True) if own], lr)
        self.aux = aux
        self.lr = lr
        self.aux_states: dict[int, dict[str, Any]] = {}

    def _state(self, index: int) -> dict[str, Any]:
        if self.owned[index]:
            return self.optimizer.state[self.params[index]]
        return self.aux_states.setdefault(index, {})

    def step(self, gradient: Tensor, active: Sequence[bool] | None = None) -> None:
        """One update from the flat ``gradient``; blocks with ``active[i]`` false are left alone."""
        for index, (param, block) in enumerate(zip(self.params, self.layout.blocks, strict=True)):
            on = active is None or active[index]
            grad = gradient[block.offset : block.offset + block.numel].view(param.shape) if on else None
            if self.owned[index]:
                param.grad = grad
            elif grad is not None:
                assert self.aux is not None
                self.aux(param, grad, self._state(index), self.lr)
        self.optimizer.step()

    def export_state(self) -> FlatState:
        """Every state entry as a flat tensor (see the module docstring); {} before any step."""
        out: FlatState = {}
        for index, block in enumerate(self.layout.blocks):
            for key, value in self._state(index).items():
                if isinstance(value, Tensor) and value.numel() == block.numel:
                    flat = out.setdefault(key, torch.zeros(self.layout.dim, dtype=value.dtype))
                    flat[block.offset : block.offset + block.numel] = value.reshape(-1)
                else:
                    scalar = value.item() if isinstance(value, Tensor) else value
                    dtype = torch.int64 if isinstance(scalar, int) else torch.float64
                    blocks = len(self.layout.blocks)
                    vector = out.setdefault(PER_BLOCK + key, torch.zeros(blocks, dtype=dtype))
                    vector[index] = scalar
        return out

    def import_state(self, state: FlatState) -> None:
        """Load what :meth:`export_state` gave; blocks never stepped (step 0) start fresh."""
        if not state:
            return
        steps = state[PER_BLOCK + "step"]
        for index, (param, block) in enumerate(zip(self.params, self.layout.blocks, strict=True)):
            if int(steps[index]) == 0:
                continue
            target = self._state(index)
            for key, flat in state.items():
                if key.startswith(PER_BLOCK):
                    target[key.removeprefix(PER_BLOCK)] = flat[index].item()
                else:
                    target[key] = flat[block.offset : block.offset + block.numel].clone().view(param.shape)
