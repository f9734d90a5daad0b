"""Kohn–Sham LDA for closed-shell atoms on the high-order FE basis (Čertík et al., Sec. 2–3).

One SCF step, everything on the Gauss–Legendre points of the Schrödinger basis:

1. For each l, solve H(l) c = ε S c with the effective potential V_in − Z/r and keep the
   occupied orbitals P_nl; the density is n(r) = Σ f_nl P_nl² / (4π r²).
2. Hartree: solve the radial Poisson equation −(1/r²)(r² V_H')' = 4π n in the weak form
   ∫ r² V_H' v' dr = ∫ 4π n r² v dr, on the same elements with order 2p (``featom`` does the
   same: n is a degree-2p polynomial per element there), with the natural condition at r = 0
   and V_H(r_max) = N/r_max, the potential of the N enclosed electrons.
3. XC: Slater exchange plus VWN correlation (below); V_out = V_H + V_xc.
4. Mix: Pulay/Anderson mixing of the potential residual V_out − V_in, as ``featom`` does
   (``src/mixings.f90``), with plain linear mixing for the first steps.

Total energy (``featom`` ``schroed_glob.f90`` ``total_energy``; the variational form of
Harris and Foulkes that is quadratic in the density error):

    E = Σ f ε − ∫ V_in n dV + ½ ∫ V_H n dV − Z ∫ n/r dV + ∫ ε_xc n dV,

where V_in is the input effective (electronic) potential whose eigenvalues ε were used, and n,
V_H, ε_xc come from the output orbitals. At self-consistency it equals the Kohn–Sham energy.

Exchange–correlation, in hartree (paramagnetic, i.e. spin-unpolarised LDA as in NIST SRD 141):

* Slater exchange ε_x = −(3/4π)(3π² n)^{1/3}, V_x = (4/3) ε_x.
* VWN correlation (Vosko, Wilk & Nusair, Can. J. Phys. 58, 1200 (1980), the paramagnetic fit to
  Ceperley–Alder, "VWN5"), with x = √r_s, X(x) = x² + bx + c, Q = √(4c − b²):

      ε_c = A [ ln(x²/X) + (2b/Q) atan(Q/(2x+b))
               − (b x₀/X(x₀)) ( ln((x−x₀)²/X) + (2(b+2x₀)/Q) atan(Q/(2x+b)) ) ],
      V_c = ε_c − (x/6) dε_c/dx = ε_c − (A/3) (c(x−x₀) − b x₀ x) / ((x−x₀) X),

  A = 0.0310907, b = 3.72744, c = 12.9352, x₀ = −0.10498. ``featom``'s ``src/xc.f90`` writes
  the same with A = 0.0621814 and a prefactor A/2 (the rydberg-to-hartree factor); dftatom's
  ``src/dft_data.f90`` / NIST use the same constants.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.linalg

from flsim.studies.featom.fem import RadialFEM, RadialHamiltonian, exponential_mesh

ORBITAL_LETTERS = "spdf"

#: Closed-subshell ground-state configurations (NIST SRD 141 uses the same ones), (n, l, f).
_CORE_NE = ((1, 0, 2.0), (2, 0, 2.0), (2, 1, 6.0))
_CORE_AR = (*_CORE_NE, (3, 0, 2.0), (3, 1, 6.0))
CONFIGURATIONS: dict[str, tuple[int, tuple[tuple[int, int, float], ...]]] = {
    "He": (2, ((1, 0, 2.0),)),
    "Be": (4, ((1, 0, 2.0), (2, 0, 2.0))),
    "Ne": (10, _CORE_NE),
    "Mg": (12, (*_CORE_NE, (3, 0, 2.0))),
    "Ar": (18, _CORE_AR),
    "Ca": (20, (*_CORE_AR, (4, 0, 2.0))),
    "Zn": (30, (*_CORE_AR, (3, 2, 10.0), (4, 0, 2.0))),
    "Kr": (36, (*_CORE_AR, (3, 2, 10.0), (4, 0, 2.0), (4, 1, 6.0))),
}


@dataclass(frozen=True)
class VWNParameters:
    """The paramagnetic VWN correlation fit (defaults: VWN5 in hartree, see the module docstring)."""

    A: float = 0.0310907
    b: float = 3.72744
    c: float = 12.9352
    x0: float = -0.10498


def xc_lda(density: np.ndarray, vwn: VWNParameters = VWNParameters()) -> tuple[np.ndarray, np.ndarray]:
    """(ε_xc, V_xc) per point for the spin-unpolarised density n > 0 (zero where n = 0)."""
    n = np.maximum(density, 1e-300)
    ex = -3 / (4 * np.pi) * np.cbrt(3 * np.pi**2 * n)
    A, b, c, x0 = vwn.A, vwn.b, vwn.c, vwn.x0
    x = np.sqrt(np.cbrt(3 / (4 * np.pi * n)))
    X, X0, Q = x**2 + b * x + c, x0**2 + b * x0 + c, np.sqrt(4 * c - b**2)
    angle = np.arctan(Q / (2 * x + b))
    ec = A * (
        np.log(x**2 / X)
        + 2 * b / Q * angle
        - b * x0 / X0 * (np.log((x - x0) ** 2 / X) + 2 * (b + 2 * x0) / Q * angle)
    )
    vc = ec - A / 3 * (c * (x - x0) - b * x0 * x) / ((x - x0) * X)
    occupied = density > 0
    return np.where(occupied, ex + ec, 0.0), np.where(occupied, 4 / 3 * ex + vc, 0.0)


@dataclass(frozen=True)
class AtomSettings:
    """Discretisation and SCF settings for one LDA atom."""

    order: int = 16
    n_elements: int = 6
    r_max: float = 50.0
    ratio: float = 200.0
    tolerance: float = 1e-10  # on |ΔE_tot| and max |Δε| between successive SCF steps
    max_iterations: int = 200
    mixing: float = 0.5
    history: int = 5


@dataclass
class AtomResult:
    symbol: str
    total_energy: float
    eigenvalues: dict[str, float]
    parts: dict[str, float]
    iterations: int
    converged: bool
    dofs: int


@dataclass
class _Discretisation:
    """The Schrödinger basis (order p) and the Poisson basis (order 2p) on one mesh."""

    settings: AtomSettings
    fem: RadialFEM = field(init=False)
    poisson: RadialFEM = field(init=False)

    def __post_init__(self) -> None:
        s = self.settings
        mesh = exponential_mesh(s.r_max, s.ratio, s.n_elements)
        n_quad = 2 * s.order + 2
        self.fem = RadialFEM(mesh, s.order, n_quad)
        self.poisson = RadialFEM(mesh, 2 * s.order, n_quad, dirichlet_left=False)
        self.hamiltonian = RadialHamiltonian(self.fem)
        self._poisson_factor = scipy.linalg.cho_factor(self.poisson.stiffness(self.poisson.r**2))

    def hartree(self, density: np.ndarray) -> np.ndarray:
        """V_H at the quadrature points: weak radial Poisson, V_H(r_max) = N/r_max."""
        r = self.poisson.r
        rhs = self.poisson.load(4 * np.pi * density * r**2)
        homogeneous = self.poisson.at_quadrature(scipy.linalg.cho_solve(self._poisson_factor, rhs))
        electrons = self.poisson.integrate(4 * np.pi * density * r**2)
        return homogeneous + electrons / self.settings.r_max


def _occupied_states(
    disc: _Discretisation, configuration, v_electronic: np.ndarray, charge: int
) -> tuple[dict[str, float], np.ndarray]:
    """Eigenvalues by orbital label and the density, for the potential V_in − Z/r."""
    fem = disc.fem
    potential = fem.mass(v_electronic - charge / fem.r)
    density = np.zeros_like(fem.r)
    eigenvalues: dict[str, float] = {}
    for ell in sorted({ell for _, ell, _ in configuration}):
        shells = sorted((n, f) for n, ll, f in configuration if ll == ell)
        energies, vectors = disc.hamiltonian.solve(potential, ell, shells[-1][0] - ell)
        for n, f in shells:
            eigenvalues[f"{n}{ORBITAL_LETTERS[ell]}"] = float(energies[n - ell - 1])
            orbital = fem.at_quadrature(vectors[:, n - ell - 1])
            density += f * orbital**2 / (4 * np.pi * fem.r**2)
    return eigenvalues, density


def _energy_parts(disc, configuration, eigenvalues, v_in, density, v_h, exc, charge) -> dict[str, float]:
    fem = disc.fem
    shell = 4 * np.pi * fem.r**2
    band = sum(f * eigenvalues[f"{n}{ORBITAL_LETTERS[ell]}"] for n, ell, f in configuration)
    kinetic = band - fem.integrate((v_in - charge / fem.r) * density * shell)
    return {
        "kinetic": kinetic,
        "hartree": 0.5 * fem.integrate(v_h * density * shell),
        "nuclear": -charge * fem.integrate(density / fem.r * shell),
        "xc": fem.integrate(exc * density * shell),
    }


@dataclass
class _PulayMixer:
    """Anderson/Pulay mixing of a fixed-point map x → F(x) on quadrature-weighted vectors."""

    alpha: float
    history: int
    weights: np.ndarray
    _inputs: list[np.ndarray] = field(default_factory=list)
    _residuals: list[np.ndarray] = field(default_factory=list)

    def next(self, x_in: np.ndarray, x_out: np.ndarray) -> np.ndarray:
        residual = x_out - x_in
        self._inputs = [*self._inputs, x_in][-(self.history + 1) :]
        self._residuals = [*self._residuals, residual][-(self.history + 1) :]
        if len(self._inputs) < 2:
            return x_in + self.alpha * residual
        dx = np.stack([b - a for a, b in zip(self._inputs[:-1], self._inputs[1:], strict=True)], axis=1)
        df = np.stack([b - a for a, b in zip(self._residuals[:-1], self._residuals[1:], strict=True)], axis=1)
        w = np.sqrt(self.weights)[:, None]
        gamma = np.linalg.lstsq(w * df, w[:, 0] * residual, rcond=None)[0]
        return x_in + self.alpha * residual - (dx + self.alpha * df) @ gamma


def solve_atom(
    symbol: str, settings: AtomSettings = AtomSettings(), vwn: VWNParameters = VWNParameters()
) -> AtomResult:
    """Self-consistent LDA ground state of a closed-shell atom from ``CONFIGURATIONS``."""
    charge, configuration = CONFIGURATIONS[symbol]
    disc = _Discretisation(settings)
    shape = disc.fem.r.shape
    mixer = _PulayMixer(settings.mixing, settings.history, disc.fem.weights.ravel())
    v_in = np.zeros(shape)  # start from the bare nucleus
    previous: tuple[float, dict[str, float]] | None = None
    for iteration in range(1, settings.max_iterations + 1):
        eigenvalues, density = _occupied_states(disc, configuration, v_in, charge)
        v_h = disc.hartree(density)
        exc, vxc = xc_lda(density, vwn)
        parts = _energy_parts(disc, configuration, eigenvalues, v_in, density, v_h, exc, charge)
        energy = sum(parts.values())
        if previous is not None and _converged(previous, energy, eigenvalues, settings.tolerance):
            return AtomResult(symbol, energy, eigenvalues, parts, iteration, True, disc.fem.dofs)
        previous = (energy, eigenvalues)
        v_in = mixer.next(v_in.ravel(), (v_h + vxc).ravel()).reshape(shape)
    return AtomResult(symbol, energy, eigenvalues, parts, settings.max_iterations, False, disc.fem.dofs)


def _converged(previous, energy: float, eigenvalues: dict[str, float], tolerance: float) -> bool:
    old_energy, old_eigenvalues = previous
    change = max(abs(eigenvalues[k] - old_eigenvalues[k]) for k in eigenvalues)
    return abs(energy - old_energy) < tolerance and change < tolerance
