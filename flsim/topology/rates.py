"""Per-edge communication rates for DADAO and the asynchronous baselines (docs/algorithms.md A1, A6).

DADAO needs χ₁ χ₂ ≤ ½ (A1). The code's default spreads a total rate s = √(2 χ₁(L_p) χ₂(L_p))
uniformly over the edges (:func:`uniform_edge_rates`). :func:`optimal_rates` solves (A6):
minimise Σ λ_e subject to χ₁ χ₂ ≤ ½. Scaling every rate by c divides both χ's by c, so the
problem is a 1-D search over a > 0 of convex slices

    SDP(a): min 1ᵀλ  s.t.  λ ≥ 0,  S(λ) = Uᵀ B diag(λ) Bᵀ U ⪰ (1/a) I,
            [[S(λ), u_e], [u_eᵀ, 1/a]] ⪰ 0 for every edge e,

where U is an orthonormal basis of 1^⊥ and u_e = Uᵀ b_e. The first LMI says χ₁ ≤ a; by a
Schur complement the others say b_eᵀ Λ⁺ b_e ≤ 1/a, i.e. χ₂ ≤ 1/(2a); together χ₁χ₂ ≤ ½.
The slice is a cvxpy problem with 1/a as a parameter, so it is compiled once per graph.

Each slice solution λ(a) is then rescaled to the boundary χ₁χ₂ = ½ (multiply by
√(2 χ₁ χ₂) ≤ 1, computed numerically). That makes the search objective flat near the
optimum instead of V-shaped (on an edge-transitive graph every slice is uniform, and the
rescaled value *is* the optimum for any a). The search is a coarse grid over log a around
the uniform allocation's χ₁, then golden-section refinement. The returned rates are checked
numerically: χ₁χ₂ ≤ ½(1 + 1e-9) is asserted. Uniform rates are returned (method
``uniform``) when the SDP does not beat them, which is the expected outcome on
edge-transitive graphs.

Default solver: every constraint of SDP(a) is jointly linear in (λ, 1/a), so min_a SDP(a) is a
single convex problem; :mod:`flsim.topology.rates_ipm` solves it with a structured barrier
method (one solve, n = 50 in about 2 s against minutes for the search) and the search above
remains as ``formulation="flow"``/``"lmi"`` and as the fallback. Both end in the same
numerical post-check.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import numpy as np

from flsim.config.errors import ConfigError
from flsim.topology.rates_ipm import solve_rates
from flsim.topology.sdp import single_blas_thread
from flsim.topology.spectral import chi_values, incidence, uniform_rates

logger = logging.getLogger(__name__)

#: Relative slack allowed on χ₁χ₂ ≤ ½ in the final numerical check.
CONDITION_RTOL = 1e-9
GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


@dataclass(frozen=True)
class EdgeRates:
    """Per-edge Poisson rates λ_e (edge order of ``edges``) and their DADAO quantities (A1)."""

    edges: list[tuple[int, int]]
    rates: list[float]
    chi1: float
    chi2: float
    total_rate: float
    uniform_total_rate: float
    method: str
    a: float | None = None
    solves: int = 0
    solve_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def savings(self) -> float:
        """1 − total/uniform total: the share of communications the optimal rates save."""
        return 1.0 - self.total_rate / self.uniform_total_rate if self.uniform_total_rate else 0.0

    def summary(self) -> dict[str, Any]:
        """JSON-friendly form for the CLI and run summaries."""
        return {
            "method": self.method,
            "total_rate": self.total_rate,
            "uniform_total_rate": self.uniform_total_rate,
            "savings": self.savings,
            "chi1": self.chi1,
            "chi2": self.chi2,
            "chi1_chi2": self.chi1 * self.chi2,
            "a": self.a,
            "solves": self.solves,
            "solve_seconds": self.solve_seconds,
            "rates": [
                {"edge": [int(i), int(j)], "rate": float(r)}
                for (i, j), r in zip(self.edges, self.rates, strict=True)
            ],
        }


def _orthonormal_complement(n: int) -> np.ndarray:
    """U: an orthonormal basis of 1^⊥ (n × (n−1))."""
    basis, _ = np.linalg.qr(np.eye(n) - np.full((n, n), 1.0 / n))
    return basis[:, : n - 1]


def _to_boundary(b: np.ndarray, rates: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Rescale rates so that χ₁χ₂ = ½ exactly (A1): both χ's scale as 1/c."""
    chi1, chi2 = chi_values(b, rates)
    factor = math.sqrt(2.0 * chi1 * chi2)
    return rates * factor, chi1 / factor, chi2 / factor


class _SliceProblem:
    """SDP(a) of (A6) compiled once; :meth:`solve` changes only the parameter 1/a.

    ``formulation="lmi"`` is (A6) verbatim: one (n−1)-sided LMI S(λ) ⪰ I/a plus one n-sided
    LMI per edge. ``formulation="flow"`` (default) keeps the first LMI and writes the per-edge
    condition b_eᵀ Λ⁺ b_e ≤ 1/a through Thomson's principle, b_eᵀ Λ⁺ b_e = min over unit
    flows f from i to j (B f = b_e) of Σ_k f_k²/λ_k: flows F (m × m) with B F = B and
    rotated cones f_ke² ≤ t_ke λ_k, Σ_k t_ke ≤ 1/a. Both describe the same set of λ, so the
    optimum is the same (the tests check it); measured with CLARABEL the flow form is 3-9x
    faster (4×4 torus: 0.35 s against 3 s per slice; G(20, 0.3): 1.1 s against 9.4 s).
    """

    def __init__(self, b: np.ndarray, solver: str | None = None, formulation: str = "flow") -> None:
        import cvxpy as cp

        n, m = b.shape
        u = _orthonormal_complement(n)
        projected = u.T @ b  # (n−1) × m, column e is u_e
        k = n - 1
        # vec(S(λ)) = K λ with column e = vec(u_e u_eᵀ): the only matrix expression, built once.
        operator = np.einsum("ae,ce->ace", projected, projected).reshape(k * k, m)
        self.rates = cp.Variable(m, nonneg=True)
        self.inverse_a = cp.Parameter(nonneg=True)
        s_matrix = cp.reshape(operator @ self.rates, (k, k), order="C")
        s_matrix = (s_matrix + s_matrix.T) / 2
        constraints = [s_matrix >> self.inverse_a * np.eye(k)]
        if formulation == "lmi":
            corner = cp.reshape(self.inverse_a, (1, 1), order="C")
            for e in range(m):
                column = projected[:, e : e + 1]
                constraints.append(cp.bmat([[s_matrix, column], [column.T, corner]]) >> 0)
        elif formulation == "flow":
            flows = cp.Variable((m, m))  # column e: a unit flow from i to j for edge e = (i, j)
            costs = cp.Variable((m, m), nonneg=True)  # t_ke ≥ f_ke² / λ_k
            spread = cp.reshape(self.rates, (m, 1), order="C") @ np.ones((1, m))  # λ_k in row k
            constraints += [
                b @ flows == b,
                cp.sum(costs, axis=0) <= self.inverse_a,
                # f² ≤ t·λ  ⇔  ‖(2f, t − λ)‖ ≤ t + λ, elementwise
                cp.SOC(
                    cp.vec(costs + spread, order="C"),
                    cp.vstack([cp.vec(2 * flows, order="C"), cp.vec(costs - spread, order="C")]),
                    axis=0,
                ),
            ]
        else:
            raise ConfigError("rates.formulation", formulation, "choose flow or lmi")
        self.problem = cp.Problem(cp.Minimize(cp.sum(self.rates)), constraints)
        installed = cp.installed_solvers()
        self.solver = solver or ("CLARABEL" if "CLARABEL" in installed else "SCS")

    def solve(self, a: float) -> np.ndarray | None:
        self.inverse_a.value = 1.0 / a
        try:
            with warnings.catch_warnings():  # "may be inaccurate": the result is re-checked numerically
                warnings.simplefilter("ignore", UserWarning)
                self.problem.solve(solver=self.solver)
        except Exception as exc:
            logger.debug("rate slice at a=%g failed: %s", a, exc)
            return None
        if self.rates.value is None or self.problem.status not in ("optimal", "optimal_inaccurate"):
            return None
        return np.maximum(np.asarray(self.rates.value, dtype=np.float64), 0.0)


def uniform_edge_rates(graph: nx.Graph) -> EdgeRates:
    """(A1) The code's allocation: Λ = s L_p with L_p = L/|E| and s = √(2 χ₁(L_p) χ₂(L_p))."""
    b, edges = incidence(graph)
    rates = uniform_rates(b)
    chi1, chi2 = chi_values(b, rates)
    total = float(rates.sum())
    return EdgeRates(edges, rates.tolist(), chi1, chi2, total, total, "uniform")


def optimal_rates(
    graph: nx.Graph,
    *,
    grid: int = 5,
    grid_ratio: float = 4.0,
    refinements: int = 10,
    solver: str | None = None,
    formulation: str = "barrier",
) -> EdgeRates:
    """(A6) The cheapest per-edge rates with χ₁χ₂ ≤ ½.

    ``formulation="barrier"`` (default) solves min_a SDP(a) as the one convex problem it is
    (1/a becomes a variable: every constraint of SDP(a) is jointly linear in λ and 1/a) with
    the structured barrier method of :mod:`flsim.topology.rates_ipm`: n = 50 in seconds. If
    it fails, the 1-D search below runs instead (logged as a warning).

    ``flow`` / ``lmi``: the 1-D search over log a of cvxpy slices SDP(a) as (A6) states it:
    ``grid`` slices spaced by ``grid_ratio`` around a₀ = χ₁ of the uniform allocation (the
    grid widens while the best point sits on its edge), then ``refinements`` golden-section
    steps between the best point's neighbours. Each evaluation is one cvxpy solve (see
    :class:`_SliceProblem`); about 4 s at n = 16 and 2 min at n = 32 on the 2-core machine.
    """
    if grid < 3:
        raise ConfigError("rates.grid", grid, "the grid needs at least 3 points")
    if formulation not in ("barrier", "flow", "lmi"):
        raise ConfigError("rates.formulation", formulation, "choose barrier, flow or lmi")
    started = time.perf_counter()
    b, edges = incidence(graph)
    uniform = uniform_edge_rates(graph)
    if len(edges) <= 1:
        return uniform
    if formulation == "barrier":
        result = _barrier(b, edges, uniform, started)
        if result is not None:
            return result
        formulation = "flow"
    values, solutions = _search(b, uniform, solver, formulation, grid, grid_ratio, refinements)
    finite = [p for p in values if math.isfinite(values[p])]
    seconds = time.perf_counter() - started
    if not finite:
        logger.warning("optimal rates: every SDP slice failed; using uniform rates")
        return _with(uniform, method="uniform (SDP failed)", solves=len(values), seconds=seconds)
    best_key = min(finite, key=lambda p: values[p])
    return _checked(
        b,
        edges,
        solutions[best_key],
        uniform,
        method="sdp",
        a=math.exp(best_key),
        solves=len(values),
        seconds=seconds,
    )


def _barrier(
    b: np.ndarray, edges: list[tuple[int, int]], uniform: EdgeRates, started: float
) -> EdgeRates | None:
    """(A6) as one convex problem by the barrier method; None (logged) when it fails."""
    try:
        with single_blas_thread():
            solution = solve_rates(b, np.asarray(uniform.rates))
        best, _, _ = _to_boundary(b, solution.rates)
    except (RuntimeError, ValueError, np.linalg.LinAlgError) as exc:
        logger.warning("optimal rates: barrier method failed (%s); falling back to the 1-D search", exc)
        return None
    return _checked(
        b,
        edges,
        best,
        uniform,
        method="sdp",
        a=1.0 / solution.tau,
        solves=1,
        seconds=time.perf_counter() - started,
    )


def _search(
    b: np.ndarray,
    uniform: EdgeRates,
    solver: str | None,
    formulation: str,
    grid: int,
    grid_ratio: float,
    refinements: int,
) -> tuple[dict[float, float], dict[float, np.ndarray]]:
    """The 1-D search over log a: (total rate per evaluated log a, boundary rates per finite one)."""
    with single_blas_thread():
        problem = _SliceProblem(b, solver, formulation)
        values: dict[float, float] = {}
        solutions: dict[float, np.ndarray] = {}

        def total(log_a: float) -> float:
            if log_a not in values:
                rates = problem.solve(math.exp(log_a))
                if rates is None or not np.all(np.isfinite(rates)) or rates.sum() <= 0:
                    values[log_a] = math.inf
                else:
                    try:
                        boundary, _, _ = _to_boundary(b, rates)
                    except ValueError:  # the solver's λ left the graph disconnected
                        values[log_a] = math.inf
                    else:
                        values[log_a], solutions[log_a] = float(boundary.sum()), boundary
            return values[log_a]

        centre = math.log(uniform.chi1)
        step = math.log(grid_ratio)
        points = [centre + (i - grid // 2) * step for i in range(grid)]
        for point in points:
            total(point)
        for _ in range(6):  # widen while the minimum is on the grid's edge
            best_point = min(points, key=lambda p: values[p])
            if best_point == points[0]:
                points.insert(0, points[0] - step)
            elif best_point == points[-1]:
                points.append(points[-1] + step)
            else:
                break
            total(points[0] if best_point == points[1] else points[-1])
        best_point = min(points, key=lambda p: values[p])
        index = points.index(best_point)
        low = points[max(index - 1, 0)]
        high = points[min(index + 1, len(points) - 1)]
        x1, x2 = high - GOLDEN * (high - low), low + GOLDEN * (high - low)
        for _ in range(refinements):
            if total(x1) <= total(x2):
                high, x2 = x2, x1
                x1 = high - GOLDEN * (high - low)
            else:
                low, x1 = x1, x2
                x2 = low + GOLDEN * (high - low)
    return values, solutions


def _checked(
    b: np.ndarray,
    edges: list[tuple[int, int]],
    best: np.ndarray,
    uniform: EdgeRates,
    *,
    method: str,
    a: float | None,
    solves: int,
    seconds: float,
) -> EdgeRates:
    """The post-check of (A6): recompute χ₁, χ₂ numerically and assert χ₁χ₂ ≤ ½.

    Uniform rates are returned when the solution does not beat them (edge-transitive graphs,
    where uniform is optimal: returning it exactly avoids solver-tolerance noise).
    """
    if best.sum() >= uniform.total_rate * (1.0 - 1e-7):
        return _with(uniform, method="uniform", a=a, solves=solves, seconds=seconds)
    chi1, chi2 = chi_values(b, best)
    if chi1 * chi2 > 0.5 * (1.0 + CONDITION_RTOL):
        raise AssertionError(f"rate condition violated after the solve: χ₁χ₂ = {chi1 * chi2:.12g} > 1/2")
    logger.info(
        "optimal rates: total %.6g vs uniform %.6g (%d solve(s), %.2f s)",
        best.sum(),
        uniform.total_rate,
        solves,
        seconds,
    )
    return EdgeRates(
        edges,
        best.tolist(),
        chi1,
        chi2,
        float(best.sum()),
        uniform.total_rate,
        method,
        a=a,
        solves=solves,
        solve_seconds=seconds,
    )


def _with(rates: EdgeRates, *, method: str, solves: int, seconds: float, a: float | None = None) -> EdgeRates:
    return EdgeRates(
        rates.edges,
        rates.rates,
        rates.chi1,
        rates.chi2,
        rates.total_rate,
        rates.uniform_total_rate,
        method,
        a=a,
        solves=solves,
        solve_seconds=seconds,
    )


def edge_rates_for(config: Any, num_nodes: int, seed: int) -> EdgeRates:
    """The rates a scenario's ``topology.rates`` asks for, on its (fixed) graph."""
    from flsim.topology.schedule import graph_for

    if config.rates not in ("uniform", "sdp"):
        raise ConfigError("topology.rates", config.rates, "choose uniform or sdp")
    graph = graph_for(config, num_nodes, seed, 0)
    return optimal_rates(graph) if config.rates == "sdp" else uniform_edge_rates(graph)
