"""Study 21 (last-iterate SGD): the closed-form optima, the rate slopes, and the harness run.

The oracles are checked against independent computations (Monte Carlo, subgradient optimality,
a linear program), and each check is shown to reject a deliberately wrong closed form.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import linprog

import flsim
from flsim.config.errors import ConfigErrors
from flsim.studies import last_iterate_sgd as li

REDUCED = [
    "study.max_horizon=3000",
    "study.simplex_horizon=1000",
    "study.simplex_dims=[4, 40]",
    "study.seeds=[0, 1, 2, 3, 4, 5, 6, 7]",
]


# -- setting 1: F(x) = E|x - xi|_1 ---------------------------------------------------------------
def monte_carlo_agrees(objective, points: np.ndarray, samples: int = 400_000) -> bool:
    """Whether ``objective`` matches a Monte Carlo estimate of E‖x − ξ‖₁ within 5 standard errors."""
    rng = np.random.default_rng(12345)
    xi = rng.standard_normal((samples, points.shape[1]))
    for x in points:
        draws = np.abs(x - xi).sum(axis=1)
        error = draws.std() / math.sqrt(samples)
        if abs(float(objective(x)) - draws.mean()) > 5 * error:
            return False
    return True


POINTS = np.array([[0.0, 0.0, 0.0], [1.0, -0.5, 2.0], [-3.0, 0.3, 0.05]])


def test_l1_closed_form_matches_monte_carlo_and_a_wrong_form_does_not():
    assert monte_carlo_agrees(li.l1_objective, POINTS)

    def missing_factor_two(x):  # x(2Φ(x) − 1) + φ(x): the density term halved
        pdf = np.exp(-0.5 * x**2) / math.sqrt(2 * math.pi)
        return np.sum(x * (2 * li.ndtr(x) - 1) + pdf, axis=-1)

    assert not monte_carlo_agrees(missing_factor_two, POINTS)


def test_l1_optimum_is_at_zero_with_value_d_sqrt_2_over_pi():
    d = 10
    assert li.l1_objective(np.zeros(d)) == pytest.approx(d * math.sqrt(2 / math.pi), rel=1e-12)
    assert li.l1_optimum(d) == pytest.approx(d * math.sqrt(2 / math.pi), rel=1e-12)
    rng = np.random.default_rng(0)
    others = rng.normal(scale=0.5, size=(1000, d))
    assert (li.l1_objective(others) > li.l1_optimum(d)).all()
    h = 1e-6  # dF/dx_i = 2Φ(x_i) − 1 vanishes at 0
    assert (li.l1_objective(np.r_[h, np.zeros(d - 1)]) - li.l1_optimum(d)) / h == pytest.approx(0, abs=1e-5)


# -- setting 2: x* = soft-threshold(m, lambda) ---------------------------------------------------------
def subgradient_optimal(x: np.ndarray, mean: np.ndarray, lam: float, tol: float = 1e-12) -> bool:
    """0 ∈ x − m + λ∂‖x‖₁: x_i − m_i + λ sign(x_i) = 0 where x_i ≠ 0, |m_i| ≤ λ where x_i = 0."""
    nonzero = x != 0
    stationary = np.abs(x[nonzero] - mean[nonzero] + lam * np.sign(x[nonzero])) <= tol
    return bool(stationary.all() and (np.abs(mean[~nonzero]) <= lam + tol).all())


def test_soft_threshold_is_the_minimiser_and_a_wrong_threshold_is_not():
    mean, lam = li.prox_mean(10), 0.5
    star = li.soft_threshold(mean, lam)
    assert subgradient_optimal(star, mean, lam)
    assert (star == 0).any() and (star != 0).any()  # both cases of the condition are exercised
    assert not subgradient_optimal(li.soft_threshold(mean, lam / 2), mean, lam)
    assert not subgradient_optimal(np.clip(mean, -lam, lam), mean, lam)
    rng = np.random.default_rng(1)
    nearby = star + rng.normal(scale=1e-2, size=(2000, 10))
    assert (li.prox_objective(nearby, mean, lam) >= li.prox_objective(star, mean, lam)).all()


# -- setting 3: the simplex -------------------------------------------------------------------------
def test_simplex_minimum_is_the_smallest_cost():
    cost = li.simplex_cost(np.random.default_rng(2), 10, 1000)
    lp = linprog(cost, A_eq=np.ones((1, len(cost))), b_eq=[1.0], bounds=(0, None), method="highs")
    assert lp.fun == pytest.approx(cost.min(), abs=1e-12)
    assert cost[10:].min() == 1.0 and cost.min() == cost[:10].min()  # padding never moves F*


def test_simplex_projection_is_the_euclidean_projection():
    rng = np.random.default_rng(3)
    v = rng.normal(scale=2.0, size=(50, 30))
    p = li.project_simplex(v)
    assert np.allclose(p.sum(axis=1), 1.0) and (p >= 0).all()
    others = rng.dirichlet(np.ones(30), size=200)  # ⟨v − p, y − p⟩ ≤ 0 for every y in the simplex
    assert (np.einsum("rd,kd->rk", v - p, others) - np.sum((v - p) * p, axis=1)[:, None] <= 1e-9).all()
    x = li.entropic_step(np.full((2, 30), 1 / 30), v[:2], 0.3)
    assert np.allclose(x.sum(axis=1), 1.0) and np.allclose(
        x, np.exp(-0.3 * v[:2]) / np.exp(-0.3 * v[:2]).sum(1)[:, None]
    )


# -- the rates: slopes, and a wrong schedule breaks them ----------------------------------------------
def _rngs(n: int) -> list[np.random.Generator]:
    return [np.random.default_rng(100 + i) for i in range(n)]


def test_slopes_match_theory_and_a_wrong_schedule_breaks_them():
    params = li.LastIterateParams(seeds=list(range(16)))
    ts = li.horizons(10_000)
    l1 = li.l1_setting(params, _rngs(16), ts)
    prox = li.prox_setting(params, _rngs(16), ts)
    assert li.SLOPE_L1[0] <= li.slope(ts, l1[:, 0]) <= li.SLOPE_L1[1]
    assert li.SLOPE_PROX[0] <= li.slope(ts, prox[:, 0]) <= li.SLOPE_PROX[1]

    def constant_step(x, t, z):  # no decay: the gap stalls at the noise floor
        return x - 0.05 * np.sign(x - z)

    stalled = li.trajectories(
        [np.ones((16, 10))], [constant_step], [lambda x: li.l1_objective(x) - li.l1_optimum(10)],
        li.seeded_draws(_rngs(16), 10, 1.0), ts,
    )[0]  # fmt: skip
    assert not li.SLOPE_L1[0] <= li.slope(ts, stalled[:, 0]) <= li.SLOPE_L1[1]


# -- the harness run ------------------------------------------------------------------------------------
def test_reduced_run_reports_every_criterion_and_curve(tmp_path):
    result = flsim.run("scenarios/studies/last_iterate_sgd.yaml", REDUCED, run_dir=tmp_path / "run")
    summary = result.summary
    assert summary["status"] == "completed" and summary["study"] == "last_iterate_sgd"
    assert set(summary["criteria"]) == {
        "slope_l1",
        "slope_prox",
        "last_over_average_prox",
        "last_over_average_simplex",
        "last_over_average_l1",
        "mirror_descent_growth",
        "projected_sgd_growth",
    }
    assert summary["criteria"]["last_over_average_l1"]["gate"] is False
    frame = flsim.load_runs(result.run_dir)
    assert set(frame["setting"]) == {"l1", "prox", "simplex"}
    simplex = frame[frame["setting"] == "simplex"]
    assert set(simplex["method"]) == {
        f"{m} d={d}" for m in ("mirror_descent", "projected_sgd") for d in (4, 40)
    }
    l1 = frame[frame["setting"] == "l1"].sort_values("horizon")
    assert (l1["gap_last"] > 0).all() and l1["horizon"].tolist() == li.horizons(3000)
    assert [f["title"] for f in summary["figures"]] == [
        f.title for f in flsim.studies.STUDIES["last_iterate_sgd"].figures
    ]


def test_each_seed_has_its_own_stream_and_runs_repeat_exactly(tmp_path):
    first = flsim.run("scenarios/studies/last_iterate_sgd.yaml", REDUCED, run_dir=tmp_path / "a").summary
    again = flsim.run("scenarios/studies/last_iterate_sgd.yaml", REDUCED, run_dir=tmp_path / "b").summary
    assert first["results"] == again["results"]
    other = flsim.run(
        "scenarios/studies/last_iterate_sgd.yaml", [*REDUCED, "seed=1"], run_dir=tmp_path / "c"
    ).summary
    assert other["results"]["gaps"]["l1"] != first["results"]["gaps"]["l1"]


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("study.seeds=[0]", "study.seeds"),
        ("study.max_horizon=-3", "study.max_horizon"),
        ("study.simplex_dims=[1000, 10]", "study.simplex_dims"),
        ("study.simplex_dims=[1, 10]", "study.simplex_dims"),
        ("study.sigma=0", "study.sigma"),
        ("study.repeatz=3", "study.repeatz"),
    ],
)
def test_a_malformed_study_parameter_names_its_key(tmp_path, override, key):
    with pytest.raises(ConfigErrors, match=key.replace(".", r"\.")):
        flsim.run("scenarios/studies/last_iterate_sgd.yaml", [override], run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()
