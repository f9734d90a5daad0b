"""Per-edge communication rates for DADAO and the asynchronous baselines (ALGORITHMS.md A1, A6).

Optimal rates minimise the total rate Σ λ_e subject to χ₁ χ₂ ≤ ½. Both χ's scale as 1/s
when every rate is scaled by s, so the problem is a 1-D search over a > 0 of convex SDP
slices SDP(a): min 1ᵀλ s.t. λ ≥ 0, S(λ) = Uᵀ B diag(λ) Bᵀ U ⪰ (1/a) I (so χ₁ ≤ a) and, per
edge, [[S(λ), u_e], [u_eᵀ, 1/a]] ⪰ 0 (so b_eᵀ Λ⁺ b_e ≤ 1/a, χ₂ ≤ 1/(2a)); then χ₁χ₂ ≤ ½.
The per-edge LMIs share S(λ), an (n−1)-dimensional expression built once from Bᵀ U.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import numpy as np

from flsim.topology.spectral import chi_values, incidence, uniform_rates

TOLERANCE = 1e-6


@dataclass(frozen=True)
class EdgeRates:
    edges: list[tuple[int, int]]
    rates: list[float]
    chi1: float
    chi2: float
    total_rate: float
    uniform_total_rate: float
    method: str


def _orthonormal_complement(n: int) -> np.ndarray:
    """U: an orthonormal basis of 1^⊥ (n × (n−1))."""
    basis, _ = np.linalg.qr(np.eye(n) - np.full((n, n), 1.0 / n))
    return basis[:, : n - 1]


def _slice(b: np.ndarray, u: np.ndarray, a: float) -> np.ndarray | None:
    import cvxpy as cp

    n, m = b.shape
    projected = u.T @ b  # (n−1) × m, columns u_e
    rates = cp.Variable(m, nonneg=True)
    s_matrix = projected @ cp.diag(rates) @ projected.T
    constraints = [s_matrix >> (1.0 / a) * np.eye(n - 1)]
    for e in range(m):
        column = projected[:, e : e + 1]
        constraints.append(cp.bmat([[s_matrix, column], [column.T, np.array([[1.0 / a]])]]) >> 0)
    problem = cp.Problem(cp.Minimize(cp.sum(rates)), constraints)
    problem.solve(solver=cp.CLARABEL if "CLARABEL" in cp.installed_solvers() else cp.SCS)
    return None if rates.value is None else np.maximum(np.asarray(rates.value), 0.0)


def _feasible(b: np.ndarray, rates: np.ndarray) -> tuple[float, float, bool]:
    chi1, chi2 = chi_values(b, rates)
    return chi1, chi2, chi1 * chi2 <= 0.5 * (1 + TOLERANCE)


def optimal_rates(graph: nx.Graph, searches: int = 24) -> EdgeRates:
    """(A6) Golden-section search over log a of SDP(a), then a numerical post-check."""
    b, edges = incidence(graph)
    u = _orthonormal_complement(b.shape[0])
    uniform = uniform_rates(b)
    cache: dict[float, float] = {}
    solutions: dict[float, np.ndarray] = {}

    def total(log_a: float) -> float:
        if log_a not in cache:
            rates = _slice(b, u, float(np.exp(log_a)))
            if rates is None or not _feasible(b, rates)[2]:
                cache[log_a] = np.inf
            else:
                # A slice's optimum can be loose by the solver tolerance; rescale to the boundary.
                chi1, chi2 = chi_values(b, rates)
                rates = rates * np.sqrt(2 * chi1 * chi2)
                cache[log_a], solutions[log_a] = float(rates.sum()), rates
        return cache[log_a]

    chi1_uniform, _ = chi_values(b, uniform)
    centre = np.log(chi1_uniform)
    low, high = centre - 4.0, centre + 4.0
    ratio = (np.sqrt(5) - 1) / 2
    x1, x2 = high - ratio * (high - low), low + ratio * (high - low)
    for _ in range(searches):
        if total(x1) <= total(x2):
            high, x2 = x2, x1
            x1 = high - ratio * (high - low)
        else:
            low, x1 = x1, x2
            x2 = low + ratio * (high - low)
    best_key = min(cache, key=cache.get) if cache else None
    best = solutions.get(best_key) if best_key is not None else None
    if best is None or best.sum() > uniform.sum():
        best, method = uniform, "uniform (SDP did not improve on it)"
    else:
        method = "sdp"
    chi1, chi2, ok = _feasible(b, best)
    if not ok:
        raise AssertionError(f"rate condition violated after the solve: χ₁χ₂ = {chi1 * chi2:.6g} > 1/2")
    return EdgeRates(edges, best.tolist(), chi1, chi2, float(best.sum()), float(uniform.sum()), method)


def uniform_edge_rates(graph: nx.Graph) -> EdgeRates:
    b, edges = incidence(graph)
    rates = uniform_rates(b)
    chi1, chi2 = chi_values(b, rates)
    return EdgeRates(edges, rates.tolist(), chi1, chi2, float(rates.sum()), float(rates.sum()), "uniform")


def edge_rates_for(config, num_nodes: int, seed: int) -> EdgeRates:
    """The rates a scenario's ``topology.rates`` asks for, on its (fixed) graph."""
    from flsim.topology.schedule import graph_for

    graph = graph_for(config, num_nodes, seed, 0)
    return optimal_rates(graph) if config.rates == "sdp" else uniform_edge_rates(graph)
