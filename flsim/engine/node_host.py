"""A host for decentralized nodes: their data, their models, their local work and their mixing.

Like :class:`flsim.engine.host.ClientHost`, a node host builds the task from the scenario
itself and owns the persistent state of the nodes it is given (x_i and any algorithm
state). Mixing runs on the host that owns the receiving node: it is handed the neighbours'
vectors (by object reference on Ray) and sums Σ_j W_ij z_j in node-id order, so the result
is bit-identical wherever it runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from flsim.algorithms.client import ClientContext
from flsim.algorithms.gossip import GossipAlgorithm
from flsim.compression.config import build_compressor
from flsim.config.schema import Scenario
from flsim.engine.host import build_algorithm, configure_torch, initial_model
from flsim.engine.rng import torch_rng
from flsim.tasks import build_task
from flsim.tasks.base import Task

Rows = dict[int, list[tuple[int, float]]]


def mix_vectors(
    rows: Rows, vectors: dict[int, Tensor], sent: Callable[[int], Tensor] | None = None
) -> dict[int, Tensor]:
    """z_i ← W_ii z_i + Σ_{j≠i} W_ij m_j with m_j = sent(j) (z_j by default), in node-id order."""
    out: dict[int, Tensor] = {}
    for node, row in rows.items():
        total = torch.zeros_like(vectors[node])
        for neighbour, weight in row:
            message = vectors[neighbour] if sent is None or neighbour == node else sent(neighbour)
            total.add_(message, alpha=weight)
        out[node] = total
    return out


@dataclass
class NodeWork:
    """What the engine needs to account for one node's local phase."""

    node: int
    grad_evals: int
    local_steps: int


class NodeHost:
    def __init__(self, scenario: Scenario, task: Task | None = None) -> None:
        configure_torch(scenario.backend.torch_threads)
        self.scenario = scenario
        self.task = task if task is not None else build_task(scenario.task, scenario.seed)
        algorithm = build_algorithm(scenario, self.task)
        assert isinstance(algorithm, GossipAlgorithm)
        self.algorithm = algorithm
        self.x0 = initial_model(scenario, self.task)
        uplink = scenario.compression.uplink
        self.gossip_compressor = None if uplink is None else build_compressor(uplink)
        self.states: dict[int, dict[str, Tensor]] = {}

    def _state(self, node: int) -> dict[str, Tensor]:
        state = self.states.get(node)
        if state is None:
            state = self.states[node] = self.algorithm.init_node(node, self.x0)
        return state

    def _context(self, node: int, round_index: int) -> ClientContext:
        cfg = self.algorithm.config
        return ClientContext(
            client=node,
            shard=self.task.clients[node],
            objective=self.task.objective,
            generator=torch_rng(self.scenario.seed, "client", node, round_index),
            batch_size=None if cfg.batch_size == "full" else int(cfg.batch_size),
            lr=cfg.round_lr(round_index),
            round_index=round_index,
        )

    def current(self, nodes: list[int]) -> dict[int, Tensor]:
        return {node: self._state(node)["x"] for node in nodes}

    def local(
        self, nodes: list[int], round_index: int, inputs: dict[int, Tensor] | None = None
    ) -> tuple[dict[int, Tensor], list[NodeWork]]:
        """Each node's local phase from x_i (or from ``inputs[i]``, gossip-first order)."""
        out: dict[int, Tensor] = {}
        work = []
        for node in nodes:
            state = self._state(node)
            ctx = self._context(node, round_index)
            start = state["x"] if inputs is None else inputs[node]
            sent, new_state = self.algorithm.local_phase(start, state, ctx)
            self.states[node] = {**new_state, "x": state["x"]}
            out[node] = sent
            work.append(NodeWork(node, ctx.grad_evals, ctx.steps))
        return out, work

    def mix(self, rows: Rows, stream: int, *vector_sets: dict[int, Tensor]) -> dict[int, Tensor]:
        """One gossip step for this host's receiving nodes (``stream`` keys the compression draws).

        With ``compression.uplink`` set, what node j sends is C(z_j), drawn from the stream
        ``("compression.gossip", j, stream)``: every receiver reconstructs the same message, as
        if j had broadcast it once. A node always uses its own z_i exactly.
        """
        vectors: dict[int, Tensor] = {}
        for part in vector_sets:
            vectors.update(part)
        if self.gossip_compressor is None:
            return mix_vectors(rows, vectors)
        seed, compressor = self.scenario.seed, self.gossip_compressor
        cache: dict[int, Tensor] = {}

        def sent(node: int) -> Tensor:
            if node not in cache:
                generator = torch_rng(seed, "compression.gossip", node, stream)
                cache[node] = compressor.compress(vectors[node], generator).value
            return cache[node]

        return mix_vectors(rows, vectors, sent)

    def finish(self, mixed: dict[int, Tensor], round_index: int) -> None:
        """x_i from the gossiped vector (``after_mix``: D-PSGD applies its pending step here)."""
        for node in sorted(mixed):
            state = self._state(node)
            ctx = self._context(node, round_index)
            x, new_state = self.algorithm.after_mix(mixed[node], state, ctx)
            self.states[node] = {**new_state, "x": x}

    def export_states(self) -> dict[int, dict[str, Tensor]]:
        return dict(sorted(self.states.items()))

    def import_states(self, states: dict[int, dict[str, Tensor]]) -> None:
        self.states = dict(states)
