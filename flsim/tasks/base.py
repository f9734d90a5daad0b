"""The task contract: per-client data, a differentiable objective over a flat vector, evaluation.

Algorithms never see an ``nn.Module``. They see flat parameter vectors (1-D tensors in the
task's canonical dtype) and an :class:`Objective` that maps (vector, batch) to (loss,
gradient). This keeps every update rule a pure function of tensors, which is what makes
bit-equality between backends, checkpointing, compression and gossip straightforward.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor, nn

from flsim.tasks.layers import Stochastic

#: Initialises one layer's weight and bias in place from a generator (e.g. LeCun normal).
WeightInit = Callable[[nn.Module, torch.Generator], None]


@dataclass(frozen=True)
class Shard:
    """Features and targets of one client (or of the test set)."""

    x: Tensor
    y: Tensor

    def __len__(self) -> int:
        return int(self.x.shape[0])


class Objective(Protocol):
    """Loss of a flat parameter vector on a batch; mean over the batch's samples."""

    dim: int
    dtype: torch.dtype

    def init_params(self, generator: torch.Generator) -> Tensor: ...

    def loss_and_grad(self, params: Tensor, x: Tensor, y: Tensor) -> tuple[float, Tensor]: ...

    def loss(self, params: Tensor, x: Tensor, y: Tensor) -> float: ...

    def predict(self, params: Tensor, x: Tensor) -> Tensor: ...


class ModuleObjective:
    """Wraps an ``nn.Module`` so that it is driven by a flat vector.

    The module's parameters are rebound once to *views* of one flat buffer, and their
    ``.grad`` to views of one flat gradient buffer. Loading a vector is then a single
    ``copy_`` and reading the gradient a single ``clone``: the per-step cost is the bare
    PyTorch forward/backward, which the engine-overhead benchmark holds us to.
    """

    def __init__(self, module: nn.Module, loss_fn: nn.Module, weight_init: WeightInit | None = None) -> None:
        self.module = module
        self.loss_fn = loss_fn
        #: Draws a layer's weight (and bias) from the generator; None: PyTorch's default init.
        self.weight_init = weight_init
        #: Layers that draw random numbers (alpha dropout): they draw from the generator a
        #: training gradient is given, and are off for evaluation (``stochastic`` tells callers).
        self._stochastic = [m for m in module.modules() if isinstance(m, Stochastic)]
        self.stochastic = bool(self._stochastic)
        params = [p for p in module.parameters()]
        self.dtype = params[0].dtype
        self.dim = sum(p.numel() for p in params)
        self._flat = torch.zeros(self.dim, dtype=self.dtype)
        self._grad = torch.zeros(self.dim, dtype=self.dtype)
        offset = 0
        for p in params:
            n = p.numel()
            p.data = self._flat[offset : offset + n].view_as(p)
            p.grad = self._grad[offset : offset + n].view_as(p)
            offset += n
        self._params = params

    def init_params(self, generator: torch.Generator) -> Tensor:
        """PyTorch's default layer init (or ``weight_init``), drawn from a seeded generator.

        Normalisation layers (one-dimensional weights) start as the identity: γ = 1, β = 0.
        """
        with torch.no_grad():
            for layer in self.module.modules():
                weight = getattr(layer, "weight", None)
                if not isinstance(weight, torch.Tensor):
                    continue
                if weight.dim() < 2:
                    weight.fill_(1.0)
                    layer.bias.zero_()
                    continue
                if self.weight_init is not None:
                    self.weight_init(layer, generator)
                    continue
                nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)
                bias = getattr(layer, "bias", None)
                if isinstance(bias, torch.Tensor):
                    fan_in = weight[0].numel()
                    bound = 1.0 / math.sqrt(fan_in)
                    nn.init.uniform_(bias, -bound, bound, generator=generator)
        return self._flat.clone()

    def _load(self, params: Tensor) -> None:
        self._flat.copy_(params)

    def loss_and_grad(
        self, params: Tensor, x: Tensor, y: Tensor, generator: torch.Generator | None = None
    ) -> tuple[float, Tensor]:
        """Loss and gradient; stochastic layers draw from ``generator`` (none: they are off)."""
        self._load(params)
        self._grad.zero_()
        for layer in self._stochastic:
            layer.generator = generator
        try:
            loss = self.loss_fn(self.module(x), y)
        finally:
            for layer in self._stochastic:
                layer.generator = None
        loss.backward()
        return float(loss.detach()), self._grad.clone()

    @torch.no_grad()
    def loss(self, params: Tensor, x: Tensor, y: Tensor) -> float:
        self._load(params)
        return float(self.loss_fn(self.module(x), y))

    @torch.no_grad()
    def predict(self, params: Tensor, x: Tensor) -> Tensor:
        self._load(params)
        return self.module(x)


@dataclass
class Task:
    """Everything an algorithm needs about the learning problem.

    ``optimum`` is the exact minimiser of the global objective
    f(x) = Σ_i (n_i / n) f_i(x) (the empirical risk over all training samples), when known.
    Synthetic tasks give every client the same n_i, so this is also (1/N) Σ_i f_i.
    """

    name: str
    clients: Sequence[Shard]
    test: Shard
    objective: Objective
    classification: bool
    num_classes: int | None = None
    optimum: Tensor | None = None
    optimum_value: float | None = None
    smoothness: Sequence[float] | None = None
    strong_convexity: Sequence[float] | None = None
    #: f(x) without pooling the training data (lazy populations: from streamed statistics).
    loss_oracle: Callable[[Tensor], float] | None = field(default=None, repr=False)
    #: Lazy populations defer their O(N) optimum pass to the first evaluation, so hosts that
    #: only run clients (Ray actors) never pay it: () -> (optimum, optimum_value, loss_oracle).
    pending_optimum: Callable[[], tuple[Tensor, float, Callable[[Tensor], float] | None]] | None = field(
        default=None, repr=False
    )
    _train_cache: Shard | None = field(default=None, repr=False)

    @property
    def num_clients(self) -> int:
        return len(self.clients)

    @property
    def dim(self) -> int:
        return self.objective.dim

    @property
    def dtype(self) -> torch.dtype:
        return self.objective.dtype

    def client_sizes(self) -> list[int]:
        sizes = getattr(self.clients, "sizes", None)
        return sizes() if callable(sizes) else [len(c) for c in self.clients]

    def train_pool(self) -> Shard:
        """All training samples, concatenated in client-id order (for train loss)."""
        if self._train_cache is None:
            self._train_cache = Shard(
                torch.cat([c.x for c in self.clients]), torch.cat([c.y for c in self.clients])
            )
        return self._train_cache

    def resolve_optimum(self) -> None:
        """Compute a deferred optimum (and the loss oracle that comes with it) once."""
        if self.pending_optimum is not None:
            pending, self.pending_optimum = self.pending_optimum, None
            self.optimum, self.optimum_value, self.loss_oracle = pending()

    def global_loss(self, params: Tensor) -> float:
        self.resolve_optimum()
        if self.loss_oracle is not None:
            return self.loss_oracle(params)
        pool = self.train_pool()
        return self.objective.loss(params, pool.x, pool.y)

    def evaluate(self, params: Tensor, train_loss: bool = True) -> dict[str, float]:
        """Metrics of a single model: losses, accuracy, and distance to the optimum if known."""
        out: dict[str, float] = {}
        self.resolve_optimum()
        if train_loss or self.optimum is not None:
            out["train_loss"] = self.global_loss(params)
        out["test_loss"] = self.objective.loss(params, self.test.x, self.test.y)
        if self.classification:
            pred = self.objective.predict(params, self.test.x)
            labels = pred.argmax(dim=1) if pred.dim() > 1 else (pred > 0).long()
            out["test_acc"] = float((labels == self.test.y.long()).double().mean())
        if self.optimum is not None and self.optimum_value is not None:
            out["optimality_gap"] = out["train_loss"] - self.optimum_value
            out["dist_to_opt"] = float(torch.sum((params - self.optimum) ** 2))
        return out
