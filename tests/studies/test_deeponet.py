"""Study 18 (DeepONet, Lu et al. 2021): the antiderivative oracle, the input field, the harness.

Oracle (d): the targets are fine-grid cumulative integrals. They must match closed-form
antiderivatives (sin, exp, polynomials) within the trapezoid rule's error bound (b − a)h²/12·max|u″|,
converge at second order, be exact for linear functions, and vanish at y = 0. Wrong quadratures
(a left Riemann sum, a cumulative sum that starts with the first sample, a trapezoid without its ½)
must fail the same checks.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import numpy as np
import pytest
import torch

import flsim
from flsim.config.errors import ConfigErrors
from flsim.studies.deeponet import (
    DeepOnetParams,
    _dense,
    cumulative_integral,
    deeponet_init,
    fnn_forward,
    fnn_pairs,
    fnn_width,
    grf_factor,
    operator_data,
    rbf_kernel,
)

SCENARIO = "scenarios/studies/deeponet.yaml"
Quadrature = Callable[[np.ndarray, np.ndarray], np.ndarray]

# (u, its antiderivative from 0, a bound on |u''| over [0, 1])
CLOSED_FORMS = [
    (lambda x: np.sin(np.pi * x), lambda y: (1 - np.cos(np.pi * y)) / np.pi, np.pi**2),
    (lambda x: np.sin(2 * np.pi * x), lambda y: (1 - np.cos(2 * np.pi * y)) / (2 * np.pi), 4 * np.pi**2),
    (lambda x: np.exp(x), lambda y: np.exp(y) - 1, np.e),
    (lambda x: x**2, lambda y: y**3 / 3, 2.0),
    (lambda x: 3 * x**4 - x, lambda y: 0.6 * y**5 - y**2 / 2, 36.0),
    (lambda x: x * np.sin(2 * np.pi * x),
     lambda y: np.sin(2 * np.pi * y) / (2 * np.pi) ** 2 - y * np.cos(2 * np.pi * y) / (2 * np.pi),
     4 * np.pi + 4 * np.pi**2),
]  # fmt: skip


def _passes_oracle(quadrature: Quadrature) -> bool:
    """Every closed form within the trapezoid bound on the study's fine grid, and G(u)(0) = 0."""
    grid = np.linspace(0.0, 1.0, 991)
    h = grid[1] - grid[0]
    for u, antiderivative, curvature in CLOSED_FORMS:
        integral = quadrature(u(grid), grid)
        if (
            integral[0] != 0.0
            or np.max(np.abs(integral - antiderivative(grid))) > h**2 / 12 * curvature + 1e-13
        ):
            return False
    return True


def test_cumulative_trapezoid_matches_closed_form_antiderivatives():
    assert _passes_oracle(cumulative_integral)


def _left_riemann(values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(values[:-1] * np.diff(grid))])


def _cumsum_from_first_sample(values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    return np.cumsum(values) * (grid[1] - grid[0])


def _trapezoid_without_half(values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(np.diff(grid) * (values[1:] + values[:-1]))])


@pytest.mark.parametrize("wrong", [_left_riemann, _cumsum_from_first_sample, _trapezoid_without_half])
def test_a_wrong_quadrature_fails_the_oracle(wrong):
    assert not _passes_oracle(wrong)


def test_second_order_convergence_and_exactness_on_lines():
    errors = []
    for points in (101, 201, 401):
        grid = np.linspace(0.0, 1.0, points)
        errors.append(
            np.max(np.abs(cumulative_integral(np.sin(3 * grid), grid) - (1 - np.cos(3 * grid)) / 3))
        )
    assert 3.8 < errors[0] / errors[1] < 4.2 and 3.8 < errors[1] / errors[2] < 4.2
    grid = np.sort(np.random.default_rng(0).uniform(0, 1, 57))  # a non-uniform grid
    np.testing.assert_allclose(
        cumulative_integral(2 * grid - 5, grid), grid**2 - 5 * grid - (grid[0] ** 2 - 5 * grid[0])
    )


def test_operator_data_vanishes_at_zero_and_is_linear():
    params = DeepOnetParams(train_functions=8)
    u, g = operator_data(np.random.default_rng(1), 8, params)
    assert u.shape == g.shape == (8, 100)
    assert np.all(g[:, 0] == 0.0)
    fine = np.linspace(0, 1, 991)
    v = np.random.default_rng(2).standard_normal((2, 991))
    combined = cumulative_integral(2.0 * v[0] - 3.0 * v[1], fine)
    separate = 2.0 * cumulative_integral(v[0], fine) - 3.0 * cumulative_integral(v[1], fine)
    np.testing.assert_allclose(combined, separate, atol=1e-12)
    # the targets are the integrals of the same functions the sensors read: G' ≈ u at the sensors
    slope = np.gradient(g, np.linspace(0, 1, 100), axis=1)
    assert np.max(np.abs(slope[:, 2:-2] - u[:, 2:-2])) < 0.05


def test_the_input_field_has_the_rbf_covariance():
    x = np.linspace(0, 1, 991)
    factor = grf_factor(x, 0.2)
    np.testing.assert_allclose(factor @ factor.T, rbf_kernel(x, 0.2), atol=1e-10)
    u, _ = operator_data(np.random.default_rng(3), 4000, DeepOnetParams())
    sensors = np.linspace(0, 1, 100)
    covariance = u.T @ u / len(u)
    expected = rbf_kernel(sensors, 0.2)
    assert np.max(np.abs(covariance - expected)) < 0.12  # 4000 draws: entrywise standard error ≤ √2/√4000
    lag = round(0.2 * 99)  # ≈ one length scale: correlation e^{-1/2}
    assert np.mean(np.diag(covariance, lag)) == pytest.approx(
        math.exp(-0.5 * (lag / 99 / 0.2) ** 2), abs=0.03
    )


def test_the_fnn_has_deeponets_parameter_count_and_reads_u_and_y():
    deeponet_size = sum(t.numel() for t in deeponet_init(torch.Generator(), 100, 40))
    assert deeponet_size == (100 * 40 + 40 + 40 * 40 + 40) + (40 + 40 + 40 * 40 + 40) + 1 == 7401
    width = fnn_width(100, deeponet_size)
    fnn = _dense(torch.Generator().manual_seed(0), [101, width, width, 1])
    assert sum(t.numel() for t in fnn) == width * width + 104 * width + 1
    assert abs(sum(t.numel() for t in fnn) - deeponet_size) / deeponet_size < 0.02
    u, y = torch.randn(5, 100, dtype=torch.float64), torch.linspace(0, 1, 7, dtype=torch.float64)
    fnn = [t.double() for t in fnn]
    pairs = fnn_pairs(fnn, u.repeat_interleave(7, 0), y.repeat(5)).reshape(5, 7)
    torch.testing.assert_close(fnn_forward(fnn, u, y), pairs)


def test_study_runs_in_the_harness_at_reduced_size(tmp_path):
    overrides = ["study.steps=300", "study.train_functions=40", "study.test_functions=40",
                 "study.fnn_batch=200", "study.log_every=100"]  # fmt: skip
    result = flsim.run(SCENARIO, overrides, run_dir=tmp_path / "run")
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert set(summary["criteria"]) == {"deeponet_test_error", "deeponet_over_fnn"}
    results = summary["results"]
    assert results["parameters"] == {"DeepONet": 7401, "FNN": 7498}
    frame = flsim.load_runs(result.run_dir)
    assert sorted(frame["network"].unique()) == ["DeepONet", "FNN"]
    assert len(frame) == 2 * 4  # steps 0, 100, 200, 300
    chosen = results["per_seed"]["0"]
    for name in ("DeepONet", "FNN"):
        rows = frame[(frame["network"] == name) & (frame["step"] == chosen[name]["step"])]
        assert float(rows["test_error"].iloc[0]) == pytest.approx(chosen[name]["test_error"])
    ratio = summary["criteria"]["deeponet_over_fnn"]["value"]
    assert ratio == pytest.approx(chosen["DeepONet"]["test_error"] / chosen["FNN"]["test_error"])


@pytest.mark.parametrize(
    ("key", "value"),
    [("steps", 0), ("length_scale", -0.2), ("sensors", 1), ("lr", 0), ("seeds", "[-1]"), ("widht", 40)],
)
def test_a_malformed_study_parameter_names_its_key(key, value):
    with pytest.raises(ConfigErrors, match=rf"study\.{key}"):
        flsim.run(SCENARIO, [f"study.{key}={value}"])
