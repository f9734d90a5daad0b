"""Study 10 (exact augmented Lagrangian + sketch-and-project SQP): oracles and a reduced run.

* The problem statements: every Hock–Schittkowski problem's published f* (recomputed here from
  its closed form where it has one), start point, and published x* (f(x*) = f*, c(x*) = 0 and
  ∇ₓL(x*, λ_LS) = 0 with least-squares multipliers, derivatives by torch autograd computed
  here, not by the study's oracle). A problem with a wrong constant fails this check.
* The sketch-and-project solver reaches the exact solution of a random KKT system, and a
  plausible wrong projection (the K-norm variant, valid only for positive definite K) does not.
* The exact augmented Lagrangian gradient used by the Armijo test matches finite differences.
* The SQP run through the harness reaches the published optima with unit steps near them.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from torch.autograd.functional import hessian, jacobian

import flsim
from flsim.config.errors import ConfigErrors
from flsim.studies.exact_al_sketch.hock_schittkowski import PROBLEMS, Problem
from flsim.studies.exact_al_sketch.sqp import Oracle, merit, merit_gradient, sketch_and_project

R2 = math.sqrt(2.0)
# Hock & Schittkowski (1981): optimal values and standard starts, typed from the book's statements.
PUBLISHED_F_STAR = {
    "HS6": 0.0, "HS7": -math.sqrt(3.0), "HS8": -1.0, "HS9": -0.5, "HS26": 0.0, "HS27": 0.04,
    "HS28": 0.0, "HS39": -1.0, "HS40": -0.25, "HS42": 28 - 10 * R2, "HS46": 0.0, "HS47": 0.0,
    "HS48": 0.0, "HS49": 0.0, "HS50": 0.0, "HS51": 0.0, "HS52": 1859 / 349, "HS61": -143.6461422,
    "HS77": 0.24150513, "HS78": -2.91970041, "HS79": 0.0787768209,
}  # fmt: skip
PUBLISHED_X0 = {
    "HS6": (-1.2, 1), "HS7": (2, 2), "HS8": (2, 1), "HS9": (0, 0), "HS26": (-2.6, 2, 2),
    "HS27": (2, 2, 2), "HS28": (-4, 1, 1), "HS39": (2, 2, 2, 2), "HS40": (0.8,) * 4,
    "HS42": (1, 1, 1, 1), "HS46": (R2 / 2, 1.75, 0.5, 2, 2), "HS47": (2, R2, -1, 2 - R2, 0.5),
    "HS48": (3, 5, -3, 2, -2), "HS49": (10, 7, 2, -3, 0.8), "HS50": (35, -31, 11, 5, -5),
    "HS51": (2.5, 0.5, 2, -1, 0.5), "HS52": (2,) * 5, "HS61": (0, 0, 0), "HS77": (2,) * 5,
    "HS78": (-2, 1.5, 2, -1, -1), "HS79": (2,) * 5,
}  # fmt: skip


def _derivatives(problem: Problem, x: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    xt = torch.tensor(x, dtype=torch.float64)
    f = float(problem.objective(xt))
    g = jacobian(problem.objective, xt).numpy()
    return f, g, problem.constraints(xt).numpy(), jacobian(problem.constraints, xt).numpy()


def _polish(problem: Problem, x: np.ndarray, steps: int = 8) -> np.ndarray:
    """Newton's method on the KKT conditions from x (least-squares multipliers to start)."""
    _, g, c, jac = _derivatives(problem, x)
    lam = np.linalg.lstsq(jac.T, -g, rcond=None)[0]
    for _ in range(steps):
        _, g, c, jac = _derivatives(problem, x)
        lagr = lambda v, lam=lam: problem.objective(v) + torch.tensor(lam) @ problem.constraints(v)  # noqa: E731
        h = hessian(lagr, torch.tensor(x)).numpy()
        m = len(c)
        kkt = np.block([[h, jac.T], [jac, np.zeros((m, m))]])
        step = np.linalg.solve(kkt, -np.concatenate([g + jac.T @ lam, c]))
        x, lam = x + step[: len(x)], lam + step[len(x) :]
    return x


def statement_defects(problem: Problem) -> list[str]:
    """What is wrong with a problem's statement against the published data (empty: nothing)."""
    defects = []
    f_star = PUBLISHED_F_STAR[problem.name]
    if not math.isclose(problem.f_star, f_star, rel_tol=1e-12, abs_tol=1e-12):
        defects.append(f"f* {problem.f_star} != published {f_star}")
    if not np.allclose(problem.x0, PUBLISHED_X0[problem.name], rtol=0, atol=1e-15):
        defects.append("x0 differs from the published start")
    x_star = np.array(problem.x_star, dtype=np.float64)
    exact = problem.x_star_digits is None
    f, g, c, jac = _derivatives(problem, x_star)
    lam = np.linalg.lstsq(jac.T, -g, rcond=None)[0]
    tol = 1e-10 if exact else 2e-5
    if abs(f - f_star) > tol * max(1.0, abs(f_star)):
        defects.append(f"f(x*) = {f} != f* = {f_star}")
    if np.abs(c).max() > tol:
        defects.append(f"c(x*) = {c}")
    if np.abs(g + jac.T @ lam).max() > tol:
        defects.append(f"grad L(x*, lam_LS) = {g + jac.T @ lam}")
    if not exact:  # x* has a few digits: the KKT point next to it must match them and f*
        polished = _polish(problem, x_star)
        if np.abs(polished - x_star).max() > 10.0 ** (-problem.x_star_digits + 1):
            defects.append(f"KKT point {polished} is not the published x*")
        if abs(_derivatives(problem, polished)[0] - f_star) > 1e-8 * max(1.0, abs(f_star)):
            defects.append("f at the nearby KKT point differs from f*")
    return defects


@pytest.mark.parametrize("name", list(PUBLISHED_F_STAR))
def test_problem_statement_matches_the_published_solution(name):
    assert statement_defects(PROBLEMS[name]) == []


def test_the_problem_set_is_the_one_specified():
    assert sorted(PROBLEMS) == sorted(PUBLISHED_F_STAR)


def _hs42_wrong_target(x):
    return (x[0] - 1) ** 2 + (x[1] - 2) ** 2 + (x[2] - 3) ** 2 + (x[3] - 5) ** 2  # book: (x4 − 4)²


def _hs52_wrong_sign(x):
    return torch.stack([x[0] + 3 * x[1], x[2] + x[3] - 2 * x[4], x[1] + x[4]])  # book: x2 − x5


def _hs61_wrong_rhs(x):
    return torch.stack([3 * x[0] - 2 * x[1] ** 2 - 7, 4 * x[0] - x[2] ** 2 - 12])  # book: − 11


def _hs77_wrong_power(x):
    terms = (x[0] - 1) ** 2 + (x[0] - x[1]) ** 2 + (x[2] - 1) ** 3  # book: (x3 − 1)²
    return terms + (x[3] - 1) ** 4 + (x[4] - 1) ** 6


@pytest.mark.parametrize(
    "name, wrong",
    [
        ("HS42", {"objective": _hs42_wrong_target}),
        ("HS52", {"constraints": _hs52_wrong_sign}),
        ("HS61", {"constraints": _hs61_wrong_rhs}),
        ("HS77", {"objective": _hs77_wrong_power}),
        ("HS7", {"f_star": -math.sqrt(2.0)}),
        ("HS47", {"x0": (2.0, R2, 1.0, 2 - R2, 0.5)}),
    ],
)
def test_a_wrong_constant_breaks_the_statement_check(name, wrong):
    assert statement_defects(dataclasses.replace(PROBLEMS[name], **wrong)) != []


def _random_kkt(rng: np.random.Generator, n: int = 5, m: int = 2) -> tuple[np.ndarray, np.ndarray]:
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    h = q @ np.diag(rng.uniform(1.0, 3.0, n)) @ q.T
    g = rng.standard_normal((m, n))
    return np.block([[h, g.T], [g, np.zeros((m, m))]]), rng.standard_normal(n + m)


def _one_projection_at_a_time(kkt, rhs, threshold, rng, max_iter):
    """The textbook loop: z ← z − w·sᵀ(Kz − r)/‖w‖² with w = Kᵀs, one Gaussian s per step."""
    z = np.zeros_like(rhs)
    for step in range(max_iter):
        residual = kkt @ z - rhs
        if np.linalg.norm(residual) <= threshold:
            return z, step
        s = rng.standard_normal(len(rhs))
        w = kkt.T @ s
        z = z - w * (s @ residual) / (w @ w)
    return z, max_iter


def test_sketch_and_project_converges_to_the_exact_kkt_solution():
    rng = np.random.default_rng(7)
    kkt, rhs = _random_kkt(rng)
    exact = np.linalg.solve(kkt, rhs)
    threshold = 1e-11 * np.linalg.norm(rhs)
    z, taken = sketch_and_project(kkt, rhs, np.zeros_like(rhs), threshold, np.random.default_rng(1), 10**6)
    assert 0 < taken < 10**6
    assert np.linalg.norm(kkt @ z - rhs) <= threshold
    assert np.linalg.norm(z - exact) <= 1e-8 * np.linalg.norm(exact)


def test_blocked_projections_are_the_one_at_a_time_iterates():
    """Same Gaussian draws, same stopping step, same iterate as the textbook loop."""
    kkt, rhs = _random_kkt(np.random.default_rng(11))
    threshold = 1e-6 * np.linalg.norm(rhs)
    z, taken = sketch_and_project(kkt, rhs, np.zeros_like(rhs), threshold, np.random.default_rng(2), 200_000)
    z_ref, taken_ref = _one_projection_at_a_time(kkt, rhs, threshold, np.random.default_rng(2), 200_000)
    assert taken == taken_ref < 200_000
    assert np.allclose(z, z_ref, rtol=1e-9, atol=1e-12)
    capped, count = sketch_and_project(kkt, rhs, np.zeros_like(rhs), 0.0, np.random.default_rng(2), 37)
    assert count == 37
    assert np.allclose(capped, _one_projection_at_a_time(kkt, rhs, 0.0, np.random.default_rng(2), 37)[0])


def test_the_k_norm_projection_does_not_solve_an_indefinite_kkt_system():
    """z ← z − S(SᵀKS)†Sᵀ(Kz − r) needs K ≻ 0; the KKT matrix is indefinite, so it must fail."""
    rng = np.random.default_rng(7)
    kkt, rhs = _random_kkt(rng)
    z = np.zeros_like(rhs)
    for _ in range(20_000):
        s = rng.standard_normal(len(rhs))
        curvature = s @ kkt @ s
        if abs(curvature) > 1e-12:
            z -= s * (s @ (kkt @ z - rhs)) / curvature
        if not np.all(np.abs(z) < 1e12):
            break  # diverged
    assert not np.linalg.norm(kkt @ z - rhs) <= 1e-6 * np.linalg.norm(rhs)


def test_merit_gradient_is_the_derivative_of_the_exact_augmented_lagrangian():
    oracle = Oracle(PROBLEMS["HS78"])
    rng = np.random.default_rng(3)
    x, lam = rng.standard_normal(5), rng.standard_normal(3)
    mu, nu = 2.0, 0.3
    gradient = merit_gradient(oracle.evaluate(x, lam), mu, nu)
    eps, numeric = 1e-6, np.zeros(8)
    for i in range(8):
        e = np.zeros(8)
        e[i] = eps
        up = merit(oracle.evaluate(x + e[:5], lam + e[5:], with_hessian=False), mu, nu)
        down = merit(oracle.evaluate(x - e[:5], lam - e[5:], with_hessian=False), mu, nu)
        numeric[i] = (up - down) / (2 * eps)
    assert np.allclose(gradient, numeric, rtol=1e-6, atol=1e-6)


REDUCED = ["HS7", "HS28", "HS40", "HS42", "HS52", "HS78"]


def test_the_sketched_sqp_reaches_the_published_optima(tmp_path):
    result = flsim.run(
        "scenarios/studies/exact_al_sketch.yaml",
        [f"study.problems=[{','.join(REDUCED)}]"],
        run_dir=tmp_path / "run",
    )
    summary = result.summary
    assert summary["status"] == "completed" and summary["pass"] is True
    for name in REDUCED:
        f_star = PUBLISHED_F_STAR[name]
        for method in ("problems", "exact", "trust_constr"):
            record = summary["results"][method][name]
            assert abs(record["f"] - f_star) <= 1e-6 * max(1.0, abs(f_star)), (method, name)
            assert record["kkt"] <= 1e-6, (method, name)
        sketched = summary["results"]["problems"][name]
        assert sketched["unit_steps"] >= 1 and sketched["iterations"] >= 1
    assert summary["criteria"]["unit_steps_near_solution"]["value"] >= 0.9


def test_hs61_start_violates_licq_so_newton_sqp_cannot_start(tmp_path):
    """At x0 = 0 the two constraint gradients (3, 0, 0) and (4, 0, 0) are parallel and the
    linearised constraints 3·dx1 = 7, 4·dx1 = 11 are inconsistent: no Newton step exists."""
    _, _, c, jac = _derivatives(PROBLEMS["HS61"], np.zeros(3))
    assert np.linalg.matrix_rank(jac) == 1
    assert np.linalg.matrix_rank(np.column_stack([jac, -c])) == 2  # G·dx = −c has no solution
    overrides = ["study.problems=[HS61]"]
    summary = flsim.run("scenarios/studies/exact_al_sketch.yaml", overrides, run_dir=tmp_path / "r").summary
    assert summary["results"]["problems"]["HS61"]["status"] == "singular_jacobian"
    trust = summary["results"]["trust_constr"]["HS61"]
    assert abs(trust["f"] - PUBLISHED_F_STAR["HS61"]) <= 1e-6 * 143.6461422


def test_the_claim_can_fail(tmp_path):
    """Two SQP iterations cannot solve HS7 from its start: the verdict is honest."""
    overrides = ["study.problems=[HS7]", "study.max_iterations=2", "study.compare_trust_constr=false"]
    result = flsim.run("scenarios/studies/exact_al_sketch.yaml", overrides, run_dir=tmp_path / "r")
    assert result.summary["pass"] is False
    assert result.summary["criteria"]["solved_fraction"]["value"] == 0.0


def test_a_malformed_study_parameter_names_its_key():
    with pytest.raises(ConfigErrors, match=r"study\.beta"):
        flsim.run({"kind": "study", "study": {"name": "exact_al_sketch", "beta": 0.7}})
    with pytest.raises(ConfigErrors, match=r"study\.problems"):
        flsim.run({"kind": "study", "study": {"name": "exact_al_sketch", "problems": ["HS999"]}})
    with pytest.raises(ConfigErrors, match=r"study\.sketch_dimension"):
        flsim.run({"kind": "study", "study": {"name": "exact_al_sketch", "sketch_dimension": 2}})
