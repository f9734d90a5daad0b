"""Which graph and which W a decentralized run uses in round t (fixed or time-varying)."""

from __future__ import annotations

from functools import lru_cache

import networkx as nx
import numpy as np

from flsim.engine.rng import numpy_rng
from flsim.topology.config import TopologyConfig
from flsim.topology.graphs import build_graph, load_graph, validate_graph
from flsim.topology.mixing import Mixing, mixing_matrix


def _graph_from(entry: dict | str, num_nodes: int, seed: int) -> nx.Graph:
    if isinstance(entry, str):
        return load_graph(entry, num_nodes, seed)
    return build_graph(entry["kind"], entry.get("params", {}), num_nodes, seed)


def graph_for(config: TopologyConfig, num_nodes: int, seed: int, round_index: int) -> nx.Graph:
    """The validated communication graph of round ``round_index``."""
    if config.time_varying == "cycle":
        graph = _graph_from(config.cycle[round_index % len(config.cycle)], num_nodes, seed)
    else:
        graph_seed = seed if config.time_varying != "random_each_round" else seed * 100_003 + round_index
        if config.file is not None:
            graph = load_graph(config.file, num_nodes, graph_seed)
        else:
            assert config.kind is not None
            graph = build_graph(config.kind, config.params, num_nodes, graph_seed)
    return validate_graph(graph, num_nodes)


def k_peer_weights(num_nodes: int, peers: int, seed: int, round_index: int) -> np.ndarray:
    """Each node averages itself with ``peers`` random others: rows sum to one, columns need not."""
    weights = np.zeros((num_nodes, num_nodes))
    share = 1.0 / (peers + 1)
    for node in range(num_nodes):
        others = np.delete(np.arange(num_nodes), node)
        chosen = numpy_rng(seed, "topology.peers", node, round_index).choice(
            others, size=peers, replace=False
        )
        weights[node, node] = share
        weights[node, chosen] = share
    return weights


class TopologySchedule:
    """W for every round; fixed graphs are solved once (SDP weights can take seconds)."""

    def __init__(self, config: TopologyConfig, num_nodes: int, seed: int) -> None:
        self.config = config
        self.num_nodes = num_nodes
        self.seed = seed
        self.row_stochastic_only = config.time_varying == "k_peers"
        self._mixing = lru_cache(maxsize=64)(self._compute)
        if config.time_varying == "none":
            self._mixing(0)  # fail fast on a bad graph, before the first round

    def _compute(self, key: int) -> Mixing:
        graph = graph_for(self.config, self.num_nodes, self.seed, key)
        return mixing_matrix(graph, self.config.mixing, self.config.solver)

    def mixing(self, round_index: int) -> Mixing:
        if self.config.time_varying == "none":
            return self._mixing(0)
        if self.config.time_varying == "cycle":
            return self._mixing(round_index % len(self.config.cycle))
        return self._compute(round_index)

    def weights(self, round_index: int) -> np.ndarray:
        if self.row_stochastic_only:
            peers = min(self.config.peers, self.num_nodes - 1)
            return k_peer_weights(self.num_nodes, peers, self.seed, round_index)
        return self.mixing(round_index).weights


def build_schedule(config: TopologyConfig, num_nodes: int, seed: int) -> TopologySchedule:
    return TopologySchedule(config, num_nodes, seed)
