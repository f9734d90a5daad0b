"""Closed-form spectra the solver is checked against, and the FEM/FD convergence sweeps.

* Hydrogen-like ion, V = −Z/r: E_nl = −Z²/(2n²) for every l < n (degenerate in l).
* Isotropic 3D harmonic oscillator, V = ω²r²/2: E = ω(2n_r + l + 3/2), n_r = 0, 1, …

The Coulomb problem is scale invariant (r → r/Z maps charge Z onto charge 1 with energies ×Z²),
so an absolute error target is hardest for the largest Z; the domain must still hold the most
diffuse state, n = n_max, whose tail decays like exp(−Zr/n): r_max(Z) = max(r_max, extent/Z).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flsim.studies.featom.fd import fd_hydrogen_error
from flsim.studies.featom.fem import RadialHamiltonian, fem_basis


def hydrogen_exact(charge: float, ell: int, n_max: int) -> np.ndarray:
    """−Z²/(2n²) for n = l+1 … n_max."""
    return -(charge**2) / (2.0 * np.arange(ell + 1, n_max + 1) ** 2)


def oscillator_exact(omega: float, ell: int, count: int) -> np.ndarray:
    """ω(2n_r + l + 3/2) for n_r = 0 … count−1."""
    return omega * (2.0 * np.arange(count) + ell + 1.5)


@dataclass(frozen=True)
class Mesh:
    """One FE discretisation: exponential mesh on [0, r_max] of ``n_elements`` order-``order`` elements."""

    r_max: float
    ratio: float
    n_elements: int
    order: int


def fem_spectrum_error(mesh: Mesh, potential, exact, n_max: int) -> tuple[float, int]:
    """max |E − E_exact| over l < n_max and the n_max − l lowest states of each l; and the DOFs.

    ``potential(r)`` is the radial potential, ``exact(l, count)`` the exact energies.
    """
    fem = fem_basis(mesh.r_max, mesh.ratio, mesh.n_elements, mesh.order)
    hamiltonian = RadialHamiltonian(fem)
    matrix = fem.mass(potential(fem.r))
    error = 0.0
    for ell in range(n_max):
        energies, _ = hamiltonian.solve(matrix, ell, n_max - ell)
        error = max(error, float(np.max(np.abs(energies - exact(ell, n_max - ell)))))
    return error, fem.dofs


def hydrogen_error(charge: float, mesh: Mesh, n_max: int) -> tuple[float, int]:
    """The largest eigenvalue error of the hydrogen-like ion over all states with n ≤ n_max."""
    return fem_spectrum_error(
        mesh, lambda r: -charge / r, lambda ell, count: hydrogen_exact(charge, ell, ell + count), n_max
    )


def oscillator_error(omega: float, mesh: Mesh, n_max: int) -> tuple[float, int]:
    """The largest eigenvalue error of the 3D oscillator over l < n_max, n_r < n_max − l."""
    return fem_spectrum_error(
        mesh, lambda r: 0.5 * omega**2 * r**2, lambda ell, count: oscillator_exact(omega, ell, count), n_max
    )


def fd_sweep(
    charge: float, r_max: float, ratio: float, n_max: int, intervals: list[int], stop_below: float
) -> list[tuple[int, float]]:
    """(DOFs, error) of the FD baseline for increasing grid sizes, stopping once below ``stop_below``."""
    rows = []
    for count in intervals:
        error = fd_hydrogen_error(charge, r_max, ratio, count, n_max)
        rows.append((count - 1, error))
        if error < stop_below:
            break
    return rows


def dofs_for_error(points: list[tuple[int, float]], target: float) -> float:
    """DOFs at which the error first reaches ``target``, interpolated log-log between sweep points.

    ``points`` are (DOFs, error) in increasing DOFs; ``inf`` when the target is never reached.
    Interpolating (rather than taking the first sweep point below target) removes the bias of
    a coarse sweep, for both methods alike.
    """
    previous = None
    for dofs, error in points:
        if error <= target:
            if previous is None or previous[1] <= target:
                return float(dofs)
            (d0, e0), (d1, e1) = previous, (dofs, error)
            slope = (np.log(d1) - np.log(d0)) / (np.log(e1) - np.log(e0))
            return float(np.exp(np.log(d0) + slope * (np.log(target) - np.log(e0))))
        previous = (dofs, error)
    return float("inf")
