"""Optimal DADAO edge rates (docs/algorithms.md A6) as one convex problem, by a barrier method.

(A6) searches over a > 0 and solves, for each a, the slice

    SDP(a): min 1ᵀλ  s.t.  λ ≥ 0,  S(λ) ⪰ (1/a) I,  [[S(λ), u_e], [u_eᵀ, 1/a]] ⪰ 0  ∀e,

with S(λ) = Uᵀ B diag(λ) Bᵀ U and u_e = Uᵀ b_e. Every constraint is *jointly* linear in
(λ, τ) with τ = 1/a, so min_a SDP(a) is the single convex program

    min 1ᵀλ  s.t.  λ ≥ 0,  S(λ) ⪰ τ I,  R_e(λ) := u_eᵀ S(λ)⁻¹ u_e ≤ τ  ∀e,        (★)

where R_e = b_eᵀ Λ⁺ b_e is the effective resistance of edge e (Schur complement of the
per-edge LMI). Then χ₁ ≤ 1/τ and χ₂ ≤ τ/2, so χ₁χ₂ ≤ ½ (A1). No 1-D search is needed: on
a 16-node geometric graph (★) and the golden-section search over SDP(a) agree to 1e-6.

(★) is solved here with a primal log-barrier method (Newton steps, backtracking) that uses
its structure instead of a generic conic solver: with Q = Bᵀ Λ⁺ B (m × m),

* ∂R_e/∂λ_k = −Q_ek² and ∂²R_e/∂λ_k∂λ_l = 2 Q_ek Q_kl Q_le, so the barrier's Hessian
  Σ_e ∇²R_e/s_e is 2 (Q diag(1/s) Q) ∘ Q — one m × m product per Newton step;
* −log det(S − τI) has Hessian entries (u_kᵀ T u_l)² with T = (S − τI)⁻¹.

A Newton step costs O(n³ + m³) with no n² × n² or m per-edge LMIs anywhere. Measured on the
2-core development machine: random geometric graphs n = 16/32/50 in well under a second to
a few seconds, where cvxpy's m per-edge LMIs (or flows) took minutes at n = 32
(``benchmarks/sdp_rates.py``). The result is then rescaled to the boundary χ₁χ₂ = ½ and
checked numerically by the caller (:func:`flsim.topology.rates.optimal_rates`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RateSolution:
    """Rates λ (edge order of B's columns), the certified τ, the duality-gap bound and steps."""

    rates: np.ndarray
    tau: float
    gap: float
    newton_steps: int


def _orthonormal_complement(n: int) -> np.ndarray:
    """U: an orthonormal basis of 1^⊥ (n × (n−1)), from a QR of the centring matrix."""
    basis, _ = np.linalg.qr(np.eye(n) - np.full((n, n), 1.0 / n))
    return basis[:, : n - 1]


class _RateBarrier:
    """t·1ᵀλ − Σ log λ_e − log det(S(λ) − τI) − Σ_e log(τ − R_e(λ)) and its derivatives."""

    def __init__(self, b: np.ndarray) -> None:
        n, m = b.shape
        self.m = m
        self.projected = _orthonormal_complement(n).T @ b  # (n−1) × m, column e = u_e
        self.eye = np.eye(n - 1)

    def _s_matrix(self, rates: np.ndarray) -> np.ndarray:
        s = (self.projected * rates) @ self.projected.T
        return 0.5 * (s + s.T)

    def value(self, rates: np.ndarray, tau: float, t: float) -> float:
        """The barrier objective; +inf outside the strict interior of (★)."""
        if tau <= 0 or np.any(rates <= 0):
            return math.inf
        s = self._s_matrix(rates)
        try:
            shifted = np.linalg.cholesky(s - tau * self.eye)
            factor = sla.cho_factor(s, lower=True, check_finite=False)
        except np.linalg.LinAlgError:
            return math.inf
        resistances = np.einsum("ae,ae->e", self.projected, sla.cho_solve(factor, self.projected))
        slack = tau - resistances
        if np.any(slack <= 0):
            return math.inf
        return float(
            t * rates.sum() - np.log(rates).sum() - 2.0 * np.log(np.diag(shifted)).sum() - np.log(slack).sum()
        )

    def resistances(self, rates: np.ndarray) -> np.ndarray:
        s = self._s_matrix(rates)
        return np.einsum("ae,ae->e", self.projected, np.linalg.solve(s, self.projected))

    def derivatives(self, rates: np.ndarray, tau: float, t: float) -> tuple[np.ndarray, np.ndarray]:
        m = self.m
        s = self._s_matrix(rates)
        u = self.projected
        q = u.T @ np.linalg.solve(s, u)  # Q = Bᵀ Λ⁺ B
        q = 0.5 * (q + q.T)
        slack = tau - np.diag(q)
        q2 = q * q  # row e: −∂R_e/∂λ
        inv_slack = 1.0 / slack
        gradient = np.empty(m + 1)
        hessian = np.empty((m + 1, m + 1))
        # t·1ᵀλ − Σ log λ
        gradient[:m] = t - 1.0 / rates
        hessian[:m, :m] = np.diag(1.0 / rates**2)
        # −Σ_e log(τ − R_e): ∇ = −(∂(τ − R_e))/s_e with ∂(τ − R_e) = (q2_e, 1)
        gradient[:m] -= q2.T @ inv_slack
        gradient[m] = -inv_slack.sum()
        weighted = q2 * inv_slack[:, None]
        hessian[:m, :m] += 2.0 * ((q * inv_slack) @ q) * q + weighted.T @ weighted
        hessian[:m, m] = q2.T @ inv_slack**2
        hessian[m, m] = float(np.sum(inv_slack**2))
        # −log det(S − τI): ∂F/∂λ_k = u_k u_kᵀ, ∂F/∂τ = −I
        inverse = np.linalg.inv(s - tau * self.eye)
        inverse = 0.5 * (inverse + inverse.T)
        tu = inverse @ u
        gradient[:m] -= np.einsum("ae,ae->e", u, tu)
        gradient[m] += float(np.trace(inverse))
        hessian[:m, :m] += (u.T @ tu) ** 2
        hessian[:m, m] -= np.einsum("ae,ae->e", tu, tu)
        hessian[m, m] += float(np.sum(inverse * inverse))
        hessian[m, :m] = hessian[:m, m]
        return gradient, hessian


def solve_rates(
    b: np.ndarray,
    start: np.ndarray,
    *,
    rtol: float = 1e-9,
    mu: float = 20.0,
    max_centering: int = 100,
    max_newton: int = 2000,
) -> RateSolution:
    """(★) from a strictly feasible start: ``start`` are rates with χ₁χ₂ ≤ ½ (e.g. uniform).

    The start is doubled (then max_e R_e = λ₂(Λ)/4 at most, strictly inside) and τ set to the
    geometric mean of max_e R_e and λ₂(Λ). Stops when the barrier's gap bound ν/t, with
    ν = 2m + n − 1, is below ``rtol`` times the objective. Raises RuntimeError if Newton's
    method makes no progress.
    """
    barrier = _RateBarrier(b)
    m = barrier.m
    rates = 2.0 * np.asarray(start, dtype=np.float64)
    lambda2 = float(np.linalg.eigvalsh(barrier._s_matrix(rates))[0])
    tau = math.sqrt(float(barrier.resistances(rates).max()) * lambda2)
    nu = 2.0 * m + b.shape[0] - 1.0
    t = nu / rates.sum()
    steps = 0
    while True:
        for _ in range(max_centering):
            gradient, hessian = barrier.derivatives(rates, tau, t)
            scale = 1.0 / np.sqrt(np.maximum(np.diag(hessian), np.finfo(float).tiny))
            try:
                factor = sla.cho_factor(hessian * scale[:, None] * scale[None, :], check_finite=False)
                step = -scale * sla.cho_solve(factor, scale * gradient, check_finite=False)
            except np.linalg.LinAlgError:
                step = -np.linalg.lstsq(hessian, gradient, rcond=None)[0]
            decrement = float(-gradient @ step)
            if decrement / 2.0 <= 1e-9:
                break
            current = barrier.value(rates, tau, t)
            alpha = 1.0
            while alpha > 1e-12:
                trial = barrier.value(rates + alpha * step[:m], tau + alpha * step[m], t)
                if trial <= current - 0.25 * alpha * decrement:
                    break
                alpha *= 0.5
            else:
                break  # float64 cannot resolve further progress at this t
            rates, tau = rates + alpha * step[:m], tau + alpha * step[m]
            steps += 1
            if steps > max_newton:
                raise RuntimeError(f"rate barrier method: no convergence in {max_newton} Newton steps")
        gap = nu / t
        if gap <= rtol * rates.sum():
            break
        t *= mu
    logger.debug(
        "rate barrier: total %.9g, tau %.6g, gap %.2g, %d Newton steps", rates.sum(), tau, gap, steps
    )
    return RateSolution(rates, float(tau), float(gap), steps)
