"""Spectral quantities of graphs and gossip matrices (ALGORITHMS.md G, A1)."""

from __future__ import annotations

import networkx as nx
import numpy as np


def incidence(graph: nx.Graph) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """B (n × m) with column e = e_i − e_j for edge e = (i, j), i < j, edges sorted."""
    edges = sorted((min(i, j), max(i, j)) for i, j in graph.edges())
    b = np.zeros((graph.number_of_nodes(), len(edges)))
    for column, (i, j) in enumerate(edges):
        b[i, column], b[j, column] = 1.0, -1.0
    return b, edges


def slem(weights: np.ndarray) -> float:
    """‖W − J‖₂: the second-largest eigenvalue modulus of a doubly stochastic W (G)."""
    n = weights.shape[0]
    return float(np.linalg.norm(weights - np.full((n, n), 1.0 / n), 2))


def laplacian_lambda2(graph: nx.Graph) -> float:
    """Algebraic connectivity λ₂(L)."""
    values = np.linalg.eigvalsh(nx.laplacian_matrix(graph, nodelist=range(graph.number_of_nodes())).toarray())
    return float(values[1])


def chi_values(b: np.ndarray, rates: np.ndarray) -> tuple[float, float]:
    """(A1) χ₁ = 1/λ_min⁺(Λ) and χ₂ = ½ max_e b_eᵀ Λ⁺ b_e for Λ = B diag(λ) Bᵀ."""
    laplacian = b @ np.diag(rates) @ b.T
    values = np.linalg.eigvalsh(laplacian)
    positive = values[values > 1e-10 * max(values.max(), 1e-300)]
    chi1 = 1.0 / float(positive.min())
    pseudo = np.linalg.pinv(laplacian, hermitian=True)
    chi2 = 0.5 * float(np.max(np.einsum("ie,ij,je->e", b, pseudo, b)))
    return chi1, chi2


def uniform_rates(b: np.ndarray) -> np.ndarray:
    """(A1) The code's uniform allocation: Λ = s L_p, L_p = L/|E|, s = √(2 χ₁(L_p) χ₂(L_p)).

    Scaling every rate by s divides both χ's by s, so this is the smallest uniform
    allocation with χ₁ χ₂ = ½.
    """
    edges = b.shape[1]
    base = np.full(edges, 1.0 / edges)
    chi1, chi2 = chi_values(b, base)
    return base * np.sqrt(2 * chi1 * chi2)
