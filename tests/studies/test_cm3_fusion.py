"""Study 8 (CM³): the three exact gates of the study, each with a broken variant that must fail.

* Spherical Bézier fusion keeps the fused vector on the unit sphere (norm 1 ± 1e-6) for 2 to 6
  modalities; the same de Casteljau recursion with linear interpolation leaves it.
* With two modalities the fusion is the slerp, checked against the great-circle point written out
  in the plane (cos τφ, sin τφ) and against an independent formula in 64 dimensions; normalised
  linear interpolation (nlerp) misses it away from τ = 1/2.
* With equal similarities the calibrated uniformity of the official code is the plain uniformity
  plus 2t(1 − s), with identical gradients; the multiplicative paraphrase log E exp(−t(1−s)‖·‖²)
  is not a constant shift.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import flsim
from flsim.config.errors import ConfigErrors
from flsim.studies import cm3_fusion as cm

SCENARIO = "scenarios/studies/cm3_fusion.yaml"


def unit_rows(rng: np.random.Generator, rows: int, dim: int) -> torch.Tensor:
    return F.normalize(torch.tensor(rng.standard_normal((rows, dim))), dim=1)


def linear_bezier(points: list[torch.Tensor], tau: torch.Tensor) -> torch.Tensor:
    """The broken variant: de Casteljau with straight-line interpolation instead of slerp."""
    level = list(points)
    while len(level) > 1:
        level = [(1 - tau[:, None]) * level[k] + tau[:, None] * level[k + 1] for k in range(len(level) - 1)]
    return level[0]


# -- gate 1: the fused vector stays on the sphere ------------------------------------------------------
@pytest.mark.parametrize("modalities", [2, 3, 4, 6])
def test_spherical_bezier_stays_on_the_unit_sphere(modalities):
    rng = np.random.default_rng(modalities)
    points = [unit_rows(rng, 300, 32) for _ in range(modalities)]
    tau = torch.tensor(rng.random(300))
    fused = cm.spherical_bezier(points, tau)
    assert torch.all((fused.norm(dim=1) - 1.0).abs() <= 1e-6)
    assert float((linear_bezier(points, tau).norm(dim=1) - 1.0).abs().max()) > 1e-2


def test_spherical_bezier_interpolates_its_end_control_points():
    rng = np.random.default_rng(1)
    points = [unit_rows(rng, 50, 16) for _ in range(4)]
    assert torch.allclose(cm.spherical_bezier(points, torch.zeros(50)), points[0], atol=1e-12)
    assert torch.allclose(cm.spherical_bezier(points, torch.ones(50)), points[-1], atol=1e-12)


def test_trained_fusion_is_on_the_sphere_in_float32_too():
    rng = np.random.default_rng(2)
    points = [unit_rows(rng, 500, 32).float() for _ in range(2)]
    fused = cm.spherical_bezier(points, torch.tensor(rng.random(500), dtype=torch.float32))
    assert float((fused.norm(dim=1) - 1.0).abs().max()) <= 1e-6


# -- gate 2: two modalities = slerp --------------------------------------------------------------------
@pytest.mark.parametrize("tau", [0.0, 0.1, 0.3, 0.5, 0.77, 1.0])
def test_two_modality_fusion_is_the_great_circle_point_in_the_plane(tau):
    phi = 2.0
    a = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    b = torch.tensor([[math.cos(phi), math.sin(phi)]], dtype=torch.float64)
    fused = cm.spherical_bezier([a, b], torch.tensor([tau], dtype=torch.float64))
    expected = torch.tensor([[math.cos(tau * phi), math.sin(tau * phi)]], dtype=torch.float64)
    assert torch.allclose(fused, expected, atol=1e-12)


def test_two_modality_fusion_is_slerp_in_high_dimension_and_nlerp_is_not():
    rng = np.random.default_rng(3)
    a, b = unit_rows(rng, 200, 64), unit_rows(rng, 200, 64)
    tau = torch.full((200,), 0.3, dtype=torch.float64)
    # slerp written independently: rotate a towards the part of b orthogonal to a
    cos = (a * b).sum(dim=1, keepdim=True)
    ortho = (b - cos * a) / (b - cos * a).norm(dim=1, keepdim=True)
    angle = 0.3 * torch.acos(cos)
    expected = torch.cos(angle) * a + torch.sin(angle) * ortho
    assert float((cm.spherical_bezier([a, b], tau) - expected).abs().max()) <= 1e-12
    nlerp = F.normalize(0.7 * a + 0.3 * b, dim=1)
    assert float((nlerp - expected).abs().max()) > 1e-3


# -- gate 3: equal similarities = plain uniformity + constant -------------------------------------------
@pytest.mark.parametrize("s", [0.0, 0.25, 0.8, 1.0])
def test_equal_similarities_shift_the_uniformity_by_a_constant(s):
    rng = np.random.default_rng(4)
    t = 2.0
    x = unit_rows(rng, 60, 8).requires_grad_(True)
    sim = torch.full((60 * 59 // 2,), s, dtype=torch.float64)
    calibrated = cm.calibrated_uniformity(x, sim, t)
    plain = cm.uniformity(x, t)
    assert float((calibrated - plain).detach()) == pytest.approx(2 * t * (1 - s), abs=1e-10)
    (grad_c,) = torch.autograd.grad(calibrated, x)
    (grad_p,) = torch.autograd.grad(cm.uniformity(x, t), x)
    assert torch.allclose(grad_c, grad_p, atol=1e-12)


def test_the_multiplicative_paraphrase_is_not_a_constant_shift():
    """log E exp(−t(1−s)d²) − log E exp(−t d²) depends on the embeddings, so it fails the gate."""
    rng = np.random.default_rng(5)
    t, s = 2.0, 0.5

    def paraphrase(x: torch.Tensor) -> torch.Tensor:
        return torch.pdist(x).pow(2).mul(-t * (1 - s)).exp().mean().log()

    gaps = [
        float(paraphrase(x) - cm.uniformity(x, t)) for x in (unit_rows(rng, 60, 8), unit_rows(rng, 60, 3))
    ]
    assert abs(gaps[0] - gaps[1]) > 1e-2
    assert abs(gaps[0] - 2 * t * (1 - s)) > 1e-2


def test_dissimilar_pairs_are_repelled_harder():
    """Per pair, the weight of the calibrated kernel is exp(2t(1 − s_ij)): larger for smaller s_ij."""
    rng = np.random.default_rng(6)
    x = unit_rows(rng, 3, 4).requires_grad_(True)
    sim = torch.tensor([0.0, 1.0, 1.0], dtype=torch.float64)  # pairs (0,1), (0,2), (1,2)
    (grad,) = torch.autograd.grad(cm.calibrated_uniformity(x, sim, 2.0), x)
    d = torch.pdist(x.detach()).pow(2)
    weights = torch.exp(-2.0 * (d - 2.0 + 2.0 * sim))
    expected = torch.zeros_like(x)
    for k, (i, j) in enumerate([(0, 1), (0, 2), (1, 2)]):
        pull = -2.0 * 2.0 * (x[i] - x[j]).detach() * weights[k] / weights.sum()
        expected[i] += pull
        expected[j] -= pull
    assert torch.allclose(grad, expected, atol=1e-12)


def test_pair_similarities_follow_the_pdist_order():
    rng = np.random.default_rng(7)
    f = torch.tensor(rng.standard_normal((7, 5)))
    sims = cm.pair_similarities(f, -1.0, 1.0)
    expected = [float(F.cosine_similarity(f[i], f[j], dim=0)) for i in range(7) for j in range(i + 1, 7)]
    assert np.allclose(sims.numpy(), expected, atol=1e-12)
    assert float(cm.pair_similarities(f, 0.0, 0.5).min()) >= 0.0


def test_ndcg_by_hand():
    scores = np.array([[0.9, 0.8, 0.1, 0.5], [0.1, 0.2, 0.3, 0.4]])
    train = np.array([[0, 0]])  # masked: user 0 ranks 1, 3, 2
    test = np.array([[0, 3], [1, 0]])
    relevant = np.ones(4, dtype=bool)
    user0 = 1.0 / math.log2(3)  # item 3 at rank 2, ideal 1
    user1 = (1.0 / math.log2(5)) / 1.0  # item 0 at rank 4
    assert cm.ndcg_at_k(scores, train, test, 20, relevant) == pytest.approx((user0 + user1) / 2)
    assert cm.ndcg_at_k(scores, train, test, 2, relevant) == pytest.approx(user0 / 2)


# -- the harness ------------------------------------------------------------------------------------------
def test_a_reduced_run_passes_its_gates_and_records_curves(tmp_path):
    overrides = [
        "study.seeds=[0]",
        "study.users=60",
        "study.items=120",
        "study.epochs=5",
        "study.batch_size=128",
        "study.interactions_per_user=10",
    ]
    result = flsim.run(SCENARIO, overrides, run_dir=tmp_path / "run")
    summary = result.summary
    gates = {k: v for k, v in summary["criteria"].items() if v["gate"]}
    assert set(gates) == {
        "fused_norm_max_error",
        "bezier_two_vs_slerp_max_error",
        "equal_similarity_shift_max_error",
    }
    assert all(v["pass"] for v in gates.values())
    assert {k for k, v in summary["criteria"].items() if not v["gate"]} == {
        "cm3_over_baseline_ndcg20",
        "tail_gain_over_head_gain",
    }
    frame = flsim.load_runs(result.run_dir)
    assert len(frame) == 4 * 2  # four variants, evaluated at epochs 0 and 5


@pytest.mark.parametrize(
    ("key", "value"), [("epochs", 0), ("max_sim", 2.0), ("temperature", -1.0), ("seeds", "[]"), ("t", 2)]
)
def test_a_malformed_study_parameter_names_its_key(key, value, tmp_path):
    with pytest.raises(ConfigErrors, match=rf"study\.{key}"):
        flsim.run(SCENARIO, [f"study.{key}={value}"], run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()
