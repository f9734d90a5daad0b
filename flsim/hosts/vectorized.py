"""Batched client execution on one host: ``backend.vectorize`` (docs/vectorized.md).

The clients a host runs in one call are grouped by (shard size, local steps): clients of
one group take the same number of steps on minibatches of the same sizes, so their
parameters stack into one [K, D] tensor and their minibatches into [K, B, ...] tensors, and
the algorithm's batched update (:mod:`flsim.algorithms.batched`) runs them as one
computation. Grouping, not masking: a masked row would need padded minibatches and a loss
reweighted per row, which changes the sums the sequential rule does; a group computes each
client's own equations, only reassociated.

Every client's minibatch indices come from its own ``("client", id, stream)`` generator,
drawn in the order :meth:`ClientContext.batches` draws them (:mod:`flsim.hosts.batch_indices`),
so a client's data never depends on which other clients share its stack, nor on the host it
runs on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from flsim.algorithms.base import Tensors
from flsim.algorithms.batched import (
    BatchedContext,
    StackedBatch,
    StackedGradient,
    unstack,
    vectorize_blocker,
)
from flsim.algorithms.client import ClientContext
from flsim.config.errors import ConfigError
from flsim.config.schema import Scenario
from flsim.hosts.batch_indices import epoch_shuffles, step_slices
from flsim.hosts.stacked_gradients import stacked_gradient
from flsim.rng import torch_rng
from flsim.tasks.base import Shard, Task

logger = logging.getLogger(__name__)

#: ``auto`` batches rounds of at least this many expected participants. Below it the loop
#: can be faster: on linreg (the cheapest clients) the two break even at 4 clients a round
#: and batching is ~1.3x faster at 6; an MLP gains from 2 on (``python -m
#: benchmarks.vectorized``, second table; docs/vectorized.md).
AUTO_MIN_CLIENTS = 6


def vectorize_reason(scenario: Scenario, algorithm: object, task: Task) -> str | StackedGradient:
    """The stacked gradient a batched run would use, or why this run cannot be batched."""
    reason = vectorize_blocker(type(algorithm), getattr(algorithm, "config", None))
    if reason is not None:
        return reason
    gradient = stacked_gradient(task.objective)
    if isinstance(gradient, str):
        return gradient
    k = scenario.expected_participants()
    if scenario.backend.vectorize == "auto" and k < AUTO_MIN_CLIENTS:
        return f"{k} client(s) a round, fewer than the {AUTO_MIN_CLIENTS} from which batching pays"
    return gradient


def check_vectorized(scenario: Scenario, algorithm: object, task: Task) -> StackedGradient | None:
    """The stacked gradient a host uses, or ``None`` for the loop (logged once, for ``auto``).

    Hosts call this when they are built. ``on`` where the run cannot be batched is a
    :class:`ConfigError` naming ``backend.vectorize``; a user meets it earlier, before a run
    directory exists: the algorithm's case at load time (``check_vectorize``), the model's when
    the API has built the task (:func:`check_vectorized_model`).
    """
    mode = scenario.backend.vectorize
    if mode == "off":
        return None
    found = vectorize_reason(scenario, algorithm, task)
    if not isinstance(found, str):
        return found
    if mode == "on":
        raise ConfigError("backend.vectorize", "on", f"{found}; use auto or off")
    logger.info("backend.vectorize: auto runs the clients one by one: %s", found)
    return None


def check_vectorized_model(scenario: Scenario, task: Task) -> None:
    """``on`` with a model that has no batched gradient: a :class:`ConfigError` naming
    ``backend.vectorize``, raised once the task is built and before a run directory exists
    (the algorithm was checked when the scenario was loaded)."""
    if scenario.backend.vectorize == "on" and scenario.kind == "federated":
        found = stacked_gradient(task.objective)
        if isinstance(found, str):
            raise ConfigError("backend.vectorize", "on", f"{found}; use auto or off")


#: One group's batched rule: (its clients, their context) -> (replies, new states); the replies
#: are stacked [K, ...] tensors, or one message a client where messages differ in size.
GroupUpdate = Callable[[list[int], BatchedContext], tuple[Tensors | list[Tensors], list[Tensors]]]


@dataclass
class ClientWork:
    """What the engine accounts for one client's update (``Reply`` without its payload)."""

    num_samples: int
    grad_evals: int
    local_steps: int
    work: int


@dataclass
class _Group:
    """Clients of one call with equal shard size and step count, in call order."""

    size: int
    steps: int
    #: The normalised minibatch size; ``None`` when every step uses the whole shard.
    batch_size: int | None
    positions: list[int] = field(default_factory=list)
    clients: list[int] = field(default_factory=list)
    shards: list[Shard] = field(default_factory=list)
    shuffles: list[Tensor] = field(default_factory=list)


class VectorizedClients:
    """Runs the clients of one call as stacks, one per group (see the module docstring)."""

    def __init__(self, scenario: Scenario, task: Task, algorithm: object, gradient: StackedGradient) -> None:
        self.seed = scenario.seed
        self.task = task
        self.algorithm = algorithm
        self.gradient = gradient

    def run(
        self, clients: list[int], round_index: int, counter: int, update: GroupUpdate
    ) -> list[tuple[int, Tensors, Tensors, ClientWork, dict[str, float]]]:
        """(client, reply, new state, work, extras) for each client, in the order of ``clients``.

        ``update(group, bctx)`` runs one group's batched rule: the round-based hosts call the
        algorithm's ``client_update_batched``, the gossip hosts its ``local_phase_batched``.
        """
        out: list[tuple[int, Tensors, Tensors, ClientWork, dict[str, float]] | None] = [None] * len(clients)
        for group in self._groups(clients, round_index, counter):
            bctx = self._context(group, round_index)
            replies, new_states = update(group.clients, bctx)
            work = ClientWork(group.size, bctx.grad_evals, bctx.steps, bctx.work)
            for row, (position, client) in enumerate(zip(group.positions, group.clients, strict=True)):
                reply = replies[row] if isinstance(replies, list) else unstack(replies, row)
                out[position] = (client, reply, new_states[row], work, bctx.extras[row])
        return [entry for entry in out if entry is not None]

    def _groups(self, clients: list[int], round_index: int, counter: int) -> list[_Group]:
        """Clients grouped by (shard size, steps), each with its minibatch shuffles drawn."""
        cfg = self.algorithm.config  # type: ignore[attr-defined]
        batch_size = None if cfg.batch_size == "full" else int(cfg.batch_size)
        groups: dict[tuple[int, int], _Group] = {}
        for position, client in enumerate(clients):
            shard = self.task.clients[client]
            ctx = ClientContext(
                client=client,
                shard=shard,
                objective=self.task.objective,
                generator=torch_rng(self.seed, "client", client, counter),
                batch_size=batch_size,
                lr=cfg.round_lr(round_index),
                round_index=round_index,
            )
            steps = ctx.steps_for(cfg.local_steps, cfg.local_epochs)
            group = groups.setdefault((len(shard), steps), _Group(len(shard), steps, ctx.batch_size))
            group.positions.append(position)
            group.clients.append(client)
            group.shards.append(shard)
            if ctx.batch_size is not None:  # full batches draw nothing, as in ClientContext.batches
                group.shuffles.append(epoch_shuffles(len(shard), ctx.batch_size, steps, ctx.generator))
        return list(groups.values())

    def _context(self, group: _Group, round_index: int) -> BatchedContext:
        cfg = self.algorithm.config  # type: ignore[attr-defined]
        features = torch.stack([shard.x for shard in group.shards])
        targets = torch.stack([shard.y for shard in group.shards])
        if group.batch_size is None:
            whole = StackedBatch(features, targets)

            def batch(step: int) -> StackedBatch:
                return whole
        else:
            # Row r's sample j is entry r·n + j of the flattened stack: one index_select a step.
            offsets = torch.arange(len(group.clients))[:, None] * group.size
            flat = torch.stack(group.shuffles).add_(offsets)
            slices = step_slices(group.size, group.batch_size, group.steps)
            all_x, all_y = features.flatten(0, 1), targets.flatten(0, 1)

            def batch(step: int) -> StackedBatch:
                index = flat[:, slices[step]]
                pick = index.reshape(-1)
                return StackedBatch(
                    all_x.index_select(0, pick).view(*index.shape, *all_x.shape[1:]),
                    all_y.index_select(0, pick).view(index.shape),
                )

        unit = group.size if group.batch_size is None else group.batch_size
        return BatchedContext(
            group.clients,
            batch,
            self.gradient,
            num_steps=group.steps,
            lr=cfg.round_lr(round_index),
            round_index=round_index,
            unit=unit,
        )
