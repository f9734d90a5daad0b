"""Graph builders and loaders (networkx), nodes always relabelled 0..n−1.

Random graphs take a seed derived from the scenario seed, so a topology is reproducible.
Every graph is validated before use: connected, no self-loops, the expected node count.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import networkx as nx
import yaml

from flsim.config.errors import ConfigError

MAX_RETRIES = 100


def _ring(n: int) -> nx.Graph:
    return nx.cycle_graph(n)


def _path(n: int) -> nx.Graph:
    return nx.path_graph(n)


def _star(n: int) -> nx.Graph:
    return nx.star_graph(n - 1)


def _complete(n: int) -> nx.Graph:
    return nx.complete_graph(n)


def _grid(rows: int, cols: int) -> nx.Graph:
    return nx.grid_2d_graph(rows, cols)


def _torus(rows: int, cols: int) -> nx.Graph:
    return nx.grid_2d_graph(rows, cols, periodic=True)


def _exponential(n: int) -> nx.Graph:
    """Node i linked to i ± 2^k (mod n) for every 2^k < n: diameter O(log n)."""
    graph = nx.empty_graph(n)
    step = 1
    while step < n:
        graph.add_edges_from((i, (i + step) % n) for i in range(n) if (i + step) % n != i)
        step *= 2
    return graph


def _barbell(n: int) -> nx.Graph:
    """Two cliques of ⌊n/2⌋ and ⌈n/2⌉ nodes joined by one bridge edge."""
    half = n // 2
    graph = nx.disjoint_union(nx.complete_graph(half), nx.complete_graph(n - half))
    graph.add_edge(half - 1, half)
    return graph


def _lollipop(n: int, clique: int | None = None) -> nx.Graph:
    size = clique or max(3, n // 2)
    return nx.lollipop_graph(size, n - size)


def _connected(make: Callable[[int], nx.Graph], seed: int, what: str) -> nx.Graph:
    for attempt in range(MAX_RETRIES):
        graph = make(seed * 1000 + attempt)
        if graph.number_of_nodes() and nx.is_connected(graph):
            return graph
    raise ConfigError(
        "topology.params", what, f"no connected sample in {MAX_RETRIES} tries; raise the density"
    )


BUILDERS: dict[str, Callable[..., nx.Graph]] = {
    "ring": _ring,
    "cycle": _ring,
    "path": _path,
    "star": _star,
    "complete": _complete,
    "grid": _grid,
    "torus": _torus,
    "exponential": _exponential,
    "barbell": _barbell,
    "lollipop": _lollipop,
}
RANDOM_BUILDERS = {"erdos_renyi", "random_regular", "geometric", "small_world"}


def build_graph(kind: str, params: dict[str, Any], n: int | None, seed: int) -> nx.Graph:
    """A graph from a builder name; ``n`` defaults to the scenario's number of clients."""
    params = dict(params)
    size = int(params.pop("n", n if n is not None else 0))
    try:
        if kind in ("grid", "torus"):
            if "rows" not in params:
                side = math.isqrt(size)
                params.setdefault("rows", side)
                params.setdefault("cols", size // side if side else 0)
            graph = BUILDERS[kind](int(params.pop("rows")), int(params.pop("cols")))
        elif kind in BUILDERS:
            graph = BUILDERS[kind](size, **params)
            params = {}
        elif kind == "erdos_renyi":
            p = float(params.pop("p", min(1.0, 2 * math.log(max(size, 2)) / max(size, 2))))
            graph = _connected(lambda s: nx.gnp_random_graph(size, p, seed=s), seed, f"erdos_renyi p={p}")
        elif kind == "random_regular":
            degree = int(params.pop("degree", 3))
            graph = _connected(
                lambda s: nx.random_regular_graph(degree, size, seed=s), seed, "random_regular"
            )
        elif kind == "geometric":
            radius = float(
                params.pop("radius", math.sqrt(2.5 * math.log(max(size, 2)) / (math.pi * max(size, 2))))
            )
            graph = _connected(lambda s: nx.random_geometric_graph(size, radius, seed=s), seed, "geometric")
        elif kind == "small_world":
            k = int(params.pop("k", 4))
            p = float(params.pop("p", 0.1))
            graph = nx.connected_watts_strogatz_graph(size, k, p, tries=MAX_RETRIES, seed=seed)
        else:
            known = sorted(set(BUILDERS) | RANDOM_BUILDERS)
            raise ConfigError("topology.kind", kind, f"unknown graph; choose from {known}")
    except TypeError as exc:
        raise ConfigError("topology.params", params, f"bad parameters for {kind}: {exc}") from None
    except nx.NetworkXError as exc:
        raise ConfigError("topology.params", params, f"{kind}: {exc}") from None
    if params:
        raise ConfigError(
            f"topology.params.{next(iter(params))}", next(iter(params.values())), f"unknown for {kind}"
        )
    return nx.convert_node_labels_to_integers(nx.Graph(graph), ordering="sorted")


def load_graph(path: str | Path, n: int | None, seed: int) -> nx.Graph:
    """Edge-list (.txt/.edgelist/.csv), GraphML (.graphml), JSON node-link (.json) or YAML."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("topology.file", str(path), "file not found")
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        data = yaml.safe_load(path.read_text()) or {}
        if "edges" in data:
            graph = nx.Graph()
            graph.add_nodes_from(range(int(data.get("n", 0))))
            graph.add_edges_from(tuple(e) for e in data["edges"])
        elif "kind" in data:
            graph = build_graph(data["kind"], data.get("params", {}), n, seed)
        else:
            raise ConfigError(
                "topology.file", str(path), "a topology YAML needs 'kind' (+ 'params') or 'edges'"
            )
    elif suffix == ".graphml":
        graph = nx.read_graphml(path)
    elif suffix == ".json":
        graph = nx.node_link_graph(json.loads(path.read_text()), edges="links")
    else:
        graph = nx.read_edgelist(path, nodetype=int, delimiter="," if suffix == ".csv" else None)
    return nx.convert_node_labels_to_integers(nx.Graph(graph), ordering="sorted")


def validate_graph(graph: nx.Graph, expected_nodes: int | None, key: str = "topology") -> nx.Graph:
    if nx.number_of_selfloops(graph):
        loop = next(nx.selfloop_edges(graph))
        raise ConfigError(key, loop, "self-loops are not allowed in a communication graph")
    if expected_nodes is not None and graph.number_of_nodes() != expected_nodes:
        raise ConfigError(
            key,
            graph.number_of_nodes(),
            f"the graph has a different node count than task.num_clients={expected_nodes}",
        )
    if graph.number_of_nodes() == 0 or not nx.is_connected(graph):
        raise ConfigError(key, nx.number_connected_components(graph), "the graph is disconnected")
    return graph


def parse_spec(spec: str) -> tuple[str | None, dict[str, Any], str | None]:
    """``kind:key=value,...`` → (kind, params, None); anything else is a file path."""
    if Path(spec).exists() or ":" not in spec:
        return None, {}, spec
    kind, _, rest = spec.partition(":")
    params: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, _, raw = item.partition("=")
        params[key.strip()] = yaml.safe_load(raw)
    return kind, params, None
