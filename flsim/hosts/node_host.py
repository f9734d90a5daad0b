"""A host for decentralized nodes: their data, their models, their local work and their mixing.

Like :class:`flsim.hosts.client_host.ClientHost`, a node host builds the task from the scenario
itself and owns the persistent state of the nodes it is given (x_i and any algorithm
state). Mixing runs on the host that owns the receiving node: it is handed the neighbours'
vectors (by object reference on Ray) and sums Σ_j W_ij z_j in node-id order, so the result
is bit-identical wherever it runs.

With ``compression.choco`` a gossip step is CHOCO-Gossip (Koloskova, Stich and Jaggi, ICML
2019, Alg. 1) in two halves: :meth:`NodeHost.publish` on the sender's host (q_j = C(z_j − x̂_j),
x̂_j ← x̂_j + q_j), then :meth:`NodeHost.choco_mix` on the receiver's host
(z_i ← z_i + γ Σ_j W_ij (x̂_j − x̂_i)). Every neighbour of j holds the same copy of x̂_j,
rebuilt from the same q_j, so the simulator keeps one copy, on j's host, and ships it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from flsim.algorithms.base import Tensors
from flsim.algorithms.batched import BatchedContext
from flsim.algorithms.client import ClientContext
from flsim.algorithms.client_optimizers import run_with_optimizer_state
from flsim.algorithms.gossip import GossipAlgorithm
from flsim.compression.config import build_compressor
from flsim.config.schema import Scenario
from flsim.hosts.client_host import build_algorithm, configure_torch, initial_model
from flsim.hosts.vectorized import VectorizedClients, check_vectorized
from flsim.rng import torch_rng
from flsim.tasks import build_task
from flsim.tasks.base import Task
from flsim.tasks.lazy_clients import configure_client_cache, prefetch_clients

Rows = dict[int, list[tuple[int, float]]]

#: Where a checkpoint keeps a node's CHOCO copy x̂ within its state.
HAT_KEY = "gossip.choco_hat"


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
        configure_client_cache(self.task, scenario.backend)
        algorithm = build_algorithm(scenario, self.task)
        assert isinstance(algorithm, GossipAlgorithm)
        self.algorithm = algorithm
        self.x0 = initial_model(scenario, self.task)
        uplink = scenario.compression.uplink
        self.gossip_compressor = None if uplink is None else build_compressor(uplink)
        self.choco = scenario.compression.choco
        self.states: dict[int, dict[str, Tensor]] = {}
        #: CHOCO's public copies x̂_j of this host's nodes (zero before a node first sends).
        self.hats: dict[int, Tensor] = {}
        gradient = check_vectorized(scenario, algorithm, self.task)
        self.vectorized = (
            None if gradient is None else VectorizedClients(scenario, self.task, algorithm, gradient)
        )

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
        """Each node's local phase from x_i (or from ``inputs[i]``, gossip-first order); with
        ``backend.vectorize``, the nodes as stacks (:mod:`flsim.hosts.vectorized`)."""
        prefetch_clients(self.task, nodes)
        if self.vectorized is not None:
            return self._local_batched(nodes, round_index, inputs)
        out: dict[int, Tensor] = {}
        work = []
        for node in nodes:
            state = self._state(node)
            ctx = self._context(node, round_index)
            start = state["x"] if inputs is None else inputs[node]
            sent, new_state = run_with_optimizer_state(self.algorithm.local_phase, start, state, ctx)
            self.states[node] = {**new_state, "x": state["x"]}
            out[node] = sent
            work.append(NodeWork(node, ctx.grad_evals, ctx.steps))
        return out, work

    def _local_batched(
        self, nodes: list[int], round_index: int, inputs: dict[int, Tensor] | None
    ) -> tuple[dict[int, Tensor], list[NodeWork]]:
        assert self.vectorized is not None
        update = self.algorithm.local_phase_batched  # type: ignore[attr-defined]

        def run_group(group: list[int], bctx: BatchedContext) -> tuple[Tensors, list[Tensors]]:
            starts = [self._state(n)["x"] if inputs is None else inputs[n] for n in group]
            return update(torch.stack(starts), [self._state(n) for n in group], bctx)

        out: dict[int, Tensor] = {}
        work = []
        for node, reply, new_state, done, _ in self.vectorized.run(
            nodes, round_index, round_index, run_group
        ):
            self.states[node] = {**new_state, "x": self._state(node)["x"]}
            out[node] = reply["sent"]
            work.append(NodeWork(node, done.grad_evals, done.local_steps))
        return out, work

    def mix(self, rows: Rows, stream: int, *vector_sets: dict[int, Tensor]) -> dict[int, Tensor]:
        """One gossip step for this host's receiving nodes (``stream`` keys the compression draws).

        With ``compression.uplink`` set, what node j sends is C(z_j), drawn from the stream
        ``("compression.gossip", j, stream)``: every receiver reconstructs the same message, as
        if j had broadcast it once. A node always uses its own z_i exactly.
        """
        vectors = _merged(vector_sets)
        if self.gossip_compressor is None:
            return mix_vectors(rows, vectors)
        cache: dict[int, Tensor] = {}

        def sent(node: int) -> Tensor:
            if node not in cache:
                cache[node] = self._compress(vectors[node], node, stream)
            return cache[node]

        return mix_vectors(rows, vectors, sent)

    def _compress(self, value: Tensor, node: int, stream: int) -> Tensor:
        assert self.gossip_compressor is not None
        generator = torch_rng(self.scenario.seed, "compression.gossip", node, stream)
        return self.gossip_compressor.compress(value, generator).value

    def publish(self, stream: int, vectors: dict[int, Tensor]) -> dict[int, Tensor]:
        """CHOCO, sender's half, for this host's nodes: x̂_j ← x̂_j + C(z_j − x̂_j); returns the x̂_j.

        C's draws come from ``("compression.gossip", j, stream)``, as for uncorrected gossip.
        """
        for node in sorted(vectors):
            hat = self.hats.get(node)
            if hat is None:
                hat = torch.zeros_like(vectors[node])
            self.hats[node] = hat + self._compress(vectors[node] - hat, node, stream)
        return {node: self.hats[node] for node in sorted(vectors)}

    def choco_mix(
        self, rows: Rows, own: dict[int, Tensor], *hat_sets: dict[int, Tensor]
    ) -> dict[int, Tensor]:
        """CHOCO, receiver's half: z_i + γ (Σ_j W_ij x̂_j − x̂_i), with Σ_j W_ij = 1 (row-stochastic W)."""
        assert self.choco is not None
        hats = _merged(hat_sets)
        pulled = mix_vectors(rows, hats)
        gamma = self.choco.consensus_lr
        return {node: own[node] + gamma * (pulled[node] - hats[node]) for node in rows}

    def finish(self, mixed: dict[int, Tensor], round_index: int) -> None:
        """x_i from the gossiped vector (``after_mix``: D-PSGD applies its pending step here)."""
        for node in sorted(mixed):
            state = self._state(node)
            ctx = self._context(node, round_index)
            x, new_state = self.algorithm.after_mix(mixed[node], state, ctx)
            self.states[node] = {**new_state, "x": x}

    def export_states(self) -> dict[int, dict[str, Tensor]]:
        """Each node's state, with its CHOCO copy x̂ under ``HAT_KEY`` when it has one."""
        out = {}
        for node, state in sorted(self.states.items()):
            out[node] = {**state, HAT_KEY: self.hats[node]} if node in self.hats else state
        return out

    def import_states(self, states: dict[int, dict[str, Tensor]]) -> None:
        self.states, self.hats = {}, {}
        for node, state in states.items():
            self.states[node] = {key: value for key, value in state.items() if key != HAT_KEY}
            if HAT_KEY in state:
                self.hats[node] = state[HAT_KEY]


def _merged(parts: tuple[dict[int, Tensor], ...]) -> dict[int, Tensor]:
    out: dict[int, Tensor] = {}
    for part in parts:
        out.update(part)
    return out
