"""The baseline: second-order finite differences for the radial Schrödinger equation.

On grid points r_0 = 0 < r_1 < … < r_N = r_max with spacings h_i = r_{i+1} − r_i, the
three-point formula for a non-uniform grid,

    P''(r_i) ≈ 2/(h_{i−1}+h_i) · [(P_{i+1}−P_i)/h_i − (P_i−P_{i−1})/h_{i−1}],

multiplied through by the "dual cell" width m_i = (h_{i−1}+h_i)/2 gives a symmetric
tridiagonal matrix T (the piecewise-linear stiffness) and the generalised problem
(½T + m·(l(l+1)/(2r²) + V)) P = E m P with diagonal m. Scaling by m^{−1/2} makes it a
standard symmetric tridiagonal eigenproblem, solved for the lowest eigenvalues only with
``scipy.linalg.eigh_tridiagonal``. P(0) = P(r_max) = 0 as in the FEM.

On a smoothly graded grid (the same exponential map as the FEM mesh, here with one grid
interval per "element") the scheme is second order in the grid index spacing; this is the
textbook method the paper's high-order elements are measured against.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from flsim.studies.featom.fem import exponential_mesh


def fd_eigenvalues(grid: np.ndarray, potential: np.ndarray, ell: int, count: int) -> np.ndarray:
    """Lowest ``count`` eigenvalues on ``grid`` (both ends Dirichlet); ``potential`` at the inner points."""
    h = np.diff(grid)
    r = grid[1:-1]
    dual = (h[:-1] + h[1:]) / 2
    diagonal = 0.5 * (1 / h[:-1] + 1 / h[1:]) / dual + ell * (ell + 1) / (2 * r**2) + potential
    off = -0.5 / h[1:-1] / np.sqrt(dual[:-1] * dual[1:])
    count = min(count, len(r))
    return scipy.linalg.eigh_tridiagonal(
        diagonal, off, eigvals_only=True, select="i", select_range=(0, count - 1), tol=1e-14
    )


def fd_hydrogen_error(charge: float, r_max: float, ratio: float, intervals: int, n_max: int) -> float:
    """Largest |E_nl − (−Z²/2n²)| over n ≤ n_max on an exponential grid of ``intervals`` steps."""
    grid = exponential_mesh(r_max, ratio, intervals)
    potential = -charge / grid[1:-1]
    error = 0.0
    for ell in range(n_max):
        energies = fd_eigenvalues(grid, potential, ell, n_max - ell)
        exact = -(charge**2) / (2.0 * np.arange(ell + 1, n_max + 1) ** 2)
        error = max(error, float(np.max(np.abs(energies - exact))))
    return error
