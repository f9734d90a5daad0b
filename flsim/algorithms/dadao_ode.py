"""The exact inter-event flow of DADAO, expm(M Δt), from a factorisation computed once (A3).

M is defective (a Jordan block at eigenvalue 0 couples the x- and z-blocks through y), so a
plain eigendecomposition of M is useless. Reorder the state as (y, ỹ | x, x̃, z, z̃):

    M = [[A, B],
         [0, C]]      A = [[-α, α], [-θ, 0]] (y-block),  C = diag(A_x, A_z) (x- and z-blocks).

A has complex eigenvalues (α < 4θ always holds here) and C has real ones, so both are
diagonalisable with disjoint spectra. With P solving the Sylvester equation A P − P C = −B,

    expm(M t) = [[e^{At}, P e^{Ct} − e^{At} P],
                 [0,      e^{Ct}            ]],

which costs a few 2×2 and 4×4 products per event: no ``expm`` from scratch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import solve_sylvester

# Row order of the state: (x, x̃, y, ỹ, z, z̃), as in ALGORITHMS.md (A3).
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
    """expm(M t) for any t ≥ 0, from the block factorisation in the module docstring."""

    def __init__(self, matrix: np.ndarray) -> None:
        reordered = matrix[np.ix_(_REORDER, _REORDER)]
        a, b, c = reordered[:2, :2], reordered[:2, 2:], reordered[2:, 2:]
        if np.any(reordered[2:, :2]):
            raise ValueError("the DADAO ODE matrix must be block upper-triangular in (y | x, z) order")
        self._a_values, a_vectors = np.linalg.eig(a)
        self._a_vectors, self._a_inverse = a_vectors, np.linalg.inv(a_vectors)
        self._c_values, c_vectors = np.linalg.eig(c)
        self._c_vectors, self._c_inverse = c_vectors.real, np.linalg.inv(c_vectors.real)
        self._sylvester = solve_sylvester(a, -c, -b)
        inverse = np.empty(6, dtype=int)
        inverse[_REORDER] = np.arange(6)
        self._restore = inverse

    def __call__(self, t: float) -> np.ndarray:
        exp_a = ((self._a_vectors * np.exp(self._a_values * t)) @ self._a_inverse).real
        exp_c = (self._c_vectors * np.exp(self._c_values.real * t)) @ self._c_inverse
        out = np.zeros((6, 6))
        out[:2, :2] = exp_a
        out[:2, 2:] = self._sylvester @ exp_c - exp_a @ self._sylvester
        out[2:, 2:] = exp_c
        return out[self._restore][:, self._restore]
