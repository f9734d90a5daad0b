"""Gossip matrices W = I − B diag(w) Bᵀ: heuristics and optimal ones (ALGORITHMS.md G).

The SDPs (FDLA, FMMC) use the incidence form with B built once, so the only matrix
variable expression is B diag(w) Bᵀ: n = 100 solves in seconds. Graphs of 500 nodes and
more use a first-order method (projected subgradient on the SLEM, as in Boyd, Diaconis and
Xiao, "Fastest mixing Markov chain on a graph"). If a solver fails, the weights fall back to
Metropolis loudly: a warning is logged and the result says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import networkx as nx
import numpy as np

from flsim.topology.spectral import incidence, slem

log = logging.getLogger("flsim.topology")

FIRST_ORDER_THRESHOLD = 500


@dataclass(frozen=True)
class Mixing:
    weights: np.ndarray
    method: str
    status: str
    slem: float
    row_stochastic_only: bool = False


def _from_edge_weights(graph: nx.Graph, edge_weights: np.ndarray) -> np.ndarray:
    b, _ = incidence(graph)
    return np.eye(graph.number_of_nodes()) - b @ np.diag(edge_weights) @ b.T


def metropolis(graph: nx.Graph) -> np.ndarray:
    """(G1) W_ij = 1/(1 + max(d_i, d_j)) on edges, the rest on the diagonal."""
    _, edges = incidence(graph)
    degree = dict(graph.degree())
    return _from_edge_weights(graph, np.array([1.0 / (1 + max(degree[i], degree[j])) for i, j in edges]))


def max_degree(graph: nx.Graph) -> np.ndarray:
    """(G2) W = I − L/(d_max + 1)."""
    d_max = max(dict(graph.degree()).values())
    return _from_edge_weights(graph, np.full(graph.number_of_edges(), 1.0 / (d_max + 1)))


def best_constant(graph: nx.Graph) -> np.ndarray:
    """(G3) W = I − α* L with α* = 2/(λ₂(L) + λ_N(L))."""
    values = np.linalg.eigvalsh(nx.laplacian_matrix(graph, nodelist=range(graph.number_of_nodes())).toarray())
    return _from_edge_weights(graph, np.full(graph.number_of_edges(), 2.0 / (values[1] + values[-1])))


def uniform(graph: nx.Graph) -> np.ndarray:
    """J = 11ᵀ/n: exact averaging in one step; only supported on the complete graph."""
    n = graph.number_of_nodes()
    if graph.number_of_edges() != n * (n - 1) // 2:
        raise ValueError("uniform mixing (W = J) needs the complete graph")
    return np.full((n, n), 1.0 / n)


def _sdp(graph: nx.Graph, nonnegative: bool) -> tuple[np.ndarray, str]:
    """(G4)/(G5) min s s.t. −sI ⪯ I − B diag(w) Bᵀ − J ⪯ sI (+ w ≥ 0, |B| w ≤ 1 for FMMC)."""
    import cvxpy as cp

    b, _ = incidence(graph)
    n, m = b.shape
    w = cp.Variable(m)
    s = cp.Variable()
    shifted = np.eye(n) - np.full((n, n), 1.0 / n)
    matrix = shifted - b @ cp.diag(w) @ b.T
    constraints = [matrix << s * np.eye(n), matrix >> -s * np.eye(n)]
    if nonnegative:
        constraints += [w >= 0, np.abs(b) @ w <= 1]
    problem = cp.Problem(cp.Minimize(s), constraints)
    problem.solve(solver=cp.CLARABEL if "CLARABEL" in cp.installed_solvers() else cp.SCS)
    if w.value is None or problem.status not in ("optimal", "optimal_inaccurate"):
        raise RuntimeError(f"SDP solver status {problem.status}")
    return _from_edge_weights(graph, np.asarray(w.value)), str(problem.status)


def _first_order(graph: nx.Graph, nonnegative: bool, iterations: int = 3000) -> tuple[np.ndarray, str]:
    """Projected subgradient on SLEM(w) (Boyd et al.): ∂/∂w_e = −(b_eᵀu)² sign(λ) for the
    extremal eigenpair (λ, u) of W − J; step 1/√k, projection onto the FMMC constraints."""
    b, _ = incidence(graph)
    n = b.shape[0]
    weights = np.array([1.0 / (1 + max(graph.degree(i), graph.degree(j))) for i, j in incidence(graph)[1]])
    best, best_value = weights.copy(), np.inf
    shifted = np.eye(n) - np.full((n, n), 1.0 / n)
    for k in range(1, iterations + 1):
        matrix = shifted - b @ (weights[:, None] * b.T)
        values, vectors = np.linalg.eigh(matrix)
        index = 0 if abs(values[0]) > abs(values[-1]) else n - 1
        value = abs(values[index])
        if value < best_value:
            best, best_value = weights.copy(), value
        projection = (b.T @ vectors[:, index]) ** 2
        gradient = -np.sign(values[index]) * projection
        weights = weights - gradient / (np.linalg.norm(gradient) + 1e-12) * (0.5 / np.sqrt(k))
        if nonnegative:
            weights = np.maximum(weights, 0.0)
            load = np.abs(b) @ weights
            excess = load.max()
            if excess > 1:
                weights = weights / excess
    return _from_edge_weights(graph, best), f"first_order({iterations} iterations)"


def check_mixing(weights: np.ndarray, graph: nx.Graph, atol: float = 1e-8) -> None:
    """Symmetric, doubly stochastic and supported on the graph (plus the diagonal)."""
    n = graph.number_of_nodes()
    if weights.shape != (n, n):
        raise ValueError(f"W has shape {weights.shape}, expected {(n, n)}")
    if not np.allclose(weights, weights.T, atol=atol):
        raise ValueError("W is not symmetric")
    if not np.allclose(weights.sum(axis=1), 1.0, atol=atol):
        raise ValueError("W is not stochastic: its rows do not sum to one")
    allowed = nx.to_numpy_array(graph, nodelist=range(n)) + np.eye(n)
    if np.any(np.abs(weights[allowed == 0]) > atol):
        raise ValueError("W puts weight on a pair of nodes that is not an edge")


def mixing_matrix(graph: nx.Graph, method: str = "metropolis", solver: str = "auto") -> Mixing:
    """W for ``method``, checked before use; SDP failures fall back to Metropolis loudly."""
    heuristics = {
        "metropolis": metropolis,
        "max_degree": max_degree,
        "best_constant": best_constant,
        "uniform": uniform,
    }
    if method in heuristics:
        weights, status = heuristics[method](graph), "closed_form"
    else:
        use_first_order = solver == "first_order" or (
            solver == "auto" and graph.number_of_nodes() >= FIRST_ORDER_THRESHOLD
        )
        try:
            if use_first_order:
                weights, status = _first_order(graph, nonnegative=method == "fmmc")
            else:
                weights, status = _sdp(graph, nonnegative=method == "fmmc")
        except Exception as exc:  # any solver failure: fall back, loudly
            log.warning("%s weights failed (%s); falling back to metropolis", method, exc)
            weights, status = metropolis(graph), f"failed ({exc}); fell back to metropolis"
    check_mixing(weights, graph, atol=1e-6)
    return Mixing(weights, method, status, slem(weights))
