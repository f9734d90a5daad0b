"""Minibatch indices of a stack of clients, drawn as each client's own loop would draw them.

:meth:`ClientContext.batches` shuffles a client's shard once an epoch with
``randperm(n, generator)`` and cuts the shuffle into minibatches of ``batch_size`` (the last
one of an epoch shorter when ``batch_size`` does not divide n). Here the shuffles a client
needs for ``steps`` minibatches are drawn from the same generator in the same order and
concatenated, and local step s reads one slice of them; clients of a group (equal n, equal
steps) share the slices, so a step's indices for the whole stack are one column block of a
[K, epochs·n] tensor. A test checks the slices against ``ClientContext.batches`` itself.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def epoch_shuffles(n: int, batch_size: int, steps: int, generator: torch.Generator) -> Tensor:
    """The shuffles of the epochs ``steps`` minibatches of ``batch_size`` touch, concatenated."""
    epochs = math.ceil(steps / math.ceil(n / batch_size))
    return torch.cat([torch.randperm(n, generator=generator) for _ in range(epochs)])


def step_slices(n: int, batch_size: int, steps: int) -> list[slice]:
    """Where local step s's minibatch lies in :func:`epoch_shuffles`."""
    per_epoch = math.ceil(n / batch_size)
    out = []
    for step in range(steps):
        epoch, index = divmod(step, per_epoch)
        start = epoch * n + index * batch_size
        out.append(slice(start, min(start + batch_size, (epoch + 1) * n)))
    return out
