"""Study 14 (DPP / volume-sampling weighted least squares): the exact volume-sampling identities.

The exact expectations are computed here by enumerating every subset of a small ground set
(Cauchy–Binet makes Σ_S det(X_S)² = det(XᵀX), so the probabilities are explicit), independently of
the study's sampler; the sampler and the weights of the study are then checked against them.
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

import flsim
from flsim.config.errors import ConfigErrors
from flsim.studies.dpp_wls import (
    ground_set,
    last_point_expectation,
    projection_dpp,
    target_values,
    weighted_fit,
    weights,
)

SMALL = {"grid": 9, "m": 3}


def _runge(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + 25.0 * x**2)


def _design(points: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """A monomial design on a grid: a different basis of the same V_m as the study's Legendre one."""
    x = np.linspace(-1.0, 1.0, points)
    return x, np.vander(x, m, increasing=True)


def test_volume_sampling_identities_hold_exactly_by_enumeration():
    """Dereziński & Warmuth 2017: E[w_S] = w* and E[L(w_S)] = (m+1) L(w*) for P(S) ∝ det(X_S)²."""
    x, design = _design(SMALL["grid"], SMALL["m"])
    y = _runge(x)
    w_star = np.linalg.lstsq(design, y, rcond=None)[0]

    def loss(w):
        return float(np.sum((design @ w - y) ** 2))

    total = np.linalg.det(design.T @ design)
    mean_w, mean_loss, mass = np.zeros(SMALL["m"]), 0.0, 0.0
    for subset in itertools.combinations(range(SMALL["grid"]), SMALL["m"]):
        rows = list(subset)
        p = np.linalg.det(design[rows]) ** 2 / total
        w_s = np.linalg.solve(design[rows], y[rows])
        mean_w, mean_loss, mass = mean_w + p * w_s, mean_loss + p * loss(w_s), mass + p
    assert mass == pytest.approx(1.0, abs=1e-12)  # Cauchy–Binet
    np.testing.assert_allclose(mean_w, w_star, atol=1e-10)
    assert mean_loss == pytest.approx((SMALL["m"] + 1) * loss(w_star), rel=1e-10)
    assert mean_loss != pytest.approx(SMALL["m"] * loss(w_star), rel=1e-3)  # the factor is m+1, not m


def test_the_hkpv_sampler_is_volume_sampling():
    """The study's projection DPP with kernel X(XᵀX)⁻¹Xᵀ = QQᵀ draws S with P(S) = det(X_S)²/det(XᵀX)."""
    ground = ground_set(SMALL["grid"], SMALL["m"])
    np.testing.assert_allclose(ground.x, -1.0 + (2.0 * np.arange(9) + 1.0) / 9)  # cell midpoints
    design = np.vander(ground.x, SMALL["m"], increasing=True)
    kernel = design @ np.linalg.solve(design.T @ design, design.T)
    np.testing.assert_allclose(kernel, ground.q @ ground.q.T, atol=1e-12)
    draws = 60_000
    subsets = np.sort(projection_dpp(np.random.default_rng(7), ground.q, draws), axis=1)
    counts: dict[tuple[int, ...], int] = {}
    for row in map(tuple, subsets):
        counts[row] = counts.get(row, 0) + 1
    total = np.linalg.det(design.T @ design)
    chi2, cells = 0.0, 0
    for subset in itertools.combinations(range(SMALL["grid"]), SMALL["m"]):
        p = np.linalg.det(design[list(subset)]) ** 2 / total
        assert p == pytest.approx(np.linalg.det(kernel[np.ix_(subset, subset)]), abs=1e-12)
        chi2 += (counts.get(subset, 0) - draws * p) ** 2 / (draws * p)
        cells += 1
    assert sum(counts.values()) == draws and all(len(set(s)) == SMALL["m"] for s in subsets)
    assert chi2 < cells - 1 + 5 * math.sqrt(2 * (cells - 1))  # 83 dof; mean 83, sd ≈ 13


def _rescaled_expectation(ground, values, n_extra: int, rule: str) -> np.ndarray:
    """Exact E[ŵ] under volume-rescaled sampling: a projection DPP of m points ∪ n_extra iid
    points drawn with probability h_i/m, fitted with the study's weights under ``rule``."""
    m, size = ground.m, len(ground.x)
    leverage = np.einsum("ij,ij->i", ground.q, ground.q)
    expectation = np.zeros(m)
    for subset in itertools.combinations(range(size), m):
        p_subset = np.linalg.det(ground.q[list(subset)]) ** 2
        for extra in itertools.product(range(size), repeat=n_extra):
            indices = np.array(subset + extra)
            p = p_subset * np.prod(leverage[list(extra)] / m)
            w = weights(ground, indices, "volume", rule)
            expectation += p * weighted_fit(ground.q[indices], values[indices, None], w)[:, 0]
    return expectation


def test_weighted_fit_is_unbiased_under_volume_rescaled_sampling_and_a_wrong_weight_breaks_it():
    """w = m/k_m makes the weighted fit exactly unbiased for n = m+1; w = 1 or w = k_m/m do not."""
    ground = ground_set(7, 2)
    values = _runge(ground.x)
    best = ground.q.T @ values
    right = _rescaled_expectation(ground, values, 1, "inverse_christoffel")
    np.testing.assert_allclose(right, best, atol=1e-12)
    for wrong in ("unweighted", "christoffel"):
        assert np.max(np.abs(_rescaled_expectation(ground, values, 1, wrong) - best)) > 1e-3


def test_a_constant_factor_in_the_weight_changes_nothing():
    """w = 1/k_m differs from m/k_m by the factor m, so the weighted fit is the same."""
    ground = ground_set(200, 5)
    indices = np.random.default_rng(3).integers(0, 200, size=12)
    values = target_values(ground)[indices]
    w = weights(ground, indices, "christoffel", "inverse_christoffel")
    np.testing.assert_allclose(w, 5 / (200 * np.einsum("ij,ij->i", ground.q, ground.q)[indices]))
    fit = weighted_fit(ground.q[indices], values, w)
    np.testing.assert_allclose(weighted_fit(ground.q[indices], values, w / 5), fit, atol=1e-12)


def test_last_point_expectation_matches_averaging_over_the_grid():
    """The closed form for E[L | first m−1 points] equals the explicit average over the last point."""
    ground = ground_set(300, 6)
    values = target_values(ground)
    best = ground.q.T @ values
    best_loss = np.sum((values - ground.q @ best) ** 2, axis=0)
    head = projection_dpp(np.random.default_rng(11), ground.q, 5, size=5)
    closed = last_point_expectation(ground.q[head], best, best_loss, values[head])
    for row, first in enumerate(head):
        null = np.linalg.svd(ground.q[first])[2][-1]
        prob = (ground.q @ null) ** 2
        explicit = np.zeros(values.shape[1])
        for j in np.flatnonzero(prob > 1e-14):
            rows = np.append(first, j)
            fit = ground.q @ np.linalg.solve(ground.q[rows], values[rows])
            explicit += prob[j] * np.sum((values - fit) ** 2, axis=0)
        np.testing.assert_allclose(closed[row], explicit / prob[prob > 1e-14].sum(), rtol=1e-8)


REDUCED = [
    "study.m_values=[6]",
    "study.grid_size=600",
    "study.trials=60",
    "study.oracle_m=6",
    "study.oracle_draws=20000",
    "study.bias_draws=3000",
]


def test_reduced_study_checks_the_identities_and_a_wrong_weight_fails_it(tmp_path):
    result = flsim.run("scenarios/studies/dpp_wls.yaml", REDUCED, run_dir=tmp_path / "right")
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["criteria"]["volume_loss_identity_error"]["pass"] is True
    assert summary["criteria"]["volume_mean_error"]["pass"] is True
    assert summary["criteria"]["volume_rescaled_2m_bias_z"]["pass"] is True
    wrong = flsim.run(
        "scenarios/studies/dpp_wls.yaml", [*REDUCED, "study.weighting=unweighted"], run_dir=tmp_path / "w"
    )
    assert wrong.summary["criteria"]["volume_rescaled_2m_bias_z"]["pass"] is False
    assert wrong.summary["pass"] is False


def test_a_malformed_study_parameter_names_its_key():
    with pytest.raises(ConfigErrors, match=r"study\.m_values"):
        flsim.run({"kind": "study", "study": {"name": "dpp_wls", "m_values": [1]}})
    with pytest.raises(ConfigErrors, match=r"study\.oracle_tolerance"):
        flsim.run({"kind": "study", "study": {"name": "dpp_wls", "oracle_tolerance": -0.1}})
    with pytest.raises(ConfigErrors, match=r"study\.weighting"):
        flsim.run({"kind": "study", "study": {"name": "dpp_wls", "weighting": "1/k_m"}})
