"""Study 4 (EVA): the explained-variance oracle and the study in the harness.

Oracle (the specification's part (d)): EVA's A holds the top-r right singular vectors of the
centred layer inputs X_c, so ‖X_c·Aᵀ‖²_F = Σ_{i≤r} s_i² (s from an independent SVD of X_c),
which no other r orthonormal rows exceed (Eckart–Young / Ky Fan); random orthonormal rows, the
bottom singular vectors and a transposition slip (columns of Vᵀ instead of rows) all fall short.
The first gradient of B is larger under EVA than under random orthonormal A. The incremental PCA
is checked against scikit-learn's ``IncrementalPCA`` as an independent implementation.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.decomposition import IncrementalPCA as SklearnIPCA

import flsim
from flsim.config.errors import ConfigErrors
from flsim.studies import eva_lora as ev
from flsim.studies.context import StudyContext

SCENARIO = "scenarios/studies/eva_lora.yaml"


class _NoRows:
    def append_metrics(self, row: dict) -> None:
        pass


@pytest.fixture(scope="module")
def setup() -> tuple[list[torch.nn.Linear], ev.Task]:
    """A small pre-trained network (hidden 64, 5 epochs) and the transposed-digits task."""
    params = ev.EvaLoraParams(hidden=64, pretrain_epochs=5)
    source, target = ev.digit_tasks(np.random.default_rng(0), 0.2)
    base = ev.mlp([64, 64, 64, 10], torch.Generator().manual_seed(0))
    ev.pretrain(base, source, params, StudyContext(0, _NoRows()))
    for p in (p for layer in base for p in layer.parameters()):
        p.requires_grad_(False)
    return base, target


@pytest.fixture(scope="module")
def exact_fit(setup) -> ev.EvaFit:
    """EVA with ρ = 2 fitted on the whole training set in one batch: the exact SVD of X_c."""
    base, task = setup
    settings = ev.EvaLoraParams(svd_batch_size=len(task.y_train))
    return ev.fit_eva(base, task.x_train, 4, 2.0, settings, lambda e: torch.arange(len(task.y_train)))


def _centred_inputs(base: list[torch.nn.Linear], x: torch.Tensor) -> list[np.ndarray]:
    with torch.no_grad():
        inputs = ev.layer_inputs(base, x)[:-1]
    return [h.double().numpy() - h.double().numpy().mean(axis=0) for h in inputs]


def _captured(xc: np.ndarray, a: np.ndarray) -> float:
    return float(np.linalg.norm(xc @ a.T) ** 2)


def _orthonormal_rows(rank: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    return np.linalg.qr(rng.normal(size=(dim, rank)))[0].T


def test_incremental_pca_matches_scikit_learn_batch_by_batch():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 24)) @ rng.normal(size=(24, 24)) + rng.normal(size=24)
    ours, theirs = ev.IncrementalPCA(8), SklearnIPCA(n_components=8)
    for start in range(0, 400, 40):
        ours.partial_fit(x[start : start + 40])
        theirs.partial_fit(x[start : start + 40])
        np.testing.assert_allclose(ours.components, theirs.components_, atol=1e-10)
        np.testing.assert_allclose(
            ours.explained_variance_ratio, theirs.explained_variance_ratio_, atol=1e-12
        )
        np.testing.assert_allclose(ours.mean, theirs.mean_, atol=1e-12)


def test_eva_a_captures_exactly_the_top_squared_singular_values(setup):
    base, task = setup
    settings = ev.EvaLoraParams(svd_batch_size=len(task.y_train))  # one batch: the exact SVD
    fit = ev.fit_eva(base, task.x_train, 4, 1.0, settings, lambda e: torch.arange(len(task.y_train)))
    assert fit.converged and fit.ranks == [4, 4, 4]
    rng = np.random.default_rng(0)
    for layer, xc in enumerate(_centred_inputs(base, task.x_train)):
        s = np.linalg.svd(xc, compute_uv=False)
        a = fit.lora_a(layer)
        np.testing.assert_allclose(a @ a.T, np.eye(4), atol=1e-10)
        optimum = float((s[:4] ** 2).sum())
        assert _captured(xc, a) == pytest.approx(optimum, rel=1e-9)
        best_random = max(_captured(xc, _orthonormal_rows(4, xc.shape[1], rng)) for _ in range(200))
        assert best_random < 0.99 * optimum


def test_wrong_orientations_break_the_identity(setup):
    base, task = setup
    for xc in _centred_inputs(base, task.x_train):
        s_vals, vt = np.linalg.svd(xc, full_matrices=False)[1:]
        optimum = float((s_vals[:4] ** 2).sum())
        assert _captured(xc, vt[:4]) == pytest.approx(optimum, rel=1e-9)  # rows of Vᵀ: right
        assert _captured(xc, vt[:, :4].T) < 0.99 * optimum  # columns of Vᵀ: the transposition slip
        assert _captured(xc, vt[-4:]) < 0.5 * optimum  # bottom singular vectors


def test_incremental_fit_converges_close_to_the_exact_directions(setup):
    base, task = setup
    n = len(task.y_train)
    orders = [torch.randperm(n, generator=torch.Generator().manual_seed(e)) for e in range(50)]
    fit = ev.fit_eva(base, task.x_train, 4, 1.0, ev.EvaLoraParams(), lambda e: orders[e])
    assert fit.converged and max(fit.batches) < ev.EvaLoraParams().max_svd_batches
    for layer, xc in enumerate(_centred_inputs(base, task.x_train)):
        s = np.linalg.svd(xc, compute_uv=False)
        assert _captured(xc, fit.lora_a(layer)) >= 0.95 * float((s[:4] ** 2).sum())


def test_the_first_b_gradient_is_larger_for_eva_than_for_random_orthonormal_a(setup):
    base, task = setup
    settings = ev.EvaLoraParams(svd_batch_size=len(task.y_train))
    fit = ev.fit_eva(base, task.x_train, 4, 1.0, settings, lambda e: torch.arange(len(task.y_train)))
    inits = ev.Inits(base, fit, fit, torch.Generator().manual_seed(0), 4)
    assert ev.adapters("eva", inits)[1].lora_b.abs().max() == 0  # B = 0: the gradient is all there is
    eva = ev.initial_b_gradient_norm(ev.adapters("eva", inits), task)
    kaiming = ev.initial_b_gradient_norm(ev.adapters("random", inits), task)
    rng = np.random.default_rng(1)
    orthonormal = []
    for _ in range(10):
        layers = ev.adapters("eva", inits)
        for layer in layers:
            a = _orthonormal_rows(4, layer.lora_a.shape[1], rng)
            layer.lora_a.data = torch.from_numpy(a).float()
        orthonormal.append(ev.initial_b_gradient_norm(layers, task))
    assert eva > 2.0 * max(orthonormal) and eva > 2.0 * kaiming


@pytest.mark.parametrize("method", ev.METHODS)
def test_every_initialisation_leaves_the_pretrained_function_unchanged(setup, exact_fit, method):
    base, task = setup
    fit = exact_fit
    layers = ev.adapters(method, ev.Inits(base, fit, fit, torch.Generator().manual_seed(0), 4))
    with torch.no_grad():
        torch.testing.assert_close(
            ev.logits(layers, task.x_test), ev.logits(base, task.x_test), atol=1e-4, rtol=0
        )


def test_redistribution_keeps_the_global_top_ratios_within_rho_r_per_layer():
    rng = np.random.default_rng(5)
    ratios = [np.sort(rng.random(8))[::-1] * scale for scale in (1.0, 0.3, 0.05)]
    ranks = ev.redistribute(ratios, 12)
    pooled = sorted(((v, layer) for layer, r in enumerate(ratios) for v in r), reverse=True)[:12]
    assert ranks == [sum(1 for _, layer in pooled if layer == k) for k in range(3)]
    assert sum(ranks) == 12 and max(ranks) <= 8
    assert ev.redistribute([r[:4] for r in ratios], 12) == [4, 4, 4]  # ρ = 1: every layer keeps r


def test_study_runs_in_the_harness_at_reduced_size(tmp_path):
    overrides = ["study.seeds=[0]", "study.hidden=32", "study.pretrain_epochs=3", "study.steps=20"]
    result = flsim.run(SCENARIO, overrides, run_dir=tmp_path / "run")
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["status"] == "completed"
    medians = summary["results"]["medians"]
    assert medians["initial_grad_b_norm_eva"] > medians["initial_grad_b_norm_random"]
    assert sum(summary["results"]["redistributed_ranks"][0]) == 12
    frame = flsim.load_runs(result.run_dir)
    assert sorted(frame["method"].unique()) == sorted(ev.METHODS)


@pytest.mark.parametrize(("key", "value"), [("rank", 0), ("tau", 1.5), ("rho", 0.5), ("stepz", 3)])
def test_a_malformed_study_parameter_names_its_key(key, value):
    with pytest.raises(ConfigErrors, match=rf"study\.{key}"):
        flsim.run(SCENARIO, [f"study.{key}={value}"])
