"""Which graph and which W a decentralized run uses in round t (fixed or time-varying).

Determinism: a random graph for round t is drawn with ``numpy_rng(seed, "topology.<kind>",
node=t, counter=attempt)`` and the k-peer choice of node i in round t with
``numpy_rng(seed, "topology.peers", node=i, counter=t)``, so round t's graph is a pure
function of (seed, t): it does not depend on which rounds were computed before, on a resume,
or on where the computation runs.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np

from flsim.rng import numpy_rng
from flsim.topology.config import TopologyConfig
from flsim.topology.graph_files import load_graph
from flsim.topology.graphs import build_graph, validate_graph
from flsim.topology.mixing import Mixing, check_row_stochastic, mixing_matrix
from flsim.topology.spectral import slem

logger = logging.getLogger(__name__)

#: How many per-round (graph, W) pairs a time-varying schedule keeps.
CACHE_SIZE = 64


def _entry_graph(
    entry: dict[str, Any] | str, num_nodes: int, seed: int, round_index: int, key: str
) -> nx.Graph:
    if isinstance(entry, str):
        return load_graph(entry, num_nodes, seed, round_index=round_index, key=key)
    if "file" in entry:
        return load_graph(entry["file"], num_nodes, seed, round_index=round_index, key=f"{key}.file")
    return build_graph(
        entry["kind"], entry.get("params") or {}, num_nodes, seed, round_index=round_index, key=key
    )


def graph_for(config: TopologyConfig, num_nodes: int, seed: int, round_index: int) -> nx.Graph:
    """The validated communication graph of round ``round_index``.

    ``none`` always returns the round-0 graph; ``random_each_round`` redraws from a seed
    derived from (seed, round); ``cycle`` takes entry ``round mod len`` (an entry of a random
    kind is drawn as round ``index`` would be, so a cycle of random graphs holds different
    graphs). ``k_peers`` returns the base graph peers are chosen from (complete if none).
    """
    graph_seed = config.graph_seed(seed)
    if config.time_varying == "cycle":
        entries = config.cycle_entries()
        index = round_index % len(entries)
        graph = _entry_graph(entries[index], num_nodes, graph_seed, index, f"topology.cycle.{index}")
    elif config.kind is None and config.file is None:  # k_peers over all nodes
        graph = nx.complete_graph(num_nodes)
    else:
        draw = round_index if config.time_varying == "random_each_round" else 0
        entry: dict[str, Any] | str = (
            config.file if config.file is not None else {"kind": config.kind, "params": config.params}
        )
        key = "topology.file" if config.file is not None else "topology"
        graph = _entry_graph(entry, num_nodes, graph_seed, draw, key)
    return validate_graph(graph, num_nodes)


def k_peer_weights(
    num_nodes: int, peers: int, seed: int, round_index: int, base: nx.Graph | None = None
) -> np.ndarray:
    """Each node averages itself with ``peers`` random others, all with weight 1/(k+1) (D).

    Peers are drawn among the node's neighbours in ``base`` (all nodes when ``base`` is None);
    a node with fewer neighbours takes them all, so its row uses 1/(deg+1). Rows sum to one,
    columns need not: this W is only row-stochastic.
    """
    weights = np.zeros((num_nodes, num_nodes))
    for node in range(num_nodes):
        candidates = (
            np.delete(np.arange(num_nodes), node)
            if base is None
            else np.array(sorted(base.neighbors(node)), dtype=np.int64)
        )
        k = min(peers, candidates.size)
        chosen = numpy_rng(seed, "topology.peers", node, round_index).choice(
            candidates, size=k, replace=False
        )
        share = 1.0 / (k + 1)
        weights[node, node] = share
        weights[node, chosen] = share
    return weights


@dataclass(frozen=True)
class RoundTopology:
    """Round t's graph and W. For k-peer rounds the graph is a DiGraph, edge j→i when i reads j."""

    round_index: int
    graph: nx.Graph
    mixing: Mixing

    @property
    def weights(self) -> np.ndarray:
        return self.mixing.weights


class TopologySchedule:
    """W for every round; fixed graphs and cycles are solved once (SDP weights take seconds).

    ``row_stochastic_only`` is true for ``k_peers``: such W do not preserve the average, and
    consumers that rely on double stochasticity (consensus-distance guarantees) should say so.
    A run says so three ways: one warning when its schedule is built, ``topology`` in its
    ``summary.json`` (:meth:`describe`) and a column of the report's run table.
    """

    def __init__(self, config: TopologyConfig, num_nodes: int, seed: int) -> None:
        self.config = config
        self.num_nodes = num_nodes
        self.seed = seed
        self.row_stochastic_only = config.time_varying == "k_peers"
        self.is_static = config.time_varying == "none"
        self._cache: OrderedDict[int, RoundTopology] = OrderedDict()
        self._base: nx.Graph | None = None
        if config.time_varying == "k_peers" and (config.kind is not None or config.file is not None):
            self._base = graph_for(config, num_nodes, seed, 0)
        if self.is_static:
            self.at(0)  # fail fast on a bad graph, before the first round
        if self.row_stochastic_only:
            logger.warning(
                "k_peers gossip: every round's W is only row-stochastic (its columns need not sum "
                "to one), so gossip does not preserve the nodes' average (docs/algorithms.md D)"
            )

    def describe(self) -> dict[str, Any]:
        """Facts about the run's gossip matrices for ``summary.json`` (D).

        ``row_stochastic_only`` says whether W may move the nodes' average; a fixed graph
        adds its mixing facts (SLEM, solver, status) from :meth:`Mixing.summary`.
        """
        facts: dict[str, Any] = {
            "time_varying": self.config.time_varying,
            "mixing": "k_peers" if self.row_stochastic_only else self.config.mixing,
            "row_stochastic_only": self.row_stochastic_only,
        }
        if self.row_stochastic_only:
            facts["peers"] = min(self.config.peers, self.num_nodes - 1)
        if self.is_static:
            facts.update(self.at(0).mixing.summary())
        return facts

    def _key(self, round_index: int) -> int:
        if self.config.time_varying == "none":
            return 0
        if self.config.time_varying == "cycle":
            return round_index % len(self.config.cycle_entries())
        return round_index

    def at(self, round_index: int) -> RoundTopology:
        """Round ``round_index``'s graph and checked W."""
        key = self._key(round_index)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        if self.row_stochastic_only:
            topology = self._k_peers(key)
        else:
            graph = graph_for(self.config, self.num_nodes, self.seed, key)
            topology = RoundTopology(key, graph, mixing_matrix(graph, self.config.mixing, self.config.solver))
            if topology.mixing.fallback:
                logger.warning("round %d: %s", round_index, topology.mixing.status)
        self._cache[key] = topology
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return topology

    def _k_peers(self, round_index: int) -> RoundTopology:
        peers = min(self.config.peers, self.num_nodes - 1)
        weights = k_peer_weights(
            self.num_nodes, peers, self.config.graph_seed(self.seed), round_index, self._base
        )
        check_row_stochastic(weights)
        graph = nx.DiGraph()
        graph.add_nodes_from(range(self.num_nodes))
        rows, cols = np.nonzero(weights)
        graph.add_edges_from((int(j), int(i)) for i, j in zip(rows, cols, strict=True) if i != j)
        mixing = Mixing(weights, "k_peers", "closed_form", slem(weights), row_stochastic_only=True)
        return RoundTopology(round_index, graph, mixing)

    def graph(self, round_index: int) -> nx.Graph:
        return self.at(round_index).graph

    def mixing(self, round_index: int) -> Mixing:
        return self.at(round_index).mixing

    def weights(self, round_index: int) -> np.ndarray:
        return self.at(round_index).mixing.weights


def build_schedule(config: TopologyConfig, num_nodes: int, seed: int) -> TopologySchedule:
    """The schedule a scenario's ``topology`` section describes for ``num_nodes`` clients."""
    return TopologySchedule(config, num_nodes, seed)


def check_topology(config: TopologyConfig, num_nodes: int, seed: int) -> None:
    """Build (no SDP) every graph a run would start from and validate it, at load time.

    Issue 4 asks for a disconnected graph, a self-loop or a node count different from
    ``task.num_clients`` to be a load-time error: this raises the same keyed
    :class:`~flsim.config.errors.ConfigError` as :func:`graph_for` would in round 0, for the
    fixed graph, round 0 of ``random_each_round``, every ``cycle`` entry, and the base graph
    ``k_peers`` draws peers from. Meant to be called from scenario validation (``flsim
    validate``), before a run directory exists.
    """
    if config.time_varying == "cycle":
        for index in range(len(config.cycle_entries())):
            graph_for(config, num_nodes, seed, index)
    elif config.time_varying != "k_peers" or config.kind is not None or config.file is not None:
        graph_for(config, num_nodes, seed, 0)
