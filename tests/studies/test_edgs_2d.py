"""Study 2 (EDGS-2D): the renderer and the densification bookkeeping, each with a broken variant.

* The expanded-monomial renderer equals exp(−½(p − μ)ᵀΣ⁻¹(p − μ)) with Σ = R diag(e^{2s}) Rᵀ
  built and inverted explicitly; its autograd gradient matches central finite differences in
  float64, and a renderer with the right values but a wrong gradient fails that check.
* Densification (3DGS rules): clone at or below the clone scale, split above it (two children,
  scales / 1.6, parent removed), prune faint Gaussians, never exceed the cap; the Adam moments
  follow their rows (checked by id), new rows start at zero; a permuted moment table is caught.
* The per-row Adam equals ``torch.optim.Adam`` with the same ε.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import flsim
from flsim.config.errors import ConfigErrors
from flsim.studies import edgs_2d as ed

SCENARIO = "scenarios/studies/edgs_2d.yaml"


def direct_kernels(mu, log_scale, angle, points):
    out = torch.empty(len(mu), len(points), dtype=points.dtype)
    for i in range(len(mu)):
        c, s = math.cos(float(angle[i])), math.sin(float(angle[i]))
        rot = torch.tensor([[c, -s], [s, c]], dtype=points.dtype)
        cov = rot @ torch.diag(torch.exp(2 * log_scale[i])) @ rot.T
        d = points - mu[i]
        out[i] = torch.exp(-0.5 * ((d @ torch.linalg.inv(cov)) * d).sum(dim=1))
    return out


def random_gaussians(rng: np.random.Generator, n: int, dtype=torch.float64) -> ed.Gaussians:
    return ed.Gaussians(
        torch.tensor(rng.uniform(0, 16, (n, 2)), dtype=dtype),
        torch.tensor(rng.uniform(-1.0, 1.5, (n, 2)), dtype=dtype),
        torch.tensor(rng.uniform(-math.pi, math.pi, n), dtype=dtype),
        torch.tensor(rng.normal(0, 0.5, (n, 3)), dtype=dtype),
        np.arange(n),
    )


# -- the renderer ------------------------------------------------------------------------------------------
def test_renderer_equals_the_explicit_gaussian_formula():
    rng = np.random.default_rng(0)
    g = random_gaussians(rng, 7)
    points = ed.pixel_grid(16, torch.float64)
    assert torch.allclose(ed.kernels(g.mu, g.log_scale, g.angle, points),
                          direct_kernels(g.mu, g.log_scale, g.angle, points), atol=1e-12)  # fmt: skip
    # an isotropic Gaussian is rotation invariant, and at its own centre the kernel is 1
    iso = torch.zeros(1, 2, dtype=torch.float64)
    centre = torch.tensor([[3.5, 4.5]], dtype=torch.float64)
    k1 = ed.kernels(centre, iso, torch.tensor([0.0], dtype=torch.float64), points)
    k2 = ed.kernels(centre, iso, torch.tensor([1.3], dtype=torch.float64), points)
    assert torch.allclose(k1, k2, atol=1e-12)
    assert float(ed.kernels(centre, iso, torch.zeros(1, dtype=torch.float64), centre)) == pytest.approx(1.0)


def test_renderer_gradient_matches_finite_differences():
    assert ed.gradient_check(np.random.default_rng(1)) <= 1e-6


def test_a_renderer_with_a_wrong_gradient_fails_the_check():
    def half_gradient_in_mu(mu, log_scale, angle, points):
        mu = mu.detach() + 0.5 * (mu - mu.detach())  # same values, ∂/∂μ halved
        return ed.kernels(mu, log_scale, angle, points)

    assert ed.gradient_check(np.random.default_rng(1), half_gradient_in_mu) > 0.1


# -- densification ---------------------------------------------------------------------------------------
def fresh_state(g: ed.Gaussians, rng: np.random.Generator) -> ed.AdamState:
    return ed.AdamState([torch.tensor(rng.random(tuple(t.shape))) for t in g.tensors()],
                        [torch.tensor(rng.random(tuple(t.shape))) for t in g.tensors()], 7)  # fmt: skip


def test_clone_split_and_prune_follow_the_3dgs_rules():
    rng = np.random.default_rng(2)
    g = random_gaussians(rng, 4)
    g.log_scale[:] = torch.tensor([[math.log(0.5)] * 2, [math.log(3.0)] * 2, [0.0, 0.0], [math.log(2.0)] * 2])
    g.colour[2] = 1e-4  # faint: pruned
    state = fresh_state(g, rng)
    params = ed.Edgs2dParams(cap=100, grad_threshold=1.0, clone_scale=1.0)
    grads = torch.tensor([2.0, 3.0, 0.0, 0.5], dtype=torch.float64)  # 0 clones, 1 splits
    out = ed.densify(g, state, grads, params, np.random.default_rng(3))
    assert (out.clones, out.splits, out.pruned) == (1, 1, 1)
    assert out.aligned
    assert sorted(out.g.ids.tolist()) == [0, 3, 4, 5, 6]  # 1 split away, 2 pruned; clone 4, children 5, 6
    clone = out.g.ids.tolist().index(4)
    assert torch.equal(out.g.mu[clone], g.mu[0]) and all(
        torch.count_nonzero(m[clone]) == 0 for m in out.state.m
    )
    for child_id in (5, 6):
        row = out.g.ids.tolist().index(child_id)
        assert torch.allclose(out.g.log_scale[row], g.log_scale[1] - math.log(1.6))
        assert torch.equal(out.g.colour[row], g.colour[1])
    assert not torch.equal(out.g.mu[out.g.ids.tolist().index(5)], out.g.mu[out.g.ids.tolist().index(6)])


def test_the_cap_takes_the_largest_gradients_first():
    rng = np.random.default_rng(4)
    g = random_gaussians(rng, 10)
    params = ed.Edgs2dParams(cap=13, grad_threshold=0.1)
    grads = torch.linspace(1.0, 2.0, 10, dtype=torch.float64)
    out = ed.densify(g, fresh_state(g, rng), grads, params, np.random.default_rng(5))
    assert len(out.g) <= 13 and out.clones + out.splits == 3
    parents = {7, 8, 9}  # the three largest gradients
    survivors = set(out.g.ids.tolist())
    large = torch.exp(g.log_scale).max(dim=1).values > params.clone_scale
    assert all((p in survivors) != bool(large[p]) for p in parents)


def test_repeated_densification_stays_within_the_cap_and_aligned():
    rng = np.random.default_rng(6)
    g = random_gaussians(rng, 20)
    state = fresh_state(g, rng)
    params = ed.Edgs2dParams(cap=64, grad_threshold=0.5)
    for _ in range(12):
        out = ed.densify(g, state, torch.tensor(rng.random(len(g))), params, rng)
        assert len(out.g) <= params.cap and out.aligned
        g, state = out.g, out.state
        state.m = [m + torch.tensor(rng.random(tuple(m.shape))) for m in state.m]  # moments move on
    assert len(g) > 40


def test_a_permuted_moment_table_is_caught():
    rng = np.random.default_rng(7)
    g = random_gaussians(rng, 6)
    state = fresh_state(g, rng)
    before = ed._snapshot(g, state)
    assert ed._aligned(before, g, state)
    shuffled = ed.AdamState([m[torch.tensor([1, 0, 2, 3, 4, 5])] for m in state.m], state.v, state.step)
    assert not ed._aligned(before, g, shuffled)


def test_per_row_adam_equals_torch_adam():
    rng = np.random.default_rng(8)
    g = random_gaussians(rng, 5)
    reference = [t.clone().requires_grad_(True) for t in g.tensors()]
    lrs = [0.05, 0.01, 0.02, 0.03]
    optimisers = [torch.optim.Adam([p], lr=lr, eps=1e-15) for p, lr in zip(reference, lrs, strict=True)]
    state = ed.AdamState(
        [torch.zeros_like(t) for t in g.tensors()], [torch.zeros_like(t) for t in g.tensors()]
    )
    for _ in range(5):
        grads = [torch.tensor(rng.standard_normal(tuple(t.shape))) for t in g.tensors()]
        ed.adam_step(g, grads, state, lrs)
        for p, grad, opt in zip(reference, grads, optimisers, strict=True):
            p.grad = grad.clone()
            opt.step()
    for mine, theirs in zip(g.tensors(), reference, strict=True):
        assert torch.allclose(mine, theirs.detach(), atol=1e-12)


def test_edgs_initialisation_samples_by_gradient_and_matches_colours_at_centres():
    image = ed.procedural_image(64, np.random.default_rng(9))
    grad = ed.gradient_magnitude(image)
    g = ed.initialise(image, 512, grad + 0.01 * grad.mean(), np.random.default_rng(10))
    cols, rows = (g.mu[:, 0] - 0.5).long(), (g.mu[:, 1] - 0.5).long()
    assert float(grad[rows, cols].mean()) > 2 * float(grad.mean())  # drawn where the image changes
    overlap = ed.kernels(g.mu, g.log_scale, g.angle, g.mu).sum(dim=0)
    expected = torch.tensor(image[rows, cols], dtype=torch.float32)
    assert torch.allclose(g.colour * overlap[:, None], expected, atol=1e-6)
    # the scale is the distance to the nearest other centre (floored at half a pixel)
    dist = torch.cdist(g.mu, g.mu) + torch.diag(torch.full((512,), math.inf))
    assert torch.allclose(torch.exp(g.log_scale[:, 0]), dist.min(dim=1).values.clamp(min=0.5))


# -- the harness -----------------------------------------------------------------------------------------
def test_a_reduced_run_passes_its_gates_and_records_curves(tmp_path):
    overrides = ["study.steps=200", "study.densify_every=25", "study.edgs_count=128", "study.cap=160"]
    result = flsim.run(SCENARIO, overrides, run_dir=tmp_path / "run")
    summary = result.summary
    gates = {k: v for k, v in summary["criteria"].items() if v["gate"]}
    assert set(gates) == {
        "gradient_check_max_relative_error",
        "baseline_max_gaussians",
        "misaligned_densifications",
    }
    assert all(v["pass"] for v in gates.values())
    assert summary["results"]["baseline"]["max_gaussians"] > 64  # it did densify
    frame = flsim.load_runs(result.run_dir)
    assert len(frame) == 2 * (200 // 25 + 1)


@pytest.mark.parametrize(("key", "value"), [("steps", 0), ("cap", 0), ("grad_threshold", -1.0), ("lr", 0.1)])
def test_a_malformed_study_parameter_names_its_key(key, value, tmp_path):
    with pytest.raises(ConfigErrors, match=rf"study\.{key}"):
        flsim.run(SCENARIO, [f"study.{key}={value}"], run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()
