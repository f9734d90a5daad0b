"""Muon and Drop-Muon as optimizers: the Newton–Schulz map, the update rule, state and determinism.

The coefficients (3.4445, −4.7750, 2.0315), five steps, β = 0.95, Nesterov and the shape factor
√max(1, rows/cols) are restated here from the official code (github.com/KellerJordan/Muon,
``muon.py``), not read from the module under test.
"""

from __future__ import annotations

import copy

import pytest
import torch

from flsim.optim import DropMuon, Muon, newton_schulz5

OFFICIAL = (3.4445, -4.7750, 2.0315)


def _gaussian(rows: int, cols: int, seed: int) -> torch.Tensor:
    return torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _scalar_ns5(x: torch.Tensor, coefficients: tuple[float, float, float], steps: int = 5) -> torch.Tensor:
    a, b, c = coefficients
    for _ in range(steps):
        x = a * x + b * x**3 + c * x**5
    return x


@pytest.mark.parametrize("shape", [(64, 256), (256, 64), (100, 100)])
def test_ns5_acts_on_singular_values_by_the_quintic_and_keeps_singular_vectors(shape):
    g = _gaussian(*shape, seed=1)
    u, s, vh = torch.linalg.svd(g, full_matrices=False)
    expected = u @ torch.diag(_scalar_ns5(s / (g.norm() + 1e-7), OFFICIAL)) @ vh
    torch.testing.assert_close(newton_schulz5(g), expected, rtol=0, atol=1e-10)


def _spread(rows: int, cols: int, seed: int) -> torch.Tensor:
    """A matrix with random singular vectors and singular values spread from 1 down to 0.02."""
    u = torch.linalg.qr(_gaussian(rows, cols, seed))[0]
    v = torch.linalg.qr(_gaussian(cols, cols, seed + 100))[0]
    return u @ torch.diag(torch.logspace(0.0, -1.7, cols, dtype=torch.float64)) @ v.T


@pytest.mark.parametrize("seed", range(5))
def test_ns5_pushes_every_singular_value_into_the_band_around_one(seed):
    # after normalisation σ_min/‖G‖_F ≈ 0.006, above the ≈0.0015 below which five steps fall short
    s = torch.linalg.svdvals(newton_schulz5(_spread(256, 64, seed)))
    assert float(s.min()) >= 0.68 and float(s.max()) <= 1.21
    assert float(s.max() / s.min()) < 1.8  # from a spread of 50


@pytest.mark.parametrize("wrong", [(3.4445, 4.7750, 2.0315), (1.5, -0.5, 0.0), (3.4445, -4.7750, 0.2315)])
def test_a_wrong_coefficient_leaves_the_band(wrong):
    s = torch.linalg.svdvals(newton_schulz5(_spread(256, 64, 0), coefficients=wrong))
    assert not (float(s.min()) >= 0.68 and float(s.max()) <= 1.21)


def _quadratic_problem(seed: int) -> tuple[torch.nn.Parameter, torch.nn.Parameter, list[torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    w1 = torch.nn.Parameter(torch.randn(48, 16, generator=gen, dtype=torch.float64))
    w2 = torch.nn.Parameter(torch.randn(8, 48, generator=gen, dtype=torch.float64))
    data = [torch.randn(32, n, generator=gen, dtype=torch.float64) for n in (16, 8)]
    return w1, w2, data


def _loss(w1: torch.Tensor, w2: torch.Tensor, data: list[torch.Tensor]) -> torch.Tensor:
    return 0.5 * (torch.tanh(data[0] @ w1.T) @ w2.T - data[1]).pow(2).mean()


@pytest.mark.parametrize("nesterov", [True, False])
def test_muon_step_is_the_official_rule_written_out(nesterov):
    w1, w2, data = _quadratic_problem(0)
    ref = [w1.detach().clone(), w2.detach().clone()]
    buffers = [torch.zeros_like(r) for r in ref]
    lr, beta, decay = 0.05, 0.9, 0.1
    optimizer = Muon([w1, w2], lr=lr, momentum=beta, nesterov=nesterov, weight_decay=decay)
    for _ in range(6):
        optimizer.zero_grad()
        _loss(w1, w2, data).backward()
        optimizer.step()
        rw = [r.clone().requires_grad_(True) for r in ref]
        grads = torch.autograd.grad(_loss(*rw, data), rw)
        for i, (g, r) in enumerate(zip(grads, ref, strict=True)):
            buffers[i] = beta * buffers[i] + (1 - beta) * g
            u = (1 - beta) * g + beta * buffers[i] if nesterov else buffers[i]
            scale = max(1.0, r.shape[0] / r.shape[1]) ** 0.5
            ref[i] = r * (1 - lr * decay) - lr * scale * newton_schulz5(u, coefficients=OFFICIAL)
        for mine, theirs in zip((w1, w2), ref, strict=True):
            torch.testing.assert_close(mine.detach(), theirs, rtol=0, atol=1e-12)


def test_muon_rejects_vectors():
    with pytest.raises(ValueError, match="matrices"):
        Muon([torch.nn.Parameter(torch.zeros(3))])


def _train(optimizer: Muon, weights: list[torch.nn.Parameter], data: list[torch.Tensor], steps: int) -> None:
    for _ in range(steps):
        if isinstance(optimizer, DropMuon):
            optimizer.sample_cut()
        optimizer.zero_grad()
        _loss(*weights, data).backward()
        optimizer.step()


@pytest.mark.parametrize("drop", [False, True])
def test_state_dict_round_trip_continues_identically(drop):
    w1, w2, data = _quadratic_problem(3)
    make = (lambda p, g: DropMuon(p, generator=g)) if drop else (lambda p, g: Muon(p))
    gen = torch.Generator().manual_seed(7)
    optimizer = make([w1, w2], gen)
    _train(optimizer, [w1, w2], data, 4)
    twin = [torch.nn.Parameter(w.detach().clone()) for w in (w1, w2)]
    twin_gen = torch.Generator()
    twin_gen.set_state(gen.get_state())
    resumed = make(twin, twin_gen)
    resumed.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    _train(optimizer, [w1, w2], data, 5)
    _train(resumed, twin, data, 5)
    for a, b in zip((w1, w2), twin, strict=True):
        assert torch.equal(a, b)


def test_drop_muon_draws_only_from_its_generator_and_is_reproducible():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    weights = [torch.nn.Parameter(torch.zeros(4, 4, dtype=torch.float64)) for _ in range(5)]
    optimizer = DropMuon(weights, generator=torch.Generator().manual_seed(9))
    cuts = [optimizer.sample_cut() for _ in range(2000)]
    again = DropMuon(weights, generator=torch.Generator().manual_seed(9))
    assert cuts == [again.sample_cut() for _ in range(2000)]
    assert torch.equal(before, torch.get_rng_state())
    counts = torch.bincount(torch.tensor(cuts), minlength=5).double()
    chi2 = float(((counts - 400.0) ** 2 / 400.0).sum())
    assert chi2 < 18.47  # χ²(4) 99.9% quantile: the cut is uniform on the five layers


def test_drop_muon_freezes_weights_and_momentum_below_the_cut():
    weights = list(_quadratic_problem(5)[:2])
    data = _quadratic_problem(5)[2]
    optimizer = DropMuon(weights, generator=torch.Generator().manual_seed(0))
    optimizer.set_cut(0)
    _train_once(optimizer, weights, data)  # both layers now carry momentum
    frozen_w, frozen_m = weights[0].detach().clone(), optimizer.state[weights[0]]["momentum_buffer"].clone()
    moving = weights[1].detach().clone()
    optimizer.set_cut(1)
    _train_once(optimizer, weights, data)
    assert torch.equal(weights[0], frozen_w)
    assert torch.equal(optimizer.state[weights[0]]["momentum_buffer"], frozen_m)
    assert not torch.equal(weights[1], moving)


def _train_once(optimizer: Muon, weights: list[torch.nn.Parameter], data: list[torch.Tensor]) -> None:
    optimizer.zero_grad()
    _loss(*weights, data).backward()
    optimizer.step()


@pytest.mark.parametrize("probabilities", [[1.0], [0.0, 0.0], [1.5, -0.5]])
def test_drop_muon_rejects_bad_probabilities(probabilities):
    weights = [torch.nn.Parameter(torch.zeros(2, 2)) for _ in range(2)]
    with pytest.raises(ValueError, match="probabilities"):
        DropMuon(weights, generator=torch.Generator(), probabilities=probabilities)
