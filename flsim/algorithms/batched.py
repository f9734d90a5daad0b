"""Batched client updates: the clients of a round as one stacked computation (docs/vectorized.md).

A sequential client update works on one flat vector y ∈ R^D; its batched twin works on a
stack Y ∈ R^{K×D}, one row a client, and applies the *same* equations row by row: one
stacked gradient call per oracle call of the sequential rule, the same corrections, the same
clipping (per row), the same step. Only the host decides which clients share a stack (those
that take the same number of steps on minibatches of the same sizes) and where their
minibatches come from (each client's own generator, drawn exactly as
:meth:`ClientContext.batches` draws them).

An algorithm opts in with :func:`vectorizable`, which registers its *exact* class: a subclass
(a plugin's FedAvg variant, say) that changes the local rule is never batched by accident;
it falls back to the loop until it registers itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import Tensor

from flsim.algorithms.client import Batch, ClientContext, heavy_ball, step_direction
from flsim.config.errors import ConfigError

Tensors = dict[str, Tensor]
#: ∇ of every row's loss at once: (Y [K, D], features [K, B, ...], targets [K, B]) -> [K, D].
StackedGradient = Callable[[Tensor, Tensor, Tensor], Tensor]


@dataclass
class StackedBatch:
    """One minibatch per client, stacked: ``x`` [K, B, ...], ``y`` [K, B]."""

    x: Tensor
    y: Tensor


class BatchedContext:
    """What K clients of one round share when they run as one stack.

    The host groups clients that take ``num_steps`` steps on minibatches of equal sizes, so
    every counter the sequential :class:`~flsim.algorithms.client.ClientContext` keeps per
    client (gradient calls, steps, work) is the same for every row and is kept once here.
    ``batch(step)`` is the stacked minibatch of local step ``step`` (a SAM step's two
    gradients use the same one, as in the sequential rule).
    """

    def __init__(
        self,
        clients: list[int],
        batch: Callable[[int], StackedBatch],
        gradient: StackedGradient,
        *,
        num_steps: int,
        lr: float,
        round_index: int,
        unit: int,
    ) -> None:
        self.clients = clients
        self.batch = batch
        self.gradient = gradient
        self.num_steps = num_steps
        self.lr = lr
        self.round_index = round_index
        #: Samples in one work unit: the batch size, or the shard size for full batches.
        self.unit = unit
        self.grad_evals = 0
        self.steps = 0
        self.work = 0
        #: Per-row facts for the metrics rows (``ClientContext.extras`` of each client).
        self.extras: list[dict[str, float]] = [{} for _ in clients]

    @property
    def size(self) -> int:
        return len(self.clients)

    def grad(self, y: Tensor, batch: StackedBatch) -> Tensor:
        """One stacked oracle call, charged as one call to every client (``ClientContext.grad``)."""
        self.grad_evals += 1
        self.work += max(1, math.ceil(int(batch.x.shape[1]) / self.unit))
        return self.gradient(y, batch.x, batch.y)


class PrecomputedGradient(ClientContext):
    """One row of a stack as the :class:`ClientContext` of a rule that calls its oracle once,
    at the broadcast x (the compressed one-step methods): that call was made for the whole
    stack, so ``grad`` hands back this client's row. Counters stay with the stack's context.
    """

    def __init__(self, client: int, gradient: Tensor, at: Tensor, lr: float, round_index: int) -> None:
        # Not ClientContext.__init__: there is no shard or generator to give; the rule reads
        # only the client, its rate, the round, the extras and the one gradient.
        self.client = client
        self.lr = lr
        self.round_index = round_index
        self.batch_size = None
        self.grad_evals = self.steps = self.work = 0
        self.extras: dict[str, float] = {}
        self._gradient = gradient
        self._at = at

    def batches(self) -> Iterator[Batch]:
        return iter((Batch(self._at[:0], self._at[:0]),))

    def grad(self, params: Tensor, batch: Batch) -> Tensor:
        if params is not self._at:
            raise RuntimeError("a batched one-step rule took its gradient at another point than x")
        return self._gradient


def one_gradient_each(
    message: Tensors,
    states: list[Tensors],
    bctx: BatchedContext,
    update: Callable[..., tuple[Tensors, Tensors]],
) -> tuple[list[Tensors], list[Tensors]]:
    """A one-gradient rule for a stack: the gradients at the broadcast x as one stacked call,
    then each client's own ``update(message, state, ctx)`` on its row (its recursion and its
    compression, whose messages differ in size from client to client)."""
    x = message["x"]
    grads = bctx.grad(x.expand(bctx.size, -1).contiguous(), bctx.batch(0))
    bctx.steps = 1
    replies, new_states = [], []
    for row, (client, state) in enumerate(zip(bctx.clients, states, strict=True)):
        ctx = PrecomputedGradient(client, grads[row].clone(), x, bctx.lr, bctx.round_index)
        reply, new_state = update(message, state, ctx)
        bctx.extras[row].update(ctx.extras)
        replies.append(reply)
        new_states.append(new_state)
    return replies, new_states


StackedHook = Callable[[Tensor, Tensor], Tensor]
StackedOracle = Callable[[Tensor, StackedBatch], Tensor]


def row_norms(rows: Tensor) -> Tensor:
    """‖row‖ of every row, as float64 values of the rows' own-dtype norms (the sequential
    rules take ``float(v.norm())``, a float32 norm widened to a Python float)."""
    return torch.linalg.vector_norm(rows, dim=1).double()


def clip_rows(rows: Tensor, max_norm: float | None) -> Tensor:
    """``clip_by_norm`` on every row: v·(c/‖v‖) where ‖v‖ > c, v unchanged elsewhere."""
    if max_norm is None:
        return rows
    norms = row_norms(rows)
    scale = torch.where(norms > max_norm, max_norm / norms, torch.ones_like(norms))
    return rows * scale.to(rows.dtype)[:, None]


def batched_local_sgd(
    start: Tensor,
    bctx: BatchedContext,
    *,
    correction: StackedHook | None = None,
    gradient: StackedOracle | None = None,
    after_clip: Callable[[Tensor], Tensor] | None = None,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    clip_norm: float | None = None,
) -> Tensor:
    """:func:`~flsim.algorithms.client.local_sgd` on a stack: K rows of
    y ← y − η (clip(correction(y, g(y))) + after_clip(y) + wd·y), with heavy-ball momentum.

    ``start`` is one vector (every client starts from the broadcast x) or a [K, D] stack.
    """
    y = start.expand(bctx.size, -1).clone() if start.dim() == 1 else start.clone()
    buffer: Tensor | None = None
    oracle = gradient if gradient is not None else bctx.grad
    for step in range(bctx.num_steps):
        raw = oracle(y, bctx.batch(step))
        g = step_direction(
            y, raw, correction, lambda rows: clip_rows(rows, clip_norm), after_clip, weight_decay
        )
        g, buffer = heavy_ball(g, buffer, momentum)
        y.sub_(g, alpha=bctx.lr)
        bctx.steps += 1
    return y


def batched_training(start: Tensor, bctx: BatchedContext, cfg: Any, **oracle: Any) -> Tensor:
    """:func:`batched_local_sgd` with the config's momentum, weight decay and clipping
    (``local_training``'s twin; K, in steps, is ``bctx.num_steps``, set by the host)."""
    return batched_local_sgd(
        start,
        bctx,
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
        clip_norm=cfg.clip_norm,
        **oracle,
    )


def batched_sam_oracle(
    bctx: BatchedContext, rho: float, *, eps: float, normalized: bool = True, alpha: float = 1.0
) -> StackedOracle:
    """``sam_oracle`` on a stack: g1 = g(Y; ξ), e = ρ g1/(‖g1‖ + eps) per row (or ρ g1),
    g2 = g(Y + e; ξ) on the same minibatches, (1−α) g1 + α g2; g1 alone where ρ = 0 or α = 0."""

    def oracle(y: Tensor, batch: StackedBatch) -> Tensor:
        g1 = bctx.grad(y, batch)
        if rho == 0 or alpha == 0:
            return g1
        if normalized:
            scale = (rho / (row_norms(g1) + eps)).to(g1.dtype)[:, None]
            g2 = bctx.grad(y + scale * g1, batch)
        else:
            g2 = bctx.grad(y + rho * g1, batch)
        if alpha == 1:
            return g2
        return (1.0 - alpha) * g1 + alpha * g2

    return oracle


def unstack(stacked: dict[str, Tensor], row: int) -> dict[str, Tensor]:
    """Row ``row`` of every stacked tensor, as a copy (a view would carry, and pickle, the stack)."""
    return {key: value[row].clone() for key, value in stacked.items()}


def stack_state(states: list[dict[str, Tensor]], key: str) -> Tensor:
    return torch.stack([state[key] for state in states])


# --------------------------------------------------------------------------- the registry

#: Classes with a batched client update, by exact class (subclasses are not covered).
VECTORIZABLE: set[type] = set()

AlgorithmClass = TypeVar("AlgorithmClass", bound=type)


def vectorizable(cls: AlgorithmClass) -> AlgorithmClass:
    """Class decorator: ``cls`` has a batched update (``client_update_batched`` for round-based
    algorithms, ``local_phase_batched`` for gossip) that computes its sequential rule."""
    VECTORIZABLE.add(cls)
    return cls


def plain_sgd_steps(config: Any) -> str | None:
    """``None`` when the config's local steps are plain SGD, else the client optimizer's name.

    Only plain SGD (with ``state: reset``) is batched: any other client optimizer keeps
    per-client state and operations that the stacked rule does not reproduce.
    """
    choice = getattr(config, "client_optimizer", None)
    if choice is None:
        return None
    name = str(getattr(choice, "name", choice))
    state = getattr(choice, "state", "reset")
    if name == "sgd" and state == "reset":
        return None
    return name if state == "reset" else f"{name} (state: {state})"


def vectorize_blocker(algorithm_class: type, config: Any) -> str | None:
    """Why this algorithm and config cannot run batched, or ``None`` when they can."""
    name = getattr(algorithm_class, "name", algorithm_class.__name__)
    if algorithm_class not in VECTORIZABLE:
        return f"algorithm {name!r} has no batched client update"
    optimizer = plain_sgd_steps(config)
    if optimizer is not None:
        return f"algorithm {name!r} uses client_optimizer {optimizer}; only plain SGD steps are batched"
    return None


def check_vectorize(algorithm_class: type, config: Any, scenario: Any) -> None:
    """Load-time check: ``backend.vectorize: on`` with an algorithm that cannot be batched."""
    if scenario.backend.vectorize != "on":
        return
    reason = vectorize_blocker(algorithm_class, config)
    if reason is not None:
        raise ConfigError("backend.vectorize", "on", f"{reason}; use auto or off")
