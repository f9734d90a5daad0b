"""Study 5 (featom): the FE radial solver against closed forms and NIST SRD 141.

Every expected value here is independent of the code under test: closed-form spectra computed
in this file, the NIST LDA table (Kotochigova et al., PRA 55, 191 (1997)) typed from the
publication, and the analytic Hartree potential of a hydrogenic 1s density.
"""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest

import flsim
from flsim.config.errors import ConfigError, ConfigErrors
from flsim.studies.featom import single_blas_thread
from flsim.studies.featom.fd import fd_hydrogen_error
from flsim.studies.featom.fem import (
    RadialFEM,
    RadialHamiltonian,
    differentiation_matrix,
    exponential_mesh,
    fem_basis,
    gauss_lobatto_nodes,
    lagrange_values,
)
from flsim.studies.featom.lda import AtomSettings, VWNParameters, solve_atom, xc_lda


@pytest.fixture(autouse=True)
def _one_blas_thread():
    with single_blas_thread():
        yield


def _lowest(potential, ell: int, count: int, r_max=50.0, ratio=200.0, elements=7, order=20):
    fem = fem_basis(r_max, ratio, elements, order)
    energies, _ = RadialHamiltonian(fem).solve(fem.mass(potential(fem.r)), ell, count)
    return energies


# --- the basis -----------------------------------------------------------------------------


def test_gauss_lobatto_nodes_and_lagrange_basis_are_exact_on_polynomials():
    order = 9
    nodes = gauss_lobatto_nodes(order)
    assert nodes[0] == -1 and nodes[-1] == 1 and np.all(np.diff(nodes) > 0)
    # the interior GLL nodes are the extrema of P_order: P_order'(x) = 0 there
    dp = np.polynomial.legendre.Legendre.basis(order).deriv()
    assert np.max(np.abs(dp(nodes[1:-1]))) < 1e-10
    assert np.allclose(lagrange_values(nodes, nodes), np.eye(order + 1), atol=1e-13)
    x = np.linspace(-1, 1, 17)
    poly = np.polynomial.Polynomial([0.3, -1.0, 0.5, 2.0, 0.0, -0.7, 0.1, 0.0, 0.2, -0.05])
    assert np.allclose(lagrange_values(nodes, x) @ poly(nodes), poly(x), atol=1e-12)
    derivative = lagrange_values(nodes, x) @ differentiation_matrix(nodes) @ poly(nodes)
    assert np.allclose(derivative, poly.deriv()(x), atol=1e-11)


def test_exponential_mesh_has_the_requested_ends_and_element_ratio():
    mesh = exponential_mesh(50.0, 200.0, 7)
    assert mesh[0] == 0 and mesh[-1] == pytest.approx(50.0)
    widths = np.diff(mesh)
    assert widths[-1] / widths[0] == pytest.approx(200.0)
    assert np.allclose(widths[1:] / widths[:-1], 200.0 ** (1 / 6))  # geometric growth
    assert np.allclose(exponential_mesh(3.0, 1.0, 3), [0, 1, 2, 3])


# --- closed-form spectra -------------------------------------------------------------------


def test_hydrogen_like_uranium_matches_featoms_reference_values():
    """Z = 92: E_1 = −4232, E_2 = −1058, E_3 = −470.2222… Ha (featom's test_coulomb_schroed)."""
    energies = _lowest(lambda r: -92 / r, 0, 3)
    assert np.abs(energies - [-4232.0, -1058.0, -470.2222222222222]).max() < 1e-8


@pytest.mark.parametrize("charge", [1, 3, 92])
def test_hydrogen_like_spectrum_to_1e8_for_all_states_up_to_n7(charge):
    r_max = max(50.0, 400.0 / charge)  # the n = 7 tail reaches ~ 2n²/Z bohr
    worst = 0.0
    for ell in range(7):
        energies = _lowest(lambda r: -charge / r, ell, 7 - ell, r_max=r_max)
        exact = [float(Fraction(-(charge**2), 2 * n * n)) for n in range(ell + 1, 8)]
        worst = max(worst, np.abs(energies - exact).max())
    assert worst < 1e-8


@pytest.mark.parametrize("omega", [1.0, 0.5])
def test_harmonic_oscillator_spectrum(omega):
    """V = ω²r²/2: E = ω(2n_r + l + 3/2), on a uniform mesh (ratio 1)."""
    for ell in range(4):
        energies = _lowest(lambda r: 0.5 * omega**2 * r**2, ell, 4, r_max=12 / np.sqrt(omega), ratio=1.0)
        exact = [omega * (2 * nr + ell + 1.5) for nr in range(4)]
        assert np.abs(energies - exact).max() < 1e-9


def test_error_falls_exponentially_in_p_and_quadratically_for_fd():
    def fem_error(order):
        energies = _lowest(lambda r: -1 / r, 0, 2, r_max=80.0, ratio=100.0, elements=4, order=order)
        return np.abs(energies - [-0.5, -0.125]).max()

    assert fem_error(12) <= 1e-3 * fem_error(4)
    # second order: doubling the grid quarters the error
    coarse, fine = (fd_hydrogen_error(1.0, 80.0, 100.0, n, 2) for n in (1000, 2000))
    assert coarse / fine == pytest.approx(4.0, rel=0.05)


# --- Kohn–Sham LDA ---------------------------------------------------------------------------


def test_hartree_potential_of_a_hydrogenic_density_is_exact():
    """n = e^{−2r}/π (one electron): V_H = 1/r − (1 + 1/r) e^{−2r}."""
    from flsim.studies.featom.lda import _Discretisation

    disc = _Discretisation(AtomSettings(order=12, n_elements=6, r_max=40.0, ratio=100.0))
    r = disc.fem.r
    v_h = disc.hartree(np.exp(-2 * r) / np.pi)
    assert np.abs(v_h - (1 / r - (1 + 1 / r) * np.exp(-2 * r))).max() < 1e-9


def test_xc_potential_is_the_density_derivative_of_the_xc_energy():
    n = np.logspace(-6, 4, 41)
    step = 1e-6 * n
    (e_plus, _), (e_minus, _) = xc_lda(n + step), xc_lda(n - step)
    numeric = ((n + step) * e_plus - (n - step) * e_minus) / (2 * step)
    _, v_xc = xc_lda(n)
    assert np.allclose(v_xc, numeric, rtol=1e-7)


def test_helium_and_beryllium_match_nist_lda_to_a_microhartree():
    he = solve_atom("He")
    assert he.converged
    assert abs(he.total_energy - (-2.834836)) < 1e-6
    assert abs(he.eigenvalues["1s"] - (-0.570425)) < 1e-6
    be = solve_atom("Be")
    assert abs(be.total_energy - (-14.447209)) < 1e-6
    assert abs(be.eigenvalues["1s"] - (-3.856411)) < 1e-6
    assert abs(be.eigenvalues["2s"] - (-0.205744)) < 1e-6
    assert sum(be.parts.values()) == pytest.approx(be.total_energy)


@pytest.mark.parametrize(
    "wrong",
    [
        VWNParameters(A=0.0621814),  # the rydberg-unit A (missing the factor ½)
        VWNParameters(x0=-0.409286),  # x₀ of the VWN RPA fit ("VWN3") instead of VWN5
        VWNParameters(b=3.72744 * 1.01),  # a 1% error in b
        VWNParameters(A=0.0),  # exchange only (no correlation)
    ],
)
def test_a_wrong_vwn_constant_breaks_the_helium_match(wrong):
    he = solve_atom("He", vwn=wrong)
    assert he.converged
    assert abs(he.total_energy - (-2.834836)) > 1e-5


# --- the study in the harness ----------------------------------------------------------------


def test_study_runs_and_reports_every_criterion(tmp_path):
    overrides = [
        "study.atoms=[He, Ne]",
        "study.hydrogen_charges=[92]",
        "study.mesh_ratios=[100.0]",
        "study.convergence_max_order=12",
    ]
    result = flsim.run("scenarios/studies/featom.yaml", overrides, run_dir=tmp_path / "run")
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["pass"] is True
    assert summary["results"]["total_energy"]["Ne"] == pytest.approx(-128.233481, abs=1e-6)
    assert summary["results"]["eigenvalues"]["Ne"]["2p"] == pytest.approx(-0.498034, abs=1e-6)
    assert {"lda_He_total_energy_error", "lda_Ne_eigenvalue_error"} <= set(summary["criteria"])
    assert summary["criteria"]["fd_over_fem_dofs_at_target"]["value"] >= 10


def test_an_unreachable_tolerance_fails_the_study(tmp_path):
    overrides = ["study.atoms=[He]", "study.hydrogen_charges=[1]", "study.nist_tolerance=1e-12"]
    result = flsim.run("scenarios/studies/featom.yaml", overrides, run_dir=tmp_path / "run")
    assert result.summary["pass"] is False


@pytest.mark.parametrize(
    ("study", "key"),
    [
        ({"atoms": ["He", "Xx"]}, "study.atoms"),  # unknown symbol
        ({"atoms": ["Li"]}, "study.atoms"),  # open shell
        ({"atoms": []}, "study.atoms"),
        ({"lda_order": 0}, "study.lda_order"),
        ({"hydrogen_charges": [93]}, "study.hydrogen_charges"),
        ({"mesh_ratios": [0.5]}, "study.mesh_ratios"),
        ({"lda_ratio": float("nan")}, "study.lda_ratio"),
    ],
)
def test_a_malformed_study_parameter_names_its_key(study, key):
    with pytest.raises((ConfigError, ConfigErrors), match=key.replace(".", r"\.")):
        flsim.run({"kind": "study", "study": {"name": "featom", **study}})


def test_the_natural_condition_at_the_origin_keeps_its_node():
    """Natural condition at r = 0 keeps one more DOF than Dirichlet (the Poisson basis)."""
    mesh = exponential_mesh(10.0, 10.0, 3)
    assert RadialFEM(mesh, 4, 10, dirichlet_left=False).dofs == RadialFEM(mesh, 4, 10).dofs + 1
