"""Study 11 (AAS PINN): the gates, checked independently of the study's own checks.

* The source term: f = −Δu* written by hand must equal a second-order central finite difference
  of u* (independent of autograd) and the autograd Laplacian used in training; the residual of u*
  under the training operator is ~0, and a wrong source (the 1-D constant 2a instead of 4a)
  leaves a residual of order max|f|.
* The sampler: its density integrates to 1 on Ω by composite Simpson quadrature
  (``scipy.integrate.simpson``, not the study's Gauss–Legendre rule) with components pushed
  against the boundary, while the same density without the truncation normaliser does not;
  its samples lie in Ω and have the mean of that density.
* A reduced run records the curves and passes its gates; malformed ``study.*`` values raise.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy import integrate

import flsim
from flsim.config.errors import ConfigErrors
from flsim.studies.aas_pinn import (
    CENTRE,
    SHARPNESS,
    MixtureSampler,
    exact_solution,
    laplacian,
    residual,
    source,
)

SCENARIO = "scenarios/studies/aas_pinn.yaml"


def _grid(n: int = 121) -> torch.Tensor:
    g = torch.linspace(-1.0, 1.0, n, dtype=torch.float64)
    return torch.cartesian_prod(g, g)


def test_source_matches_a_finite_difference_laplacian_of_the_exact_solution():
    x, h = _grid(), 1e-4
    shifts = torch.eye(2, dtype=torch.float64) * h
    fd = sum(exact_solution(x + e) - 2 * exact_solution(x) + exact_solution(x - e) for e in shifts) / h**2
    assert torch.allclose(-fd, source(x), atol=1e-4 * float(source(x).abs().max()))


def test_exact_solution_has_zero_residual_under_the_autograd_operator():
    x = _grid()
    r = residual(exact_solution, x).detach()
    assert float(r.abs().max()) <= 1e-10 * float(source(x).abs().max())
    assert torch.allclose(laplacian(exact_solution, x).detach(), -source(x), rtol=0, atol=1e-9)


def test_a_wrong_source_constant_leaves_a_large_residual():
    x = _grid()
    c = torch.tensor(CENTRE, dtype=torch.float64)
    s = ((x - c) ** 2).sum(-1)
    wrong = exact_solution(x) * (2 * SHARPNESS - 4 * SHARPNESS**2 * s)  # the 1-D constant
    r = -laplacian(exact_solution, x).detach() - wrong
    assert float(r.abs().max()) >= 0.1 * float(source(x).abs().max())


def _edge_sampler() -> MixtureSampler:
    sampler = MixtureSampler(3, 0.3, torch.Generator().manual_seed(0)).double()
    with torch.no_grad():  # one component centred on an edge, one in a corner, one inside
        sampler.raw_means.copy_(torch.atanh(torch.tensor([[0.98, 0.0], [-0.95, -0.97], [0.2, 0.4]])))
        sampler.log_scales.copy_(torch.log(torch.tensor([[0.2, 0.4], [0.3, 0.15], [0.1, 0.1]])))
        sampler.logits.copy_(torch.tensor([0.5, 0.0, -0.5]))
    return sampler


def _quad_mass(sampler: MixtureSampler, truncate: bool, weight=lambda x, y: 1.0) -> float:
    """∫_Ω weight·p by composite Simpson on a 1001² grid (h = 2e-3; error ~ h⁴/σ⁴ ≈ 2e-7 at σ = 0.1)."""
    g = np.linspace(-1.0, 1.0, 1001)
    gx, gy = np.meshgrid(g, g, indexing="ij")
    points = torch.as_tensor(np.stack([gx.ravel(), gy.ravel()], -1))
    with torch.no_grad():
        density = sampler.log_prob(points, truncate=truncate).exp().numpy().reshape(gx.shape)
    return float(integrate.simpson(integrate.simpson(weight(gx, gy) * density, x=g), x=g))


def test_sampler_density_integrates_to_one_and_a_missing_truncation_does_not():
    sampler = _edge_sampler()
    assert _quad_mass(sampler, truncate=True) == pytest.approx(1.0, abs=1e-6)
    assert _quad_mass(sampler, truncate=False) < 1 - 1e-2


def test_sampler_draws_follow_its_density():
    sampler, n = _edge_sampler(), 200_000
    x = sampler.sample(n, torch.Generator().manual_seed(1)).numpy()
    assert x.min() >= -1 and x.max() <= 1
    for axis in (0, 1):
        mean = _quad_mass(sampler, True, weight=lambda a, b, axis=axis: (a, b)[axis])
        se = x[:, axis].std() / math.sqrt(n)
        assert abs(x[:, axis].mean() - mean) < 4 * se


def test_a_reduced_run_records_curves_and_passes_its_gates(tmp_path):
    result = flsim.run(
        SCENARIO,
        ["study.seeds=[0]", "study.steps=20", "study.eval_every=10", "study.points=64", "study.eval_grid=21"],
        run_dir=tmp_path / "run",
    )
    summary = json.loads((result.run_dir / "summary.json").read_text())
    criteria = summary["criteria"]
    assert criteria["exact_solution_relative_residual"]["pass"] and criteria["sampler_density_mass"]["pass"]
    assert criteria["aas_over_uniform_relative_l2"]["gate"] is False
    frame = flsim.load_runs(result.run_dir)
    assert sorted(frame["method"].unique()) == ["aas", "uniform"]
    assert list(frame[frame["method"] == "aas"]["step"]) == [10, 20]
    assert np.isfinite(frame["relative_l2"]).all()


@pytest.mark.parametrize(
    ("key", "value"), [("steps", 0), ("uniform_weight", 1.0), ("beta", -1), ("stepz", 3)]
)
def test_a_malformed_study_parameter_names_its_key(key, value):
    with pytest.raises(ConfigErrors, match=rf"study\.{key}"):
        flsim.run(SCENARIO, [f"study.{key}={value}"])
