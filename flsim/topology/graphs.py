"""Communication graphs: named builders, validation and matrices.

Files are read and written by :mod:`~flsim.topology.graph_files`; CLI spec strings are
parsed by :mod:`~flsim.topology.graph_spec`.

Every graph that leaves this module is a simple undirected :class:`networkx.Graph` whose nodes
are the integers ``0..n-1`` (node ``i`` is client ``i``), with no self-loops, and connected.
Those three facts are what the mixing matrices (docs/algorithms.md (G1)-(G5)) and the DADAO graph
quantities (A1) assume, so they are checked once here instead of in every consumer.

Random builders never touch global RNG state: attempt ``a`` of a draw for round ``r`` uses
``numpy_rng(seed, "topology.<kind>", node=r, counter=a)`` (the ``node`` slot carries the round,
since a topology draw belongs to no single node). Retrying a disconnected draw therefore uses a
*derived* seed, and the graph of round ``r`` does not depend on which rounds were drawn before.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import scipy.sparse as sp

from flsim.config.errors import ConfigError
from flsim.config.schema import MAX_CLIENTS
from flsim.rng import numpy_rng

logger = logging.getLogger(__name__)

#: Where the named topology files shipped with the repository live.
TOPOLOGIES_DIR = Path(__file__).resolve().parents[2] / "topologies"

#: How many derived seeds a random builder tries before declaring its parameters hopeless.
DEFAULT_MAX_TRIES = 100
#: Bounds on what a builder may be asked for: nodes of graphs whose construction is linear in
#: n, nodes of those that are quadratic (all pairs are drawn or linked), edges, and redraws.
MAX_DENSE_NODES = 3000
MAX_EDGES = 5_000_000
MAX_TRIES = 1000
#: Largest topology file read (about two million edges as an edge list).
MAX_TOPOLOGY_BYTES = 16 << 20

EDGE_LIST_SUFFIXES = (".edgelist", ".edges", ".txt", ".csv", ".tsv")
GRAPHML_SUFFIXES = (".graphml", ".xml")
JSON_SUFFIXES = (".json",)
YAML_SUFFIXES = (".yaml", ".yml")


class ParamError(Exception):
    """A builder parameter is bad; :func:`build_graph` turns it into a keyed ``ConfigError``."""

    def __init__(self, param: str, value: Any, reason: str) -> None:
        super().__init__(f"{param}: {reason}")
        self.param = param
        self.value = value
        self.reason = reason


DrawFactory = Callable[[int], np.random.Generator]
"""``draw(attempt)`` returns the generator for one attempt of a random builder."""


@dataclass(frozen=True)
class BuilderSpec:
    """A registered graph family.

    ``size_params`` are the parameters that fix the node count (named in node-count errors);
    ``default_n`` says whether ``n`` may be omitted and filled in from ``task.num_clients``.
    """

    name: str
    func: Callable[..., nx.Graph]
    size_params: tuple[str, ...]
    random: bool
    default_n: bool
    doc: str


BUILDERS: dict[str, BuilderSpec] = {}


def register_builder(
    name: str, *, size_params: tuple[str, ...] = ("n",), random: bool = False
) -> Callable[[Callable[..., nx.Graph]], Callable[..., nx.Graph]]:
    """Register a graph family under ``name`` (random ones receive a ``draw`` factory)."""

    def decorator(func: Callable[..., nx.Graph]) -> Callable[..., nx.Graph]:
        doc = inspect.getdoc(func) or ""
        BUILDERS[name] = BuilderSpec(
            name=name,
            func=func,
            size_params=size_params,
            random=random,
            default_n=size_params == ("n",),
            doc=doc.splitlines()[0] if doc else "",
        )
        return func

    return decorator


# --------------------------------------------------------------------------- parameter checks


def _int(name: str, value: Any, minimum: int, maximum: int = MAX_CLIENTS) -> int:
    """An integer parameter in ``minimum..maximum``: sizes are bounded so that building the
    graph (at validation time, too) cannot take the machine's memory or hours."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ParamError(name, value, "must be an integer")
    if value < minimum:
        raise ParamError(name, value, f"must be >= {minimum}")
    if value > maximum:
        raise ParamError(name, value, f"must be <= {maximum}")
    return int(value)


def _edges_at_most(name: str, value: Any, edges: int) -> None:
    if edges > MAX_EDGES:
        raise ParamError(name, value, f"gives about {edges:.3g} edges, more than the {MAX_EDGES:.0e} allowed")


def _prob(name: str, value: Any, *, open_low: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise ParamError(name, value, "must be a number in [0, 1]")
    value = float(value)
    if not (0.0 < value <= 1.0 if open_low else 0.0 <= value <= 1.0):
        raise ParamError(name, value, "must be in (0, 1]" if open_low else "must be in [0, 1]")
    return value


def _positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise ParamError(name, value, "must be a positive number")
    if not value > 0 or not math.isfinite(value):
        raise ParamError(name, value, "must be a positive finite number")
    return float(value)


def _python_seed(rng: np.random.Generator) -> int:
    """An int seed for networkx routines, taken from our own derived generator."""
    return int(rng.integers(0, 2**31 - 1))


def _until_connected(
    draw: DrawFactory, make: Callable[[np.random.Generator], nx.Graph], max_tries: int, blame: str, hint: str
) -> nx.Graph:
    """Redraw with derived seeds until connected; a bounded loop so hopeless params fail fast."""
    for attempt in range(max_tries):
        graph = make(draw(attempt))
        if graph.number_of_nodes() > 0 and nx.is_connected(graph):
            if attempt:
                logger.debug("random graph connected after %d redraws", attempt)
            return graph
    raise ParamError(blame, None, f"no connected graph in {max_tries} draws; {hint}")


# --------------------------------------------------------------------------- deterministic builders


@register_builder("ring")
def ring(n: int) -> nx.Graph:
    """Cycle C_n: node i talks to i-1 and i+1 (mod n)."""
    return nx.cycle_graph(_int("n", n, 3))


@register_builder("path")
def path(n: int) -> nx.Graph:
    """Path P_n: the line 0 - 1 - ... - n-1."""
    return nx.path_graph(_int("n", n, 2))


@register_builder("star")
def star(n: int) -> nx.Graph:
    """Star on n nodes with hub 0."""
    return nx.star_graph(_int("n", n, 2) - 1)


@register_builder("complete")
def complete(n: int) -> nx.Graph:
    """Complete graph K_n."""
    return nx.complete_graph(_int("n", n, 2, MAX_DENSE_NODES))


def _grid(rows: int, cols: int, periodic: bool) -> nx.Graph:
    graph = nx.grid_2d_graph(rows, cols, periodic=periodic)
    # Row-major labels, so node r*cols + c sits at row r, column c (what a plot expects).
    return nx.relabel_nodes(graph, {(r, c): r * cols + c for r, c in graph.nodes})


@register_builder("grid", size_params=("rows", "cols"))
def grid(rows: int, cols: int) -> nx.Graph:
    """rows x cols lattice without wrap-around; node r*cols + c."""
    rows, cols = _int("rows", rows, 1), _int("cols", cols, 1)
    _int("rows", rows * cols, 1)  # rows * cols nodes
    return _grid(rows, cols, periodic=False)


@register_builder("torus", size_params=("rows", "cols"))
def torus(rows: int, cols: int) -> nx.Graph:
    """rows x cols lattice with wrap-around (4-regular; both sides >= 3 so no edge doubles)."""
    rows, cols = _int("rows", rows, 3), _int("cols", cols, 3)
    _int("rows", rows * cols, 1)  # rows * cols nodes
    return _grid(rows, cols, periodic=True)


@register_builder("exponential")
def exponential(n: int) -> nx.Graph:
    """Undirected exponential graph: node i linked to i +- 2^k (mod n) for 2^k < n."""
    n = _int("n", n, 2)
    graph = nx.empty_graph(n)
    hop = 1
    while hop < n:
        graph.add_edges_from((i, (i + hop) % n) for i in range(n) if (i + hop) % n != i)
        hop *= 2
    return graph


@register_builder("barbell", size_params=("m1", "m2"))
def barbell(m1: int, m2: int = 0) -> nx.Graph:
    """Two K_m1 cliques joined by a path of m2 extra nodes (n = 2*m1 + m2)."""
    return nx.barbell_graph(_int("m1", m1, 2, MAX_DENSE_NODES), _int("m2", m2, 0))


@register_builder("lollipop", size_params=("m", "k"))
def lollipop(m: int, k: int = 1) -> nx.Graph:
    """K_m with a path of k extra nodes hanging off it (n = m + k): a bottleneck graph."""
    return nx.lollipop_graph(_int("m", m, 2, MAX_DENSE_NODES), _int("k", k, 1))


# --------------------------------------------------------------------------- random builders


@register_builder("erdos_renyi", random=True)
def erdos_renyi(n: int, p: float, *, draw: DrawFactory, max_tries: int = DEFAULT_MAX_TRIES) -> nx.Graph:
    """G(n, p), redrawn with derived seeds until connected."""
    n, p = _int("n", n, 2, MAX_DENSE_NODES), _prob("p", p)
    max_tries = _int("max_tries", max_tries, 1, MAX_TRIES)
    rows, cols = np.triu_indices(n, k=1)

    def make(rng: np.random.Generator) -> nx.Graph:
        keep = rng.random(rows.size) < p
        graph = nx.empty_graph(n)
        graph.add_edges_from(zip(rows[keep].tolist(), cols[keep].tolist(), strict=True))
        return graph

    hint = f"increase p (connectivity needs p above about ln(n)/n = {math.log(n) / n:.3g})"
    return _until_connected(draw, make, max_tries, "p", hint)


@register_builder("random_regular", random=True)
def random_regular(n: int, d: int, *, draw: DrawFactory, max_tries: int = DEFAULT_MAX_TRIES) -> nx.Graph:
    """Uniform random d-regular graph, redrawn until connected (n*d must be even, d < n)."""
    n, d = _int("n", n, 2), _int("d", d, 1)
    if d >= n:
        raise ParamError("d", d, f"degree must be < n = {n}")
    if (n * d) % 2:
        raise ParamError("d", d, f"n*d must be even (n = {n})")
    _edges_at_most("d", d, n * d // 2)
    max_tries = _int("max_tries", max_tries, 1, MAX_TRIES)
    hint = "use a degree d >= 2"
    return _until_connected(
        draw, lambda rng: nx.random_regular_graph(d, n, seed=_python_seed(rng)), max_tries, "d", hint
    )


@register_builder("geometric", random=True)
def geometric(
    n: int, radius: float, *, draw: DrawFactory, dim: int = 2, max_tries: int = DEFAULT_MAX_TRIES
) -> nx.Graph:
    """Random geometric graph: n uniform points in [0,1]^dim, linked when closer than radius."""
    n, radius = _int("n", n, 2, MAX_DENSE_NODES), _positive("radius", radius)
    dim = _int("dim", dim, 1, 100)
    max_tries = _int("max_tries", max_tries, 1, MAX_TRIES)

    def make(rng: np.random.Generator) -> nx.Graph:
        points = rng.random((n, dim))
        dist2 = ((points[:, None, :] - points[None, :, :]) ** 2).sum(axis=-1)
        rows, cols = np.nonzero(np.triu(dist2 <= radius * radius, k=1))
        graph = nx.empty_graph(n)
        graph.add_edges_from(zip(rows.tolist(), cols.tolist(), strict=True))
        for i in range(n):
            graph.nodes[i]["pos"] = points[i].tolist()
        return graph

    return _until_connected(draw, make, max_tries, "radius", "increase radius")


@register_builder("small_world", random=True)
def small_world(
    n: int, k: int, p: float, *, draw: DrawFactory, max_tries: int = DEFAULT_MAX_TRIES
) -> nx.Graph:
    """Connected Watts-Strogatz graph: ring lattice with k nearest neighbours, rewired w.p. p."""
    n, k = _int("n", n, 3), _int("k", k, 2)
    p = _prob("p", p, open_low=False)
    if k >= n:
        raise ParamError("k", k, f"must be < n = {n}")
    _edges_at_most("k", k, n * k // 2)
    max_tries = _int("max_tries", max_tries, 1, MAX_TRIES)
    return _until_connected(
        draw,
        lambda rng: nx.watts_strogatz_graph(n, k, p, seed=_python_seed(rng)),
        max_tries,
        "p",
        "lower p or raise k",
    )


# --------------------------------------------------------------------------- building from a spec


def build_graph(
    kind: str,
    params: Mapping[str, Any] | None = None,
    num_nodes: int | None = None,
    seed: int = 0,
    *,
    round_index: int = 0,
    key: str = "topology",
) -> nx.Graph:
    """Build ``kind`` with ``params``, validated and labelled ``0..n-1``.

    ``num_nodes`` is the expected node count (``task.num_clients``): it fills in a missing
    ``n`` and is checked against the result. A ``seed`` inside ``params`` overrides ``seed``,
    so a named topology file can pin its random graph independently of the scenario seed.
    Errors are :class:`ConfigError` keyed ``{key}.kind`` or ``{key}.params.<name>``.
    """
    if kind not in BUILDERS:
        raise ConfigError(f"{key}.kind", kind, f"unknown topology kind; choose one of {sorted(BUILDERS)}")
    spec = BUILDERS[kind]
    kwargs = dict(params or {})
    if spec.random:
        seed_value = kwargs.pop("seed", seed)
        if isinstance(seed_value, bool) or not isinstance(seed_value, int) or seed_value < 0:
            raise ConfigError(f"{key}.params.seed", seed_value, "must be a non-negative integer")
        graph_seed = int(seed_value)

        def draw(attempt: int) -> np.random.Generator:
            return numpy_rng(graph_seed, f"topology.{kind}", node=round_index, counter=attempt)

        kwargs["draw"] = draw
    elif "seed" in kwargs:
        kwargs.pop("seed")  # harmless on deterministic graphs; allowed so sweeps can set it blindly
    if spec.default_n and "n" not in kwargs and num_nodes is not None:
        kwargs["n"] = num_nodes

    signature = inspect.signature(spec.func)
    accepted = {name for name in signature.parameters if name != "draw"}
    for name in kwargs:
        if name != "draw" and name not in accepted:
            raise ConfigError(
                f"{key}.params.{name}",
                kwargs[name],
                f"unknown parameter for kind {kind!r}; accepted: {sorted(accepted)}",
            )
    missing = [
        name
        for name, p in signature.parameters.items()
        if p.default is inspect.Parameter.empty and name not in kwargs and name != "draw"
    ]
    if missing:
        raise ConfigError(f"{key}.params.{missing[0]}", None, f"kind {kind!r} needs parameter {missing[0]!r}")
    try:
        graph = spec.func(**kwargs)
    except ParamError as err:
        value = kwargs.get(err.param) if err.value is None else err.value
        raise ConfigError(f"{key}.params.{err.param}", value, err.reason) from None

    size_key = f"{key}.params.{spec.size_params[0]}" if len(spec.size_params) == 1 else f"{key}.params"
    return validate_graph(graph, num_nodes, key=size_key)


def validate_graph(graph: nx.Graph, num_nodes: int | None = None, *, key: str = "topology") -> nx.Graph:
    """Check a graph is usable for gossip and return it labelled ``0..n-1``.

    Raises :class:`ConfigError` naming ``key`` for: no nodes, directed input that is not
    symmetric is accepted as undirected (logged), a self-loop, a disconnected graph, or a node
    count different from ``num_nodes``. Mixing matrices need connectivity for the SLEM to be
    below 1 (consensus at all), and a self-loop has no meaning as a communication link.
    """
    if graph.is_directed():
        logger.info("topology at %s is directed; using it as undirected", key)
        graph = nx.Graph(graph.to_undirected())
    elif graph.is_multigraph():
        graph = nx.Graph(graph)
    n = graph.number_of_nodes()
    if n == 0:
        raise ConfigError(key, n, "topology has no nodes")
    loops = list(nx.selfloop_edges(graph))
    if loops:
        raise ConfigError(key, loops[0], f"topology has {len(loops)} self-loop(s); remove them")
    if num_nodes is not None and n != num_nodes:
        raise ConfigError(key, n, f"topology has {n} nodes but task.num_clients is {num_nodes}")
    if not nx.is_connected(graph):
        parts = nx.number_connected_components(graph)
        raise ConfigError(
            key, n, f"topology is disconnected ({parts} components); gossip cannot reach consensus"
        )
    return _relabel(graph)


def _relabel(graph: nx.Graph) -> nx.Graph:
    """A fresh graph on ``0..n-1`` in order: integer-like labels keep their numeric order,
    others sort as strings; node attributes (e.g. positions) are kept, edges stored i < j."""

    def order(label: Any) -> tuple[int, int | str]:
        try:
            return (0, int(label))
        except (TypeError, ValueError):
            return (1, str(label))

    mapping = {label: index for index, label in enumerate(sorted(graph.nodes, key=order))}
    out = nx.Graph()
    out.add_nodes_from(range(len(mapping)))
    for label, data in graph.nodes(data=True):
        out.nodes[mapping[label]].update(data)
    out.add_edges_from(
        sorted((min(mapping[u], mapping[v]), max(mapping[u], mapping[v])) for u, v in graph.edges)
    )
    return out


# --------------------------------------------------------------------------- matrices


def edge_list(graph: nx.Graph) -> list[tuple[int, int]]:
    """Edges as ``(i, j)`` with ``i < j``, sorted: the one edge order every array here uses."""
    return sorted((min(u, v), max(u, v)) for u, v in graph.edges)


def incidence_matrix(graph: nx.Graph) -> tuple[list[tuple[int, int]], sp.csc_matrix]:
    """Oriented incidence B (n x m, column e = e_i - e_j), so L(w) = B diag(w) Bᵀ (G)."""
    edges = edge_list(graph)
    n, m = graph.number_of_nodes(), len(edges)
    rows = np.array([x for edge in edges for x in edge], dtype=np.int64)
    cols = np.repeat(np.arange(m), 2)
    vals = np.tile(np.array([1.0, -1.0]), m)
    return edges, sp.csc_matrix((vals, (rows, cols)), shape=(n, m))


def laplacian_from_weights(n: int, edges: list[tuple[int, int]], weights: np.ndarray) -> np.ndarray:
    """Dense L(w) = Σ_e w_e (e_i − e_j)(e_i − e_j)ᵀ, built exactly symmetric."""
    lap = np.zeros((n, n))
    if edges:
        i = np.array([e[0] for e in edges])
        j = np.array([e[1] for e in edges])
        w = np.asarray(weights, dtype=np.float64)
        np.add.at(lap, (i, j), -w)
        np.add.at(lap, (j, i), -w)
        np.add.at(lap, (i, i), w)
        np.add.at(lap, (j, j), w)
    return lap
