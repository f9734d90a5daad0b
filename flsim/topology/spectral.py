"""Spectral quantities of graphs and gossip matrices (docs/algorithms.md G, D, A1).

* ``slem(W) = ‖W − J‖₂`` (G): the per-step contraction of the consensus error; DFedSAM's λ
  (D) is the same number for a symmetric doubly stochastic W.
* ``spectral_gap = 1 − slem``.
* λ₂(L), the algebraic connectivity.
* DADAO's χ₁ = 1/λ_min⁺(Λ) and χ₂ = ½ max_e (e_i − e_j)ᵀ Λ⁺ (e_i − e_j) for the rate-weighted
  Laplacian Λ = Σ_e λ_e (e_i − e_j)(e_i − e_j)ᵀ (A1), and the uniform-rate scale
  s = √(2 χ₁(L_p) χ₂(L_p)) on L_p = L/|E|.

All of these are dense eigendecompositions: they are used on graphs of at most a few thousand
nodes, once per graph, and exactness matters more than speed here.
"""

from __future__ import annotations

import networkx as nx
import numpy as np

from flsim.topology.graphs import edge_list, laplacian_from_weights

#: Eigenvalues below this fraction of the largest one count as zero (the 1-vector's eigenvalue).
ZERO_EIGENVALUE_RTOL = 1e-10


def incidence(graph: nx.Graph) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Dense B (n × m), column e = e_i − e_j for edge e = (i, j), i < j, edges sorted (G)."""
    edges = edge_list(graph)
    b = np.zeros((graph.number_of_nodes(), len(edges)))
    for column, (i, j) in enumerate(edges):
        b[i, column], b[j, column] = 1.0, -1.0
    return b, edges


def slem(weights: np.ndarray) -> float:
    """‖W − J‖₂ (G): for symmetric W the largest |eigenvalue| of W − J, i.e. max(|λ₂|, |λ_N|) (D).

    A non-symmetric (row-stochastic) W gets the spectral norm instead, which is what bounds
    one gossip step's contraction of the consensus error in that case.
    """
    weights = np.asarray(weights, dtype=np.float64)
    n = weights.shape[0]
    shifted = weights - 1.0 / n
    if np.array_equal(weights, weights.T):
        return float(np.max(np.abs(np.linalg.eigvalsh(shifted))))
    return float(np.linalg.norm(shifted, 2))


def spectral_gap(weights: np.ndarray) -> float:
    """1 − SLEM: how much one gossip step shrinks the consensus error at worst."""
    return 1.0 - slem(weights)


def laplacian(graph: nx.Graph, rates: np.ndarray | None = None) -> np.ndarray:
    """Λ = Σ_e λ_e (e_i − e_j)(e_i − e_j)ᵀ (A1); unit rates give the combinatorial Laplacian L."""
    edges = edge_list(graph)
    values = np.ones(len(edges)) if rates is None else np.asarray(rates, dtype=np.float64)
    if values.shape != (len(edges),):
        raise ValueError(f"need one rate per edge ({len(edges)}), got shape {values.shape}")
    return laplacian_from_weights(graph.number_of_nodes(), edges, values)


def laplacian_lambda2(graph: nx.Graph) -> float:
    """Algebraic connectivity λ₂(L): zero exactly when the graph is disconnected."""
    values = np.linalg.eigvalsh(laplacian(graph))
    return float(values[1]) if values.size > 1 else 0.0


def _positive_spectrum(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    values, vectors = np.linalg.eigh(matrix)
    scale = max(float(np.abs(values).max()), np.finfo(float).tiny)
    keep = values > ZERO_EIGENVALUE_RTOL * scale
    return values[keep], vectors[:, keep]


def chi_values(b: np.ndarray, rates: np.ndarray) -> tuple[float, float]:
    """(A1) χ₁ = 1/λ_min⁺(Λ) and χ₂ = ½ max_e b_eᵀ Λ⁺ b_e for Λ = B diag(λ) Bᵀ.

    ``b`` is the dense incidence matrix (see :func:`incidence`). χ₂ is half the largest
    effective resistance of an edge in the network whose conductances are the rates.
    """
    b = np.asarray(b, dtype=np.float64)
    rates = np.asarray(rates, dtype=np.float64)
    lap = (b * rates) @ b.T
    lap = 0.5 * (lap + lap.T)
    values, vectors = _positive_spectrum(lap)
    if values.size < b.shape[0] - 1:
        raise ValueError("rates leave the graph disconnected (Λ has a second zero eigenvalue)")
    chi1 = 1.0 / float(values.min())
    projected = vectors.T @ b  # coordinates of each b_e in the eigenbasis of Λ
    resistances = np.sum(projected * projected / values[:, None], axis=0)
    chi2 = 0.5 * float(resistances.max())
    return chi1, chi2


def graph_chis(graph: nx.Graph, rates: np.ndarray | None = None) -> tuple[float, float]:
    """χ₁, χ₂ (A1) of ``graph`` with per-edge ``rates`` (edge order of :func:`edge_list`)."""
    b, edges = incidence(graph)
    values = np.ones(len(edges)) if rates is None else np.asarray(rates, dtype=np.float64)
    return chi_values(b, values)


def uniform_rate_scale(b: np.ndarray) -> float:
    """(A1) s = √(2 χ₁(L_p) χ₂(L_p)) with L_p = L/|E|: the total rate of the uniform allocation."""
    edges = b.shape[1]
    chi1, chi2 = chi_values(b, np.full(edges, 1.0 / edges))
    return float(np.sqrt(2.0 * chi1 * chi2))


def uniform_rates(b: np.ndarray) -> np.ndarray:
    """(A1) The code's uniform allocation: Λ = s L_p, L_p = L/|E|, s = √(2 χ₁(L_p) χ₂(L_p)).

    Scaling every rate by s divides both χ's by s, so this is the smallest uniform
    allocation with χ₁ χ₂ = ½. Each edge gets s/|E|, so the total rate is s.
    """
    edges = b.shape[1]
    return np.full(edges, uniform_rate_scale(b) / edges)
