"""Study 9 (AutoDiffusion): the Fréchet distance, the DDIM sampler and the search's bookkeeping.

* The FD of two Gaussians against its closed form. In 2-D, tr((Σ₁Σ₂)^{1/2}) has an independent
  closed form: Σ₁Σ₂ is similar to an SPD matrix, so its square root's eigenvalues are √λᵢ and
  (√λ₁ + √λ₂)² = tr(Σ₁Σ₂) + 2√det(Σ₁Σ₂). Two wrong covariance terms (no square root; an
  elementwise square root) are run through the same check and must fail it.
* The noise floor: two independent real sets have an FD far below the distribution's scale,
  shrinking like 1/n, and an unbiased MMD² centred on 0.
* DDIM with η = 0: for data concentrated at one point the exact ε makes every DDIM step land on
  that point, for any schedule; for Gaussian data the K = T sampler reproduces the data's mean
  and spread; and it draws no randomness (two generators, identical output), while η = 1 does.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import flsim
from flsim.config.errors import ConfigErrors
from flsim.studies.autodiffusion import (
    AutoDiffusionParams,
    Searcher,
    alpha_bars,
    ddim_sample,
    frechet_distance,
    initial_population,
    mmd2,
    sample_fd,
    swiss_roll,
    uniform_schedule,
)

SCENARIO = "scenarios/studies/autodiffusion.yaml"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _spd(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.standard_normal((d, d))
    return a @ a.T + 0.3 * np.eye(d)


def _closed_form_2d(mu1, cov1, mu2, cov2) -> float:
    prod = cov1 @ cov2
    tr_sqrt = math.sqrt(np.trace(prod) + 2.0 * math.sqrt(np.linalg.det(prod)))
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2.0 * tr_sqrt)


def _closed_form_error(fd) -> float:
    """Largest |fd − closed form| over random 2-D pairs and a commuting (diagonal) 4-D pair."""
    rng = np.random.default_rng(7)
    errors = []
    for _ in range(20):
        mu1, mu2 = rng.standard_normal(2), rng.standard_normal(2)
        cov1, cov2 = _spd(rng, 2), _spd(rng, 2)
        errors.append(abs(fd(mu1, cov1, mu2, cov2) - _closed_form_2d(mu1, cov1, mu2, cov2)))
    a, b = np.array([0.5, 1.0, 2.0, 4.0]), np.array([3.0, 1.0, 0.25, 1.5])
    diag = np.sum((np.sqrt(a) - np.sqrt(b)) ** 2) + 1.0  # means differ by 1 in one coordinate
    errors.append(abs(fd(np.eye(4)[0], np.diag(a), np.zeros(4), np.diag(b)) - diag))
    return float(np.max(errors))


def _fd_without_sqrt(mu1, cov1, mu2, cov2) -> float:
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(cov1 + cov2 - 2.0 * cov1 @ cov2))


def _fd_elementwise_sqrt(mu1, cov1, mu2, cov2) -> float:
    with np.errstate(invalid="ignore"):
        return float(np.sum((mu1 - mu2) ** 2) + np.trace(cov1 + cov2 - 2.0 * np.sqrt(cov1 @ cov2)))


def test_frechet_distance_matches_the_gaussian_closed_form():
    assert _closed_form_error(frechet_distance) < 1e-9


@pytest.mark.parametrize("wrong", [_fd_without_sqrt, _fd_elementwise_sqrt])
def test_a_wrong_covariance_term_breaks_the_closed_form_check(wrong):
    assert not _closed_form_error(wrong) < 1e-2  # NaN (elementwise sqrt of a negative) also fails


def test_sample_fd_converges_to_the_closed_form():
    rng = np.random.default_rng(3)
    mu1, mu2, cov1, cov2 = np.array([0.0, 1.0]), np.array([0.5, -0.5]), _spd(rng, 2), _spd(rng, 2)
    x = rng.multivariate_normal(mu1, cov1, 200_000)
    y = rng.multivariate_normal(mu2, cov2, 200_000)
    assert sample_fd(x, y) == pytest.approx(_closed_form_2d(mu1, cov1, mu2, cov2), rel=0.02)


def test_two_real_sets_are_at_the_noise_floor():
    rng = np.random.default_rng(11)

    def floor(n: int) -> float:
        return float(
            np.mean(
                [sample_fd(swiss_roll(n, 0.5, 5.0, rng), swiss_roll(n, 0.5, 5.0, rng)) for _ in range(20)]
            )
        )

    scale = np.trace(np.cov(swiss_roll(20_000, 0.5, 5.0, rng), rowvar=False))
    small, large = floor(500), floor(4000)
    assert floor(2000) < 0.01 * scale
    assert 4.0 < small / large < 16.0  # O(1/n): 8 expected for an 8x larger sample
    # a real but small difference (a shift by 5% of the spread) stands far above the floor
    x, y = swiss_roll(2000, 0.5, 5.0, rng), swiss_roll(2000, 0.5, 5.0, rng)
    assert sample_fd(x + 0.05 * math.sqrt(scale), y) > 3.0 * floor(2000)
    mmds = [mmd2(swiss_roll(500, 0.5, 5.0, rng), swiss_roll(500, 0.5, 5.0, rng), 1.0) for _ in range(30)]
    assert abs(np.mean(mmds)) < 3.0 * np.std(mmds) / math.sqrt(len(mmds))  # unbiased: centred on 0


def _gaussian_eps(mean: float, std: float, abar: torch.Tensor):
    """The exact ε-predictor E[ε | x_t] for data N(mean, std²I)."""

    def eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = abar[t][:, None]
        return (x - a.sqrt() * mean) * (1 - a).sqrt() / (a * std**2 + 1 - a)

    return eps


@pytest.mark.parametrize("schedule", [[0, 250, 500, 750], [3, 40, 999], list(range(1000))])
def test_ddim_lands_exactly_on_a_point_mass(schedule):
    abar = alpha_bars(1000)
    x_t = torch.randn(256, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = ddim_sample(_gaussian_eps(1.5, 0.0, abar), x_t, schedule, abar)
    assert torch.allclose(out, torch.full_like(out, 1.5), atol=1e-9)


def test_ddim_with_all_steps_and_eta_zero_is_deterministic_and_transports_a_gaussian():
    abar = alpha_bars(1000)
    eps = _gaussian_eps(1.0, 0.5, abar)
    x_t = torch.randn(4000, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    steps = list(range(1000))
    first = ddim_sample(eps, x_t, steps, abar, generator=torch.Generator().manual_seed(2))
    second = ddim_sample(eps, x_t, steps, abar, generator=torch.Generator().manual_seed(3))
    assert torch.equal(first, second)
    # η = 0 discretises the probability-flow ODE, whose flow for N(m, s²I) data is affine:
    # x_0 = m + s·(x_T − √ᾱ_T·m)/σ_T with σ_T² = ᾱ_T·s² + 1 − ᾱ_T
    a_T = float(abar[-1])
    exact = 1.0 + 0.5 * (x_t - math.sqrt(a_T)) / math.sqrt(a_T * 0.25 + 1 - a_T)
    error = (first - exact).abs().mean()
    assert error < 2e-3
    coarse = (ddim_sample(eps, x_t, steps[::10], abar) - exact).abs().mean()
    assert 5.0 < coarse / error < 20.0  # DDIM is a first-order solver: 10x fewer steps, ~10x the error
    g2, g3 = torch.Generator().manual_seed(2), torch.Generator().manual_seed(3)
    noisy = [ddim_sample(eps, x_t, steps, abar, eta=1.0, generator=g) for g in (g2, g3)]
    assert not torch.equal(noisy[0], noisy[1])


def test_search_candidates_are_distinct_sorted_subsets_and_include_uniform():
    rng = np.random.default_rng(0)
    searcher = Searcher(lambda c: float(sum(c)), 1000, 4, rng)
    uniform = uniform_schedule(1000, 4)
    population = initial_population(searcher, uniform, 32)
    assert population[0] == (0, 250, 500, 750) and len(set(population)) == 32
    assert searcher.admit(uniform) is None  # a repeat is rejected
    assert searcher.admit([5, 5, 7, 9]) is None  # so is a repeated timestep
    for _ in range(200):
        child = searcher.mutate(population[0], 0.5)
        assert len(set(child)) == 4 and all(0 <= c < 1000 for c in child)
    assert all(list(c) == sorted(c) and len(set(c)) == 4 for c in searcher.scores)


def test_study_runs_in_the_harness_at_reduced_size(tmp_path):
    overrides = [
        "study.train_steps=200",
        "study.population=8",
        "study.generations=3",
        "study.top_k=4",
        "study.mutation_num=4",
        "study.crossover_num=4",
        "study.search_samples=300",
        "study.eval_samples=300",
        "study.eval_seeds=[0]",
        "study.reference_steps=10",
    ]
    result = flsim.run(SCENARIO, overrides, run_dir=tmp_path / "run")
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["criteria"]["fd_ratio_searched_over_random_search"]["gate"] is False
    assert summary["criteria"]["fd_ratio_searched_over_uniform"]["gate"] is True
    assert summary["results"]["search_fd"]["searched"] <= summary["results"]["search_fd"]["uniform"]
    frame = flsim.load_runs(result.run_dir)
    search = frame[frame["figure"] == "search"].sort_values("generation")
    assert list(search["generation"]) == [0, 1, 2]
    assert np.all(np.diff(search["best_fd"].to_numpy()) <= 0)  # the top-k keeps every generation's best
    assert np.all(search["best_fd"] <= search["uniform_fd"])
    # searched, random search, uniform, trailing uniform, 10-step uniform, and the real-set floor
    assert len(frame[frame["figure"] == "eval"]) == 6


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("steps", 1),
        ("population", 0),
        ("mutation_prob", 0.0),
        ("eval_seeds", "[]"),
        ("pop", 8),
        ("reference_steps", 600),
    ],
)
def test_a_malformed_study_parameter_names_its_key(key, value):
    with pytest.raises(ConfigErrors, match=rf"study\.{key}"):
        flsim.run(SCENARIO, [f"study.{key}={value}"])


def test_a_search_larger_than_its_space_is_a_config_error():
    overrides = ["study.timesteps=10", "study.steps=2", "study.population=16", "study.generations=3"]
    with pytest.raises(ConfigErrors, match=r"study\.generations"):
        flsim.run(SCENARIO, overrides)


def test_defaults_follow_the_study_list():
    params = AutoDiffusionParams()
    assert (params.timesteps, params.steps, params.population, params.generations) == (1000, 4, 32, 15)
    assert params.search_samples == 2000 and params.fd_ratio_max == 0.7
