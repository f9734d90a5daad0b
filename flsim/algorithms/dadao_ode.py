"""The exact inter-event flow of DADAO, expm(M Δt), from a factorisation computed once (A3).

Reorder the state as (y, ỹ | x, x̃, z, z̃); M is then block upper-triangular:

    M = [[A, B],
         [0, C]]      A = [[-α, α], [-θ, 0]] (y-block),  C = diag(A_x, A_z) (x- and z-blocks).

A has complex eigenvalues (α < 4θ always holds here) and C real ones, both diagonalisable
with disjoint spectra. With P solving the Sylvester equation A P − P C = −B,

    expm(M t) = [[e^{At}, P e^{Ct} − e^{At} P],
                 [0,      e^{Ct}            ]].

Writing e^{At} = Σ_k e^{a_k t} R_k and e^{Ct} = Σ_j e^{c_j t} Q_j (spectral projectors), the
flow is a fixed linear combination of six constant 6×6 matrices,

    expm(M t) = Re Σ_m e^{λ_m t} G_m,   λ = (a_1, a_2, c_1, …, c_4),

so one event costs one ``exp`` of a 6-vector and one (12 × 36) product: no ``expm`` from
scratch, no per-event block assembly or permutation (the G_m are stored in the final
(x, x̃, y, ỹ, z, z̃) order).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import solve_sylvester

# Row order of the state: (x, x̃, y, ỹ, z, z̃), as in docs/algorithms.md (A3).
X, XT, Y, YT, Z, ZT = range(6)
_REORDER = [Y, YT, X, XT, Z, ZT]


@dataclass(frozen=True)
class DadaoConstants:
    """All constants of (A3)–(A5) from L, μ and χ₁(Λ), as in the official code."""

    nu: float
    alpha: float
    alpha_tilde: float
    eta: float
    eta_tilde: float
    theta: float
    gamma: float
    gamma_tilde: float
    delta: float
    delta_tilde: float
    beta: float
    beta_tilde: float

    @classmethod
    def from_problem(cls, smoothness: float, strong_convexity: float, chi1: float) -> DadaoConstants:
        nu = strong_convexity / 2
        ratio = np.sqrt(nu / smoothness)
        return cls(
            nu=nu,
            alpha=ratio / 4,
            alpha_tilde=ratio / 8,
            eta=ratio / 8,
            eta_tilde=ratio / 8,
            theta=0.5 / ratio,
            gamma=1 / (4 * smoothness),
            gamma_tilde=1 / (4 * np.sqrt(smoothness * nu)),
            delta=ratio / 4,
            delta_tilde=1.0,
            beta=0.5,
            beta_tilde=2 * chi1 / ratio,
        )

    def ode_matrix(self) -> np.ndarray:
        """M of (A3), rows and columns in the order (x, x̃, y, ỹ, z, z̃)."""
        m = np.zeros((6, 6))
        m[X, X], m[X, XT] = -self.eta, self.eta
        m[XT, X], m[XT, XT] = self.eta_tilde, -self.eta_tilde
        m[Y, Y], m[Y, YT] = -self.alpha, self.alpha
        m[YT, XT], m[YT, Y], m[YT, Z] = -self.theta * self.nu, -self.theta, -self.theta
        m[Z, Z], m[Z, ZT] = -self.alpha, self.alpha
        m[ZT, Z], m[ZT, ZT] = self.alpha_tilde, -self.alpha_tilde
        return m


class DadaoFlow:
    """expm(M t) for any t ≥ 0 as Re Σ_m e^{λ_m t} G_m (module docstring).

    ``rates`` (the λ_m, complex) and ``basis`` (real, (2·6) × 36: the real and negated
    imaginary parts of the G_m, interleaved) are public so that a hand-written reference
    loop (``benchmarks/event_throughput.py``) can do exactly the same arithmetic.
    """

    def __init__(self, matrix: np.ndarray) -> None:
        reordered = matrix[np.ix_(_REORDER, _REORDER)]
        a, b, c = reordered[:2, :2], reordered[:2, 2:], reordered[2:, 2:]
        if np.any(reordered[2:, :2]):
            raise ValueError("the DADAO ODE matrix must be block upper-triangular in (y | x, z) order")
        a_values, a_vectors = np.linalg.eig(a)
        c_values, c_vectors = np.linalg.eig(c)
        if np.abs(c_values.imag).max() > 0 or np.linalg.cond(c_vectors) > 1e8:
            raise ValueError("the x- and z-blocks of M must have real eigenvalues and be diagonalisable")
        c_vectors, c_values = c_vectors.real, c_values.real
        a_inverse, c_inverse = np.linalg.inv(a_vectors), np.linalg.inv(c_vectors)
        sylvester = solve_sylvester(a, -c, -b)
        inverse = np.empty(6, dtype=int)
        inverse[_REORDER] = np.arange(6)
        terms: list[np.ndarray] = []
        for k in range(2):  # e^{a_k t} [[R_k, −R_k P], [0, 0]]
            projector = np.outer(a_vectors[:, k], a_inverse[k])
            term = np.zeros((6, 6), dtype=complex)
            term[:2, :2] = projector
            term[:2, 2:] = -projector @ sylvester
            terms.append(term)
        for j in range(4):  # e^{c_j t} [[0, P Q_j], [0, Q_j]]
            projector = np.outer(c_vectors[:, j], c_inverse[j]).astype(complex)
            term = np.zeros((6, 6), dtype=complex)
            term[:2, 2:] = sylvester @ projector
            term[2:, 2:] = projector
            terms.append(term)
        stacked = np.stack([term[inverse][:, inverse] for term in terms])  # final (x, x̃, …) order
        self.rates = np.concatenate([a_values.astype(complex), c_values.astype(complex)])
        # Re(e^{λt} G) = Re(e^{λt}) Re G − Im(e^{λt}) Im G: coefficients are the (re, im) pairs.
        basis = np.empty((12, 36))
        basis[0::2] = stacked.real.reshape(6, 36)
        basis[1::2] = -stacked.imag.reshape(6, 36)
        self.basis = basis

    def __call__(self, t: float) -> np.ndarray:
        return (np.exp(self.rates * t).view(np.float64) @ self.basis).reshape(6, 6)
