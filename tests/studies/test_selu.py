"""Study 15 (SELU): the constants, the moment map's fixed point and alpha dropout, from first principles.

Everything here is computed by numerical integration against the standard normal density
(``scipy.integrate.quad``), independently of the closed forms in ``flsim.studies.selu``:

* λ and α are re-derived as the root of E[selu(z)] = 0, E[selu(z)²] = 1 for z ~ N(0, 1);
* the moment map (μ, ν) ↦ (E selu(z), Var selu(z)), z ~ N(μω, ντ), has (0, 1) as a fixed
  point for ω = 0, τ = 1, with a Jacobian of spectral radius and norm below 1, and its
  iterates converge there; a wrong α moves the fixed point and is caught;
* alpha dropout's affine correction keeps mean 0 and variance 1.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy import integrate, optimize

import flsim
from flsim.config.errors import ConfigErrors
from flsim.studies.selu import (
    SELU,
    SELU_ALPHA,
    SELU_LAMBDA,
    AlphaDropout,
    deep_mlp,
    layer_statistics,
    selu_moments,
)

SCENARIO = "scenarios/studies/selu.yaml"


def _selu(z: float, alpha: float, scale: float) -> float:
    return scale * (z if z > 0 else alpha * math.expm1(z))


def _gaussian_expectation(f, mean: float, var: float) -> float:
    """E[f(z)] for z ~ N(mean, var), integrating on both sides of the kink at 0."""
    sd = math.sqrt(var)

    def density(z: float) -> float:
        return math.exp(-((z - mean) ** 2) / (2 * var)) / math.sqrt(2 * math.pi * var)

    lo, hi = mean - 40 * sd, mean + 40 * sd
    parts = [(lo, min(0.0, hi)), (max(0.0, lo), hi)]
    return sum(
        integrate.quad(lambda z: f(z) * density(z), a, b, epsabs=1e-14, epsrel=1e-13)[0]
        for a, b in parts
        if a < b
    )


def _integrated_map(mu: float, nu: float, omega: float, tau: float, alpha: float = SELU_ALPHA):
    """The paper's moment map g(μ, ν) by quadrature."""
    m, s2 = mu * omega, nu * tau
    first = _gaussian_expectation(lambda z: _selu(z, alpha, SELU_LAMBDA), m, s2)
    second = _gaussian_expectation(lambda z: _selu(z, alpha, SELU_LAMBDA) ** 2, m, s2)
    return np.array([first, second - first**2])


def test_lambda_and_alpha_solve_the_fixed_point_equations():
    def equations(params):
        alpha, scale = params
        mean = _gaussian_expectation(lambda z: _selu(z, alpha, scale), 0.0, 1.0)
        second = _gaussian_expectation(lambda z: _selu(z, alpha, scale) ** 2, 0.0, 1.0)
        return [mean, second - 1.0]

    alpha, scale = optimize.fsolve(equations, x0=[1.5, 1.0], xtol=1e-12)
    assert alpha == pytest.approx(SELU_ALPHA, rel=1e-10)
    assert scale == pytest.approx(SELU_LAMBDA, rel=1e-10)


@pytest.mark.parametrize(("mean", "var"), [(0.0, 1.0), (0.3, 0.7), (-0.5, 2.0), (1.2, 0.2)])
def test_closed_form_moments_match_quadrature(mean, var):
    expected = _integrated_map(mean, var, 1.0, 1.0)
    np.testing.assert_allclose(selu_moments(mean, var), expected, rtol=1e-10, atol=1e-12)


def test_zero_one_is_a_fixed_point_of_the_integrated_map():
    np.testing.assert_allclose(_integrated_map(0.0, 1.0, 0.0, 1.0), [0.0, 1.0], atol=1e-11)


@pytest.mark.parametrize("alpha", [1.0, 1.67, 1.6733, SELU_ALPHA * (1 + 1e-6)])
def test_a_wrong_alpha_moves_the_fixed_point(alpha):
    """ELU's α = 1, and α rounded to 3 or 5 digits or off by 1 ppm, all break (0, 1)."""
    residual = np.abs(_integrated_map(0.0, 1.0, 0.0, 1.0, alpha) - [0.0, 1.0]).max()
    assert residual > 1e-7


def _jacobian(mu: float, nu: float, omega: float, tau: float) -> np.ndarray:
    h = 1e-5
    cols = [
        (_integrated_map(mu + dm, nu + dn, omega, tau) - _integrated_map(mu - dm, nu - dn, omega, tau))
        / (2 * h)
        for dm, dn in ((h, 0.0), (0.0, h))
    ]
    return np.stack(cols, axis=1)


def test_the_fixed_point_is_attracting():
    jacobian = _jacobian(0.0, 1.0, 0.0, 1.0)
    assert max(abs(np.linalg.eigvals(jacobian))) < 1.0
    assert np.linalg.norm(jacobian, 2) < 1.0  # the paper's statement: spectral norm < 1
    for start in ((0.5, 1.8), (-0.4, 0.5)):
        point = np.array(start)
        for _ in range(80):
            point = _integrated_map(*point, 0.0, 1.0)
        np.testing.assert_allclose(point, [0.0, 1.0], atol=1e-7)


def test_alpha_dropout_keeps_zero_mean_and_unit_variance():
    generator = torch.Generator().manual_seed(0)
    for rate in (0.05, 0.1, 0.3):
        layer = AlphaDropout(rate, generator)
        keep = 1 - rate
        assert layer.saturation == pytest.approx(-SELU_LAMBDA * SELU_ALPHA, rel=1e-15)
        assert layer.saturation == pytest.approx(_selu(-60.0, SELU_ALPHA, SELU_LAMBDA), rel=1e-15)
        # exact moments of a·(x or α′) + b when E x = 0, E x² = 1
        mean = layer.a * (1 - keep) * layer.saturation + layer.b
        var = layer.a**2 * (keep + (1 - keep) * layer.saturation**2 - ((1 - keep) * layer.saturation) ** 2)
        assert mean == pytest.approx(0.0, abs=1e-14) and var == pytest.approx(1.0, rel=1e-13)
    z = torch.randn(1_000_000, generator=generator, dtype=torch.float64)
    out = AlphaDropout(0.1, generator)(SELU()(z))
    assert abs(float(out.mean())) < 5e-3 and abs(float(out.var()) - 1) < 5e-3


def test_deep_selu_stays_normalized_while_relu_lecun_collapses():
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(512, 64, generator=generator)
    stats = {
        kind: layer_statistics(deep_mlp(kind, (64, 64, 32, 10), 0.05, torch.Generator().manual_seed(i)), x)
        for i, kind in enumerate(("selu", "relu_lecun", "relu"))
    }
    mean, var = stats["selu"][-1]
    assert abs(mean) < 0.1 and 0.8 <= var <= 1.2
    assert stats["relu_lecun"][-1][1] < 1e-3
    assert stats["relu"][-1][1] > 1e-3  # He init keeps the scale
    he_selu = deep_mlp("selu", (64, 64, 32, 10), 0.05, torch.Generator().manual_seed(0))
    with torch.no_grad():
        for module in he_selu:
            if isinstance(module, torch.nn.Linear):
                module.weight.mul_(math.sqrt(2.0))  # He instead of LeCun: τ = 2, off the fixed point
    assert layer_statistics(he_selu, x)[-1][1] > 1.2


def test_study_runs_in_the_harness_at_reduced_size(tmp_path):
    overrides = ["study.datasets=[wine]", "study.epochs=2", "study.depth=4"]
    result = flsim.run(SCENARIO, overrides, run_dir=tmp_path / "run")
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["criteria"]["fixed_point_residual"]["pass"] is True
    assert summary["criteria"]["wine_selu_minus_relu"]["gate"] is False
    assert summary["results"]["constants"]["alpha_prime"] == pytest.approx(-SELU_LAMBDA * SELU_ALPHA)
    frame = flsim.load_runs(result.run_dir)
    assert len(frame) == 3 * 4 + 4 * 2  # init rows (3 nets × 4 layers) + accuracy rows (4 models × 2 epochs)


@pytest.mark.parametrize(
    ("key", "value"), [("depth", 0), ("dropout", 1.0), ("datasets", "[iris]"), ("lrr", 0.1)]
)
def test_a_malformed_study_parameter_names_its_key(key, value):
    with pytest.raises(ConfigErrors, match=rf"study\.{key}"):
        flsim.run(SCENARIO, [f"study.{key}={value}"])
