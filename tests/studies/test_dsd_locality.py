"""Study 1 (DSD, Lahoti et al. ICLR 2024): the Bayes-rule oracle, equivariant training, the harness.

Oracle (d): the Bayes rule sign(Σ_i sinh(⟨w*, x_i⟩/σ²)) is the likelihood-ratio test of the
DSD, and on the generator's samples it scores its exact accuracy (≥ 0.975 at σ = 1/√d, see the
module docstring for why not 0.98). Generators with the classic mistakes (the signal not
multiplied by y, a wrong noise scale, a noise-free signal patch) must fail that check.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy.special import ndtr

import flsim
from flsim.config.errors import ConfigErrors
from flsim.studies.dsd_locality import (
    Net,
    bayes_predict,
    bayes_reference,
    draw_dsd,
    n90,
    train_gd,
    unit_vector,
)

SCENARIO = "scenarios/studies/dsd_locality.yaml"
K = D = 16
SIGMA = 1 / math.sqrt(D)


def _log_likelihood(x: np.ndarray, y: float, w_star: np.ndarray, sigma: float) -> np.ndarray:
    """log p(x | y) up to a y-independent constant, from the mixture density written out in full."""
    k = x.shape[1]
    squares = np.sum(x**2, axis=2)  # ‖x_j‖² per patch
    signal_fit = np.stack([np.sum((x[:, i] - y * w_star) ** 2, 1) for i in range(k)], axis=1)
    per_patch = -(signal_fit + squares.sum(1, keepdims=True) - squares) / (2 * sigma**2)
    return np.logaddexp.reduce(per_patch, axis=1) - math.log(k)


def test_the_sinh_rule_is_the_likelihood_ratio_test():
    rng = np.random.default_rng(0)
    for k, d, sigma in ((4, 3, 0.7), (16, 16, SIGMA), (5, 8, 1.3)):
        w_star = unit_vector(rng, d)
        x, _ = draw_dsd(rng, 2000, w_star, k, sigma)
        ratio = _log_likelihood(x, 1.0, w_star, sigma) - _log_likelihood(x, -1.0, w_star, sigma)
        np.testing.assert_array_equal(bayes_predict(x, w_star, sigma), np.sign(ratio))


def test_one_patch_reduces_to_the_gaussian_closed_form():
    """k = 1: the rule is sign(⟨w*, x⟩) and y + σz > 0 has probability Φ(1/σ), exactly."""
    rng = np.random.default_rng(1)
    for sigma in (0.5, 1.0, 2.0):
        exact = float(ndtr(1 / sigma))
        tolerance = 4 * math.sqrt(exact * (1 - exact) / 400_000)
        assert bayes_reference(rng, 400_000, 1, sigma) == pytest.approx(exact, abs=tolerance)
        w_star = unit_vector(rng, 6)
        x, y = draw_dsd(rng, 200_000, w_star, 1, sigma)
        assert np.mean(bayes_predict(x, w_star, sigma) == y) == pytest.approx(exact, abs=0.005)


def _bayes_check(draw, n: int = 40_000) -> tuple[float, float, float]:
    """The study's oracle on a generator: its Bayes accuracy, the reference and the tolerance."""
    rng = np.random.default_rng(2)
    w_star = unit_vector(rng, D)
    x, y = draw(rng, n, w_star, K, SIGMA)
    accuracy = float(np.mean(bayes_predict(x, w_star, SIGMA) == y))
    reference = bayes_reference(np.random.default_rng(3), 1_000_000, K, SIGMA)
    return accuracy, reference, 4 * math.sqrt(reference * (1 - reference) * (1 / n + 1 / 1_000_000))


def test_the_generator_scores_the_bayes_accuracy():
    accuracy, reference, tolerance = _bayes_check(draw_dsd)
    assert accuracy >= 0.975 and reference >= 0.975
    assert abs(accuracy - reference) <= tolerance
    assert reference < 0.98  # why the study's threshold is 0.975: the exact value is 0.9797


def _unsigned_signal(rng, n, w_star, k, sigma):
    y = rng.choice(np.array([-1.0, 1.0]), size=n)
    x = sigma * rng.standard_normal((n, k, w_star.size))
    x[np.arange(n), rng.integers(0, k, size=n)] += w_star  # the label never reaches the input
    return x, y


def _noise_free_signal(rng, n, w_star, k, sigma):
    y = rng.choice(np.array([-1.0, 1.0]), size=n)
    x = sigma * rng.standard_normal((n, k, w_star.size))
    i = rng.integers(0, k, size=n)
    x[np.arange(n), i] = y[:, None] * w_star
    return x, y


@pytest.mark.parametrize(
    "wrong",
    [
        _unsigned_signal,
        lambda rng, n, w, k, s: draw_dsd(rng, n, w, k, 2 * s),  # noise twice too large
        lambda rng, n, w, k, s: draw_dsd(rng, n, w, k, s**2),  # σ² used as the standard deviation
        _noise_free_signal,
    ],
    ids=["signal-not-times-y", "sigma-doubled", "variance-as-std", "noise-free-signal-patch"],
)
def test_a_wrong_generator_fails_the_oracle(wrong):
    accuracy, reference, tolerance = _bayes_check(wrong)
    assert accuracy < 0.975 or abs(accuracy - reference) > tolerance


# -- equivariance of the training: the premise of the paper's lower bounds ---------------------------
def _orthogonal(gen: torch.Generator, n: int) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


def _rotation(arch: str, gen: torch.Generator) -> torch.Tensor:
    """A kd×kd orthogonal U in the architecture's symmetry group (acting on the flattened input)."""
    if arch == "FCN":
        return _orthogonal(gen, K * D)
    if arch == "CNN":
        return torch.block_diag(*[_orthogonal(gen, D)] * K)
    blocks = torch.block_diag(*[_orthogonal(gen, D) for _ in range(K)])
    shuffle = torch.eye(K, dtype=torch.float64)[torch.randperm(K, generator=gen)]
    permutation = torch.kron(shuffle, torch.eye(D, dtype=torch.float64))
    return permutation @ blocks


def _rotate_init(arch: str, p: list[torch.Tensor], u: torch.Tensor) -> list[torch.Tensor]:
    """The initial weights seen through U: w ↦ Uw, with biases and readout permuted like the patches."""
    w, b, a = p
    if arch == "FCN":
        return [u @ w, b, a]
    if arch == "CNN":
        return [u[:D, :D] @ w, b, a]
    perm = [int(torch.argmax(u[i * D : (i + 1) * D].abs().sum(0)).item()) // D for i in range(K)]
    blocks = torch.stack([u[i * D : (i + 1) * D, perm[i] * D : (perm[i] + 1) * D] for i in range(K)])
    return [blocks @ w[perm], b[perm], a[perm]]


def _train_both(arch: str, optimizer: str) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(5)
    rng = np.random.default_rng(5)
    x, y = draw_dsd(rng, 64, unit_vector(rng, D), K, SIGMA)
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    net = Net(arch, K, D, 4)
    p = [t.double() for t in net.init(gen)]
    u = _rotation(arch, gen)
    x_rotated = (x.reshape(64, -1) @ u.T).reshape(64, K, D)
    outputs = []
    for inputs, start in ((x, p), (x_rotated, _rotate_init(arch, p, u))):
        if optimizer == "gd":
            trained, _ = train_gd(net, start, inputs, y, lr=0.5, momentum=0.9, steps=30)
        else:
            trained = [t.clone().requires_grad_(True) for t in start]
            adam = torch.optim.Adam(trained, lr=0.01)
            for _ in range(30):
                adam.zero_grad()
                torch.nn.functional.softplus(-y * net.forward(trained, inputs)).mean().backward()
                adam.step()
        with torch.no_grad():
            outputs.append(net.forward(trained, inputs))
    return outputs[0], outputs[1]


@pytest.mark.parametrize("arch", ["CNN", "LCN", "FCN"])
def test_gd_with_momentum_is_equivariant_under_the_architectures_symmetry(arch):
    plain, rotated = _train_both(arch, "gd")
    assert float(plain.abs().max()) > 0.1  # the network has learned something non-trivial
    torch.testing.assert_close(rotated, plain, rtol=1e-9, atol=1e-10)


def test_adam_breaks_the_equivariance():
    plain, rotated = _train_both("FCN", "adam")
    assert float((plain - rotated).abs().max()) > 1e-3


# -- n90 and the harness ---------------------------------------------------------------------------
def test_n90_is_the_first_grid_point_reaching_the_target_and_censors_at_the_next():
    sizes = [32, 64, 128]
    assert n90(sizes, [0.5, 0.91, 0.85], 0.9) == 64
    assert n90(sizes, [0.95, 0.5, 0.5], 0.9) == 32
    assert n90(sizes, [0.5, 0.6, 0.89], 0.9) == 256


def test_study_runs_in_the_harness_at_reduced_size(tmp_path):
    overrides = ["study.sample_sizes=[32,256]", "study.steps=40", "study.test_size=2000",
                 "study.reference_draws=100000"]  # fmt: skip
    result = flsim.run(SCENARIO, overrides, run_dir=tmp_path / "run")
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert set(summary["criteria"]) == {"n90_lcn_over_cnn", "n90_fcn_over_lcn", "bayes_accuracy",
                                        "bayes_minus_reference"}  # fmt: skip
    assert summary["criteria"]["bayes_accuracy"]["pass"] is True
    frame = flsim.load_runs(result.run_dir)
    assert sorted(frame["architecture"].unique()) == ["CNN", "FCN", "LCN"]
    assert len(frame) == 3 * 2
    curves = summary["results"]["per_seed"]["0"]["curves"]
    for arch, n90_value in summary["results"]["n90"].items():
        expected = n90([32, 256], curves[arch]["test_accuracy"], 0.9)
        assert n90_value == (expected if expected < 512 else None)


@pytest.mark.parametrize(
    ("key", "value"),
    [("steps", 0), ("momentum", 1.0), ("sample_sizes", "[64,32]"), ("sigma", -1), ("lr", 0), ("filterz", 3)],
)
def test_a_malformed_study_parameter_names_its_key(key, value):
    with pytest.raises(ConfigErrors, match=rf"study\.{key}"):
        flsim.run(SCENARIO, [f"study.{key}={value}"])
