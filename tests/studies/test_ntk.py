"""Study 17 (NTK): the analytic ReLU NTK and the per-layer empirical NTK against independent oracles.

* the ReLU layer transform against a Monte Carlo of its defining Gaussian expectations;
* the per-layer δ·a formula against a Jacobian built by torch autograd (exact agreement);
* the exact diagonal Θ(x, x) = L + 1 for ‖x‖² = d₀;
* the analytic kernel against the average empirical NTK of wide networks, where two wrong
  variants (no K̇ factor, c_σ = 1 instead of 2) must fail the same check;
* the kernel prediction against GD on a linear model, for which it is exact.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import flsim
from flsim.config.errors import ConfigErrors
from flsim.studies.ntk import (
    analytic_ntk,
    discrete_kernel_prediction,
    empirical_ntk,
    init_weights,
    kernel_prediction,
    relative_frobenius_error,
    relu_layer,
    sphere_points,
)


def _points(count: int = 16, dim: int = 10, seed: int = 3) -> np.ndarray:
    return sphere_points(np.random.default_rng(seed), count, dim)


def _variant_ntk(x: np.ndarray, depth: int, *, with_derivative: bool, c_sigma: float) -> np.ndarray:
    """The recursion written out independently, with switches for the two wrong variants."""
    d0 = x.shape[1]
    nngp = x @ x.T / d0
    ntk = nngp.copy()
    for _ in range(depth):
        var = np.diag(nngp).copy()
        scale = np.sqrt(np.outer(var, var))
        theta = np.arccos(np.clip(nngp / scale, -1, 1))
        nngp = c_sigma * scale * (np.sin(theta) + (np.pi - theta) * np.cos(theta)) / (2 * np.pi)
        derivative = c_sigma * (np.pi - theta) / (2 * np.pi)
        ntk = (ntk * derivative if with_derivative else ntk) + nngp
    return ntk


def test_relu_layer_matches_a_monte_carlo_of_its_gaussian_expectations():
    rng = np.random.default_rng(11)
    samples = 400_000
    for k_xy, k_xx, k_yy in [(0.3, 1.0, 1.0), (-0.6, 1.0, 1.5), (0.9, 2.0, 0.5)]:
        cov = np.array([[k_xx, k_xy], [k_xy, k_yy]])
        u, v = (rng.standard_normal((samples, 2)) @ np.linalg.cholesky(cov).T).T
        nngp_mc = 2 * np.maximum(u, 0) * np.maximum(v, 0)
        deriv_mc = 2 * ((u > 0) & (v > 0))
        nngp, deriv = relu_layer(np.array([[k_xy]]), np.array([k_xx]), np.array([k_yy]))
        assert abs(nngp[0, 0] - nngp_mc.mean()) < 5 * nngp_mc.std() / math.sqrt(samples)
        assert abs(deriv[0, 0] - deriv_mc.mean()) < 5 * deriv_mc.std() / math.sqrt(samples)


def _autograd_ntk(weights: list[np.ndarray], x: np.ndarray) -> np.ndarray:
    """Gram matrix of per-point parameter gradients, each from torch autograd (the Jacobian route)."""
    params = [torch.tensor(w, requires_grad=True) for w in weights]
    width, d0 = weights[0].shape
    rows = []
    for point in torch.tensor(x):
        h = point / math.sqrt(d0) @ params[0].T
        for w in params[1:]:
            h = math.sqrt(2.0 / width) * torch.relu(h) @ w.T
        grads = torch.autograd.grad(h.sum(), params)
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
    jacobian = torch.stack(rows)
    return (jacobian @ jacobian.T).numpy()


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_per_layer_empirical_ntk_equals_the_autograd_jacobian_gram(depth):
    x = _points(8)
    weights = init_weights(np.random.default_rng(depth), x.shape[1], 96, depth)
    reference = _autograd_ntk(weights, x)
    np.testing.assert_allclose(empirical_ntk(weights, x), reference, rtol=1e-10, atol=1e-12)
    x_other = _points(5, seed=9)
    cross = empirical_ntk(weights, x_other, x)
    full = _autograd_ntk(weights, np.vstack([x_other, x]))
    np.testing.assert_allclose(cross, full[:5, 5:], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("depth", [1, 2, 3, 5])
def test_the_diagonal_is_exactly_depth_plus_one(depth):
    """Sign vectors have ‖x‖² = d₀ with no rounding, so Θ(x, x) = L + 1 holds to the last bit."""
    signs = np.where(np.random.default_rng(depth).random((12, 10)) < 0.5, -1.0, 1.0)
    assert np.all(np.diag(analytic_ntk(signs, signs, depth)) == depth + 1)
    x = _points()
    np.testing.assert_allclose(np.diag(analytic_ntk(x, x, depth)), depth + 1, rtol=1e-14)
    # Two copies of the same points: the cross formula, with norms from Σx², to arccos's √eps at cos θ = 1.
    np.testing.assert_allclose(np.diag(analytic_ntk(x, x.copy(), depth)), depth + 1, atol=1e-6)


def test_the_independent_recursion_reproduces_the_module():
    x = _points()
    np.testing.assert_allclose(
        _variant_ntk(x, 2, with_derivative=True, c_sigma=2.0), analytic_ntk(x, x, 2), rtol=1e-12
    )


def test_wide_networks_average_to_the_formula_and_reject_wrong_variants():
    """Mean empirical NTK of 4 width-1024 nets: close to Θ, far from the no-K̇ and c_σ = 1 kernels."""
    x = _points(24)
    mean_ntk = np.mean(
        [empirical_ntk(init_weights(np.random.default_rng(100 + r), 10, 1024, 2), x) for r in range(4)],
        axis=0,
    )
    assert relative_frobenius_error(mean_ntk, analytic_ntk(x, x, 2)) < 0.08
    for wrong in (
        _variant_ntk(x, 2, with_derivative=False, c_sigma=2.0),
        _variant_ntk(x, 2, with_derivative=True, c_sigma=1.0),
    ):
        assert relative_frobenius_error(mean_ntk, wrong) > 0.15
    # The c_σ = 1 variant also fails the diagonal identity; dropping K̇ does not (K̇(x, x) = 1).
    assert not np.allclose(np.diag(_variant_ntk(x, 2, with_derivative=True, c_sigma=1.0)), 3.0)


def test_kernel_prediction_is_exact_for_gd_on_a_linear_model():
    """For f(x) = φ(x)·w the NTK is ΦΦᵀ and never changes, so the prediction holds exactly."""
    rng = np.random.default_rng(4)
    phi, phi_test = rng.standard_normal((12, 40)), rng.standard_normal((6, 40))
    y, w = rng.standard_normal(12), rng.standard_normal(40)
    lr, steps = 0.004, 300
    w_t = w.copy()
    for _ in range(steps):
        w_t -= lr * phi.T @ (phi @ w_t - y)
    theta, cross = phi @ phi.T, phi_test @ phi.T
    change = discrete_kernel_prediction(theta, cross, y - phi @ w, lr, steps)
    np.testing.assert_allclose(phi_test @ w_t, phi_test @ w + change, rtol=1e-9, atol=1e-10)
    # Gradient flow, the e^{−ηΘt} form, is the lr → 0 limit of the same steps.
    flow = kernel_prediction(theta, cross, y - phi @ w, lr * steps)
    fine = discrete_kernel_prediction(theta, cross, y - phi @ w, lr / 100, steps * 100)
    np.testing.assert_allclose(fine, flow, rtol=1e-3, atol=1e-4)


def test_reduced_study_runs_in_the_harness(tmp_path):
    overrides = ["study.widths=[64,256,1024]", "study.repeats=2", "study.train_width=256", "study.steps=40"]
    result = flsim.run("scenarios/studies/ntk.yaml", overrides, run_dir=tmp_path / "run")
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert set(summary["criteria"]) == {"ntk_error_slope", "ntk_error_at_widest", "prediction_error_test"}
    errors = summary["results"]["ntk_errors"]
    assert errors[0] > errors[1] > errors[2]
    assert summary["results"]["diagonal_max_deviation"] < 1e-12
    frame = flsim.load_runs(result.run_dir)
    assert set(frame["figure"].dropna()) == {"ntk_error", "trained_vs_predicted"}


@pytest.mark.parametrize(
    ("key", "value"), [("widths", [256, 64, 1024]), ("repeats", 0), ("lr", -0.1), ("depth", 0), ("widthz", 3)]
)
def test_a_malformed_study_parameter_names_its_key(key, value):
    with pytest.raises(ConfigErrors, match=rf"study\.{key}"):
        flsim.run({"kind": "study", "study": {"name": "ntk", key: value}})
