"""Gossip matrices W = I − B diag(w) Bᵀ: heuristics and optimal ones (docs/algorithms.md G).

Every W here is assembled from per-edge weights w through the incidence form, so it is
exactly symmetric, its rows sum to one and it is supported on the graph by construction;
:func:`check_mixing` still verifies each one before it is returned.

* (G1) Metropolis-Hastings, (G2) max-degree, (G3) best constant: closed forms.
* ``uniform``: J = 11ᵀ/n, exact averaging, which only the complete graph supports.
* (G4) FDLA and (G5) FMMC minimise SLEM(W) = ‖W − J‖₂; solvers in :mod:`flsim.topology.sdp`.
  ``solver: sdp`` uses the structured primal-dual interior-point method (n = 200 in seconds),
  ``cvxpy`` the generic cvxpy formulation (CLARABEL, else SCS), ``first_order`` projected
  subgradient; ``auto`` picks ``first_order`` once :func:`predicted_sdp_seconds` exceeds
  :data:`SDP_SECONDS_BUDGET`.

A solver that raises falls back to Metropolis loudly: a warning is logged, ``fallback`` is
true and ``status`` says why. An exact solver (interior point, cvxpy) that returns is judged
by its status (:func:`_judge`): ``optimal`` is used; ``inaccurate`` is used with a warning
naming the status and the duality gap, both recorded in :meth:`Mixing.summary`; anything else
(the interior point out of iterations) is a :class:`ConfigError`, because its W is not the
optimum the scenario asked for. ``first_order`` has no optimality certificate and always ends
at its iteration count (``max_iterations``): its W is never worse than Metropolis.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import numpy as np

from flsim.config.errors import ConfigError
from flsim.topology.graphs import edge_list, laplacian_from_weights
from flsim.topology.sdp import (
    SdpSolution,
    cvxpy_sdp,
    first_order,
    interior_point,
    metropolis_edge_weights,
    single_blas_thread,
)
from flsim.topology.spectral import slem

logger = logging.getLogger(__name__)

#: ``solver: auto`` runs the exact SDP while :func:`predicted_sdp_seconds` is at most this,
#: and the first-order method beyond: a random geometric graph of 400 nodes (2657 edges)
#: still gets the exact optimum, within the minute issue 21 asks for.
SDP_SECONDS_BUDGET = 60.0
#: The interior-point cost model: per iteration, the Schur complement's m³/3-flop Cholesky
#: plus the n × n work (NT scalings, step lengths, corrector), times the 40-50 iterations
#: FMMC takes on random geometric graphs of 200-400 nodes (FDLA: 16). Fitted to CPU
#: seconds, one BLAS thread, on the 2-core development machine: geometric graphs n = 300
#: (1900 edges, 51 iterations, 13.2 s) and n = 400 (2657 edges, 41 iterations, 29.9 s),
#: and the 500-node ring (0.47 s an iteration, nearly all n³).
SDP_ITERATIONS = 50
SDP_SECONDS_PER_EDGE_CUBED = 2.5e-11
SDP_SECONDS_PER_NODE_CUBED = 3.7e-9

HEURISTICS = ("metropolis", "max_degree", "best_constant", "uniform")
OPTIMAL = ("fdla", "fmmc")
MIXING_METHODS = HEURISTICS + OPTIMAL
SOLVERS = ("auto", "sdp", "cvxpy", "first_order")
SDP_BACKENDS = ("auto", "interior_point", "CLARABEL", "SCS")
#: Tolerance of :func:`check_mixing` on optimiser output (closed forms are exact to ~1e-15).
CHECK_ATOL = 1e-8


class MixingError(ValueError):
    """A gossip matrix is not symmetric, not stochastic, or not supported on its graph.

    A ``ValueError`` rather than a ``ConfigError``: a W failing the check is a bug in a
    builder or solver, not a user mistake.
    """


@dataclass(frozen=True)
class Mixing:
    """A checked gossip matrix and how it was obtained.

    ``slem`` is always recomputed from ``weights`` by an eigendecomposition, never taken from
    the solver; ``bound`` is the solver's own value where it has one (the SDP's s, an upper
    bound on the SLEM), so the two can be compared. ``row_stochastic_only`` marks the random
    k-peer matrices (D), whose columns need not sum to one (gossip then moves the mean).
    """

    weights: np.ndarray
    method: str
    status: str
    slem: float
    row_stochastic_only: bool = False
    solver: str = "closed_form"
    solve_seconds: float = 0.0
    bound: float | None = None
    fallback: bool = False
    iterations: int = 0
    #: The interior point's final duality gap ⟨X, S⟩ (``None`` where the solver reports none).
    gap: float | None = None
    edge_weights: np.ndarray | None = None
    edges: list[tuple[int, int]] = field(default_factory=list)

    @property
    def W(self) -> np.ndarray:
        return self.weights

    @property
    def spectral_gap(self) -> float:
        """1 − SLEM: how much one gossip step shrinks the consensus error at worst (D)."""
        return 1.0 - self.slem

    @property
    def fell_back(self) -> bool:
        return self.fallback

    def summary(self) -> dict[str, Any]:
        """JSON-friendly facts (no matrix) for logs, run summaries and the CLI."""
        return {
            "mixing": self.method,
            "solver": self.solver,
            "status": self.status,
            "fallback": self.fallback,
            "slem": self.slem,
            "spectral_gap": self.spectral_gap,
            "bound": self.bound,
            "solve_seconds": self.solve_seconds,
            "iterations": self.iterations,
            "gap": self.gap,
            "row_stochastic_only": self.row_stochastic_only,
        }


MixingResult = Mixing


# --------------------------------------------------------------------------- closed forms


def weights_to_matrix(n: int, edges: list[tuple[int, int]], edge_weights: np.ndarray) -> np.ndarray:
    """W = I − B diag(w) Bᵀ (G), assembled entry by entry so it is exactly symmetric."""
    return np.eye(n) - laplacian_from_weights(n, edges, np.asarray(edge_weights, dtype=np.float64))


def metropolis_weights(graph: nx.Graph) -> np.ndarray:
    """(G1) Per-edge weights 1/(1 + max(d_i, d_j)), in :func:`edge_list` order."""
    return metropolis_edge_weights(graph)


def max_degree_weights(graph: nx.Graph) -> np.ndarray:
    """(G2) Every edge gets 1/(d_max + 1), i.e. W = I − L/(d_max + 1)."""
    d_max = max((d for _, d in graph.degree()), default=0)
    return np.full(graph.number_of_edges(), 1.0 / (d_max + 1.0))


def best_constant_weights(graph: nx.Graph) -> np.ndarray:
    """(G3) Every edge gets α* = 2/(λ₂(L) + λ_N(L)), the best single weight."""
    m = graph.number_of_edges()
    values = np.linalg.eigvalsh(laplacian_from_weights(graph.number_of_nodes(), edge_list(graph), np.ones(m)))
    return np.full(m, 2.0 / (values[1] + values[-1]))


def metropolis(graph: nx.Graph) -> np.ndarray:
    """(G1) W_ij = 1/(1 + max(d_i, d_j)) on edges, the rest on the diagonal."""
    return weights_to_matrix(graph.number_of_nodes(), edge_list(graph), metropolis_weights(graph))


def max_degree(graph: nx.Graph) -> np.ndarray:
    """(G2) W = I − L/(d_max + 1)."""
    return weights_to_matrix(graph.number_of_nodes(), edge_list(graph), max_degree_weights(graph))


def best_constant(graph: nx.Graph) -> np.ndarray:
    """(G3) W = I − α* L with α* = 2/(λ₂(L) + λ_N(L))."""
    return weights_to_matrix(graph.number_of_nodes(), edge_list(graph), best_constant_weights(graph))


def uniform(graph: nx.Graph, *, key: str = "topology.mixing") -> np.ndarray:
    """J = 11ᵀ/n: exact averaging in one step; only the complete graph supports it."""
    n = graph.number_of_nodes()
    if graph.number_of_edges() != n * (n - 1) // 2:
        raise ConfigError(
            key, "uniform", "uniform mixing (W = J) needs the complete graph; use kind: complete"
        )
    return np.full((n, n), 1.0 / n)


# --------------------------------------------------------------------------- checks


def check_mixing(
    weights: np.ndarray,
    graph: nx.Graph,
    atol: float = CHECK_ATOL,
    *,
    nonnegative: bool = False,
) -> None:
    """Raise :class:`MixingError` unless W is symmetric, doubly stochastic and on the graph (G).

    Checks shape n × n, finite entries, symmetry, rows and columns summing to one, zeros
    outside the edges and the diagonal and, with ``nonnegative=True``, no negative entry.
    FDLA weights may be negative (G4), so non-negativity is opt-in. The message names the
    worst offending entry.
    """
    n = graph.number_of_nodes()
    weights = np.asarray(weights)
    if weights.shape != (n, n):
        raise MixingError(f"W has shape {weights.shape}, expected {(n, n)}")
    if not np.all(np.isfinite(weights)):
        raise MixingError("W has non-finite entries")
    asymmetry = np.abs(weights - weights.T)
    if asymmetry.max() > atol:
        i, j = np.unravel_index(int(asymmetry.argmax()), asymmetry.shape)
        raise MixingError(
            f"W is not symmetric: W[{i},{j}] = {weights[i, j]!r} but W[{j},{i}] = {weights[j, i]!r}"
        )
    for axis, name in ((1, "row"), (0, "column")):
        sums = weights.sum(axis=axis)
        worst = int(np.abs(sums - 1.0).argmax())
        if abs(sums[worst] - 1.0) > atol:
            raise MixingError(f"W is not doubly stochastic: {name} {worst} sums to {sums[worst]!r}")
    allowed = np.eye(n, dtype=bool)
    for i, j in graph.edges:
        allowed[i, j] = allowed[j, i] = True
    outside = np.where(allowed, 0.0, np.abs(weights))
    if outside.max() > atol:
        i, j = np.unravel_index(int(outside.argmax()), outside.shape)
        raise MixingError(f"W[{i},{j}] = {weights[i, j]!r} but ({i}, {j}) is not an edge of the graph")
    if nonnegative and weights.min() < -atol:
        i, j = np.unravel_index(int(weights.argmin()), weights.shape)
        raise MixingError(f"W has a negative entry W[{i},{j}] = {weights[i, j]!r}")


def check_row_stochastic(weights: np.ndarray, atol: float = CHECK_ATOL) -> None:
    """Non-negative with rows summing to one: all a random k-peer W (D) guarantees."""
    weights = np.asarray(weights)
    if weights.ndim != 2 or weights.shape[0] != weights.shape[1]:
        raise MixingError(f"W must be square, got shape {weights.shape}")
    if weights.min() < -atol or np.abs(weights.sum(axis=1) - 1.0).max() > atol:
        raise MixingError("W is not row-stochastic")


# --------------------------------------------------------------------------- entry point


def predicted_sdp_seconds(num_nodes: int, num_edges: int) -> float:
    """Seconds the exact FMMC solve is expected to take (an FDLA solve takes about half)."""
    per_iteration = SDP_SECONDS_PER_EDGE_CUBED * num_edges**3 + SDP_SECONDS_PER_NODE_CUBED * num_nodes**3
    return SDP_ITERATIONS * per_iteration


def choose_solver(num_nodes: int, num_edges: int, solver: str = "auto") -> str:
    """``auto`` → ``sdp`` while its predicted time fits :data:`SDP_SECONDS_BUDGET`, else ``first_order``.

    The measured cost grows like m³ (the Schur complement) plus n³, so the switch depends
    on the edge count as much as on n: a sparse graph stays exact longer than a dense one.
    """
    if solver not in SOLVERS:
        raise ConfigError("topology.solver", solver, f"unknown solver; choose one of {list(SOLVERS)}")
    if solver == "auto":
        return "sdp" if predicted_sdp_seconds(num_nodes, num_edges) <= SDP_SECONDS_BUDGET else "first_order"
    return solver


def _solve(
    graph: nx.Graph, nonnegative: bool, solver: str, sdp_backend: str, iterations: int | None
) -> SdpSolution:
    if solver == "first_order":
        return first_order(graph, nonnegative, iterations=iterations)
    if solver == "cvxpy" or sdp_backend in ("CLARABEL", "SCS"):
        backend = sdp_backend if sdp_backend in ("CLARABEL", "SCS") else "CLARABEL"
        return cvxpy_sdp(graph, nonnegative, backend)
    return interior_point(graph, nonnegative)


def mixing_matrix(
    graph: nx.Graph,
    method: str = "metropolis",
    solver: str = "auto",
    *,
    sdp_backend: str = "auto",
    first_order_iterations: int | None = None,
    key: str = "topology.mixing",
) -> Mixing:
    """W for ``method`` on ``graph`` (nodes 0..n−1), checked before it is returned.

    ``solver`` matters for ``fdla``/``fmmc`` only (see module docstring); ``sdp_backend``
    (``interior_point``, ``CLARABEL``, ``SCS``) overrides which code solves the SDP.
    Unknown names raise :class:`ConfigError` keyed ``key``; solver failures fall back to
    Metropolis with a warning and ``fallback=True``.
    """
    if method not in MIXING_METHODS:
        raise ConfigError(key, method, f"unknown mixing; choose one of {list(MIXING_METHODS)}")
    if sdp_backend not in SDP_BACKENDS:
        raise ConfigError("sdp_backend", sdp_backend, f"choose one of {list(SDP_BACKENDS)}")
    edges = edge_list(graph)
    start = time.perf_counter()
    if method == "uniform" or method in HEURISTICS:
        return _closed_form(graph, method, edges, key, start)
    used = choose_solver(graph.number_of_nodes(), len(edges), solver)
    return _optimized(graph, method, edges, used, sdp_backend, first_order_iterations, start, key)


def _closed_form(
    graph: nx.Graph, method: str, edges: list[tuple[int, int]], key: str, start: float
) -> Mixing:
    """Uniform weights, or one of the closed-form heuristics (Metropolis, max-degree, best constant)."""
    n = graph.number_of_nodes()
    if method == "uniform":
        weights = uniform(graph, key=key)
        check_mixing(weights, graph, nonnegative=True)
        return Mixing(
            weights,
            method,
            "closed_form",
            slem(weights),
            edge_weights=np.full(len(edges), 1.0 / n),
            edges=edges,
        )
    if method in HEURISTICS:
        closed = {
            "metropolis": metropolis_weights,
            "max_degree": max_degree_weights,
            "best_constant": best_constant_weights,
        }
        edge_weights = closed[method](graph)
        weights = weights_to_matrix(n, edges, edge_weights)
        # (G3) α* d_i can exceed 1 on an irregular graph, so best-constant W may have a
        # negative self-weight (still symmetric, doubly stochastic, SLEM < 1); G1/G2 cannot.
        check_mixing(weights, graph, nonnegative=method != "best_constant")
        return Mixing(
            weights,
            method,
            "closed_form",
            slem(weights),
            solve_seconds=time.perf_counter() - start,
            edge_weights=edge_weights,
            edges=edges,
        )


def _optimized(
    graph: nx.Graph,
    method: str,
    edges: list[tuple[int, int]],
    used: str,
    sdp_backend: str,
    first_order_iterations: int | None,
    start: float,
    key: str,
) -> Mixing:
    """FDLA or FMMC weights from an SDP solver; Metropolis (flagged ``fallback``) if it raises."""
    n = graph.number_of_nodes()
    nonnegative = method == "fmmc"
    try:
        with single_blas_thread():
            solution = _solve(graph, nonnegative, used, sdp_backend, first_order_iterations)
        weights = weights_to_matrix(n, edges, solution.edge_weights)
        check_mixing(weights, graph, atol=1e-6, nonnegative=nonnegative)
    except (RuntimeError, ValueError, ArithmeticError, np.linalg.LinAlgError, ImportError) as exc:
        if isinstance(exc, ConfigError):
            raise
        logger.warning(
            "%s weights: solver %s failed (%s); FALLING BACK TO METROPOLIS weights", method, used, exc
        )
        edge_weights = metropolis_weights(graph)
        weights = weights_to_matrix(n, edges, edge_weights)
        return Mixing(
            weights,
            method,
            f"failed ({exc}); fell back to metropolis",
            slem(weights),
            solver=used,
            solve_seconds=time.perf_counter() - start,
            fallback=True,
            edge_weights=edge_weights,
            edges=edges,
        )
    _judge(solution, method, key)
    seconds = time.perf_counter() - start
    value = slem(weights)
    facts = (solution.solver, value, solution.status, solution.iterations, seconds)
    logger.debug("%s weights on %d nodes by %s: SLEM %.9f (%s, %d iterations, %.2f s)", method, n, *facts)
    return Mixing(
        weights,
        method,
        solution.status,
        value,
        solver=solution.solver,
        solve_seconds=seconds,
        bound=solution.bound,
        iterations=solution.iterations,
        gap=solution.gap,
        edge_weights=solution.edge_weights,
        edges=edges,
    )


def _judge(solution: SdpSolution, method: str, key: str) -> None:
    """Use an ``optimal`` W; warn about an ``inaccurate`` one; refuse any other exact result.

    ``inaccurate`` (the interior point stopped at float64's limits with the gap above 1e-7,
    or cvxpy's ``optimal_inaccurate``) is a feasible W close to the optimum: its SLEM is
    recomputed exactly, so the loss is visible. A non-converged interior point is not the
    (G4)/(G5) optimum, and falling back silently would run a different algorithm than asked.
    """
    if solution.solver == "first_order" or solution.status == "optimal":
        return
    gap = "not reported" if solution.gap is None else f"{solution.gap:.3g}"
    if solution.status == "inaccurate":
        logger.warning(
            "%s weights: solver %s stopped short of the optimum (status inaccurate, duality gap %s); "
            "using its W (the run summary records the status and gap)",
            method,
            solution.solver,
            gap,
        )
        return
    raise ConfigError(
        key,
        method,
        f"the {solution.solver} solver did not reach the optimum (status {solution.status} after "
        f"{solution.iterations} iterations, duality gap {gap}); use solver first_order for an "
        "approximate W, or a closed-form mixing",
    )
