"""What a client sees during one round: its data, a gradient oracle, and a seeded batch stream.

The context counts every gradient-oracle call, so SAM-type methods (two gradients a step)
are charged honestly, and it owns the only random generator a client update may use.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from flsim.tasks.base import Objective, Shard


@dataclass
class Batch:
    x: Tensor
    y: Tensor


class ClientContext:
    """One client's view of one round.

    ``generator`` is derived from ``(seed, "client", client, round)`` by the caller, so the
    batches a client draws are the same whichever worker runs it.
    """

    def __init__(
        self,
        client: int,
        shard: Shard,
        objective: Objective,
        generator: torch.Generator,
        batch_size: int | None,
        lr: float,
        round_index: int,
    ) -> None:
        self.client = client
        self.shard = shard
        self.objective = objective
        self.generator = generator
        self.batch_size = None if batch_size is None or batch_size >= len(shard) else batch_size
        self.lr = lr
        self.round_index = round_index
        self.grad_evals = 0
        self.steps = 0
        #: Compute work in minibatch-gradient units, the engine's virtual compute time: one
        #: per oracle call on up to ``batch_size`` samples, ⌈|B|/b⌉ for a larger batch B (a
        #: FedAMD anchor's full local gradient), so a SAM step takes twice a plain step.
        self.work = 0
        #: Per-client facts for the metrics rows (averaged over a round's replies).
        self.extras: dict[str, float] = {}
        #: The client optimizer's persisted state, loaded by the host (``state: persist``).
        self.optimizer_state: dict[str, Tensor] = {}
        #: Its state after this round, for the host to store; ``None`` when nothing persists.
        self.new_optimizer_state: dict[str, Tensor] | None = None
        #: Drop-Muon: the flat offset of the lowest layer trained, so the reply sends the tail.
        self.upload_from = 0

    @property
    def num_samples(self) -> int:
        return len(self.shard)

    def steps_for(self, local_steps: int | None, local_epochs: int | None) -> int:
        """K in steps: epochs are converted with ⌈n_i / batch⌉ steps per epoch."""
        if local_steps is not None:
            return local_steps
        assert local_epochs is not None
        per_epoch = 1 if self.batch_size is None else math.ceil(self.num_samples / self.batch_size)
        return local_epochs * per_epoch

    def batches(self) -> Iterator[Batch]:
        """An endless stream of minibatches: seeded reshuffles, epoch after epoch."""
        if self.batch_size is None:
            full = Batch(self.shard.x, self.shard.y)
            while True:
                yield full
        n = self.num_samples
        while True:
            order = torch.randperm(n, generator=self.generator)
            for start in range(0, n, self.batch_size):
                index = order[start : start + self.batch_size]
                yield Batch(self.shard.x[index], self.shard.y[index])

    def grad(self, params: Tensor, batch: Batch) -> Tensor:
        """One gradient-oracle call g_i(params; batch)."""
        self.grad_evals += 1
        unit = self.batch_size or self.num_samples
        self.work += max(1, math.ceil(int(batch.x.shape[0]) / unit))
        # Stochastic models (alpha dropout) draw their masks from this client's round stream.
        draws = {"generator": self.generator} if getattr(self.objective, "stochastic", False) else {}
        _, gradient = self.objective.loss_and_grad(params, batch.x, batch.y, **draws)
        return gradient

    def full_grad(self, params: Tensor) -> Tensor:
        return self.grad(params, Batch(self.shard.x, self.shard.y))


GradientHook = Callable[[Tensor, Tensor], Tensor]


def clip_by_norm(vector: Tensor, max_norm: float | None) -> Tensor:
    if max_norm is None:
        return vector
    norm = float(vector.norm())
    return vector * (max_norm / norm) if norm > max_norm else vector


def step_direction(
    y: Tensor,
    g: Tensor,
    correction: GradientHook | None,
    clip: Callable[[Tensor], Tensor],
    after_clip: Callable[[Tensor], Tensor] | None,
    weight_decay: float,
) -> Tensor:
    """clip(correction(y, g)) + after_clip(y) + wd·y: one local step's direction before momentum.

    Shared by the client loop and the batched stack (:mod:`flsim.algorithms.batched`), which
    differ only in how they clip (one vector, or each row), so both apply the same terms in
    the same order and round the same way.
    """
    if correction is not None:
        g = correction(y, g)
    g = clip(g)
    if after_clip is not None:
        g = g + after_clip(y)
    if weight_decay:
        g = g + weight_decay * y
    return g


def heavy_ball(g: Tensor, buffer: Tensor | None, momentum: float) -> tuple[Tensor, Tensor | None]:
    """(the step, the new buffer) of heavy-ball momentum b ← μ b + g; plain g without momentum.

    The first buffer is a copy: the oracle or correction may hand back a tensor they still hold.
    """
    if not momentum:
        return g, buffer
    buffer = g.clone() if buffer is None else buffer.mul_(momentum).add_(g)
    return buffer, buffer


def local_sgd(
    start: Tensor,
    ctx: ClientContext,
    num_steps: int,
    *,
    correction: GradientHook | None = None,
    gradient: Callable[[Tensor, Batch], Tensor] | None = None,
    after_clip: Callable[[Tensor], Tensor] | None = None,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    clip_norm: float | None = None,
    momentum_state: dict[str, Tensor] | None = None,
) -> Tensor:
    """K steps of y ← y − η (clip(correction(y, g(y))) + after_clip(y) + wd·y), with heavy-ball momentum.

    ``gradient`` replaces the plain oracle (SAM-type methods), ``correction`` adds the
    algorithm's drift term (FedProx's μ(y − x), SCAFFOLD's c − c_i, ...). Clipping applies to
    the corrected gradient, before weight decay, as the FedSpeed code does (F2); ``after_clip``
    adds a term after clipping (FedSpeed's lamb·y_k, F2). ``momentum_state`` carries the
    momentum buffer across rounds (``client_optimizer.state: persist``): read at the start
    (key ``momentum_buffer``), written back at the end.
    """
    y = start.clone()
    buffer: Tensor | None = None
    if momentum_state is not None and "momentum_buffer" in momentum_state:
        buffer = momentum_state["momentum_buffer"].clone()
    stream = ctx.batches()
    oracle = gradient if gradient is not None else ctx.grad
    for _ in range(num_steps):
        raw = oracle(y, next(stream))
        g = step_direction(y, raw, correction, lambda v: clip_by_norm(v, clip_norm), after_clip, weight_decay)
        g, buffer = heavy_ball(g, buffer, momentum)
        y.sub_(g, alpha=ctx.lr)
        ctx.steps += 1
    if momentum_state is not None and buffer is not None:
        momentum_state["momentum_buffer"] = buffer
    return y
