"""The synchronous decentralized driver: local phase, Q gossip steps, per round (docs/algorithms.md D).

Virtual time of a round: the slowest node's local compute, then Q gossip steps, each as
long as the slowest link carrying one model (every node sends to all its neighbours at once).
Traffic is exact: in each gossip step node j sends z_j to every i with W_ij ≠ 0, i ≠ j, so a
symmetric W costs Q · deg(i) · d values each way per node per round.

Metrics are those of the average model x̄ = (1/N) Σ x_i, plus the consensus distance
(1/N) Σ ‖x_i − x̄‖² and the mean and worst test accuracy of the individual nodes.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np
import torch
from torch import Tensor

from flsim.algorithms.gossip import GossipAlgorithm
from flsim.compression.config import build_compressor
from flsim.config.schema import Scenario
from flsim.engine.loop import RoundLoop
from flsim.engine.system import SystemModel
from flsim.hosts.client_host import build_algorithm
from flsim.hosts.counters import Counters
from flsim.hosts.node_host import Rows
from flsim.hosts.sinks import Progress, Writer
from flsim.tasks.base import Task


def mixing_rows(weights: np.ndarray) -> Rows:
    """Sparse rows of W: for each receiving node, its (neighbour, weight) pairs in id order."""
    rows: Rows = {}
    for i in range(weights.shape[0]):
        nonzero = np.flatnonzero(weights[i])
        rows[i] = [(int(j), float(weights[i, j])) for j in nonzero]
    return rows


class GossipSimulation(RoundLoop):
    def __init__(
        self,
        scenario: Scenario,
        task: Task,
        backend: Any,
        writer: Writer,
        progress: Progress,
    ) -> None:
        from flsim.topology.schedule import build_schedule

        super().__init__(scenario, task, backend, writer, progress)
        algorithm = build_algorithm(scenario, task)
        assert isinstance(algorithm, GossipAlgorithm)
        self.algorithm = algorithm
        assert scenario.topology is not None
        self.schedule = build_schedule(scenario.topology, task.num_clients, scenario.seed)
        self.system = SystemModel(scenario.system, scenario.seed, task.num_clients)
        self.counters = Counters()
        uplink = scenario.compression.uplink
        dense = torch.empty(0, dtype=task.dtype).element_size() * task.dim
        # One gossip message: the compressed size when compression.uplink is set (exact, E).
        self.value_bytes = (
            dense if uplink is None else build_compressor(uplink).message_nbytes(task.dim, task.dtype)
        )

    def summary_facts(self) -> dict[str, Any]:
        """``topology``: the schedule's facts, so a k-peer run records that W is only row-stochastic."""
        return {"topology": self.schedule.describe()}

    # -- one round ------------------------------------------------------------------------
    def _gossip(self, vectors: Any, weights: np.ndarray, round_index: int) -> Any:
        rows = mixing_rows(weights)
        q = self.algorithm.config.gossip_steps
        for step in range(q):
            vectors = self.backend.mix(rows, vectors, round_index * q + step)
        return vectors

    def _account(self, work: list[Any], weights: np.ndarray, round_index: int) -> None:
        q = self.algorithm.config.gossip_steps
        off_diagonal = (weights != 0) & ~np.eye(weights.shape[0], dtype=bool)
        sent_per_step = int(off_diagonal.sum())  # one message per (receiver, sender) pair
        compute = max(self.system.compute_time(w.node, w.local_steps, round_index) for w in work)
        senders = np.flatnonzero(off_diagonal.any(axis=0))
        slowest_link = max((self.system.latency(int(j), self.value_bytes) for j in senders), default=0.0)
        self.counters.virtual_time += compute + q * slowest_link
        self.counters.events += q * sent_per_step + len(work)
        self.counters.bytes_up += q * sent_per_step * self.value_bytes
        self.counters.bytes_down += q * sent_per_step * self.value_bytes
        self.counters.grad_evals += sum(w.grad_evals for w in work)

    def run_round(self, round_index: int) -> list[Any]:
        weights = self.schedule.weights(round_index)
        if self.algorithm.config.order == "gossip_first":
            mixed = self._gossip(self.backend.current(), weights, round_index)
            sent, work = self.backend.local(round_index, mixed)
            self.backend.finish(sent, round_index)
        else:
            sent, work = self.backend.local(round_index, None)
            self.backend.finish(self._gossip(sent, weights, round_index), round_index)
        self._account(work, weights, round_index)
        self.counters.round = round_index + 1
        return []

    # -- metrics, checkpoints ---------------------------------------------------------------
    def models(self) -> list[Tensor]:
        models = self.backend.gather(self.backend.current())
        return [models[node] for node in range(self.task.num_clients)]

    def metrics_row(self, replies: Any = None) -> dict[str, Any]:
        models = self.models()
        average = torch.zeros_like(models[0])
        for x in models:
            average.add_(x)
        average.div_(len(models))
        row: dict[str, Any] = asdict(self.counters)
        row.update(self.task.evaluate(average, self.scenario.eval.train_loss))
        row["consensus_distance"] = sum(float(torch.sum((x - average) ** 2)) for x in models) / len(models)
        if self.task.classification and self.scenario.eval.per_node:
            accuracies = [self.task.evaluate(x, train_loss=False)["test_acc"] for x in models]
            row["node_test_acc_mean"] = float(np.mean(accuracies))
            row["node_test_acc_min"] = float(np.min(accuracies))
        return row

    def checkpoint_state(self) -> dict[str, Any]:
        return {"counters": asdict(self.counters), "nodes": self.backend.get_states()}

    def restore(self, state: dict[str, Any]) -> None:
        self.counters = Counters(**state["counters"])
        self.backend.put_states(state["nodes"])
