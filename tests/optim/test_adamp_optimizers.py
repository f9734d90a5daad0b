"""AdamP and SGDP as torch optimizers: the update rule, the projection test, state and determinism.

The expected values are computed here from the paper's equations (Heo et al., ICLR 2021,
Algorithms 1-2), not read back from the optimizer under test.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from flsim.optim import SGDP, AdamP, project_if_scale_invariant


def _bn_net(seed: int = 0) -> nn.Sequential:
    """float64 Linear(no bias) → BN → ReLU → Linear: the first weight's rows are scale-invariant."""
    gen = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Linear(6, 5, bias=False), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 3)).double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64))
    return net


def _batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(32, 6, generator=gen, dtype=torch.float64), torch.randint(0, 3, (32,), generator=gen)


def _train(net: nn.Module, optimizer: torch.optim.Optimizer, steps: int) -> None:
    x, y = _batch()
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        optimizer.step()


def _reference_adamp(w, grads, lr, beta1, beta2, eps, delta, nesterov):
    """Paper Algorithm 2 in NumPy, rows of ``w`` as the channel view (the test only needs that view)."""
    w, m, v = w.copy(), np.zeros_like(w), np.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        numerator = beta1 * m + (1 - beta1) * g if nesterov else m
        p = numerator / (np.sqrt(v) / math.sqrt(1 - beta2**t) + eps)
        cos = np.abs((w * g).sum(1)) / (np.linalg.norm(w, axis=1) * np.linalg.norm(g, axis=1))
        if cos.max() < delta / math.sqrt(w.shape[1]):
            unit = w / np.linalg.norm(w, axis=1, keepdims=True)
            p = p - unit * (unit * p).sum(1, keepdims=True)
        w = w - lr / (1 - beta1**t) * p
    return w


@pytest.mark.parametrize("nesterov", [False, True])
def test_adamp_matches_the_paper_algorithm_on_a_projected_weight(nesterov):
    gen = torch.Generator().manual_seed(3)
    w0 = torch.randn(4, 7, generator=gen, dtype=torch.float64)
    weight = nn.Parameter(w0.clone())
    optimizer = AdamP([weight], lr=0.05, nesterov=nesterov)
    used = []
    for _ in range(5):  # a gradient orthogonal to each row of the current w, as for a BN-preceded weight
        g = torch.randn(4, 7, generator=gen, dtype=torch.float64)
        unit = weight.detach() / weight.detach().norm(dim=1, keepdim=True)
        weight.grad = g - unit * (unit * g).sum(1, keepdim=True)
        used.append(weight.grad.numpy().copy())
        optimizer.step()
    expected = _reference_adamp(w0.numpy(), used, 0.05, 0.9, 0.999, 1e-8, 0.1, nesterov)
    np.testing.assert_allclose(weight.detach().numpy(), expected, rtol=1e-12, atol=1e-13)
    assert optimizer.state[weight]["projected_steps"] == 5


def test_projected_sgdp_step_keeps_the_exact_norm_identity():
    """With momentum, ‖w‖² grows by exactly lr²‖Π_w(p)‖² when the update is projected."""
    net = _bn_net()
    optimizer = SGDP(net.parameters(), lr=0.3, momentum=0.9)
    weight = net[0].weight
    x, y = _batch()
    for _ in range(10):
        optimizer.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        before = weight.detach().clone()
        buf = optimizer.state[weight]["momentum_buffer"].clone() if weight in optimizer.state else 0 * before
        p = 0.9 * buf + weight.grad
        optimizer.step()
        unit = before / before.norm(dim=1, keepdim=True)
        tangential = p - unit * (unit * p).sum(1, keepdim=True)
        growth = weight.detach().pow(2).sum(1) - before.pow(2).sum(1)
        torch.testing.assert_close(growth, 0.09 * tangential.pow(2).sum(1), rtol=1e-9, atol=1e-14)
        # the paper's Algorithm 1 keeps the unprojected momentum p_t
        torch.testing.assert_close(optimizer.state[weight]["momentum_buffer"], p, rtol=0, atol=0)


def test_channel_view_is_tried_before_the_layer_view():
    w = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    update = torch.tensor([[2.0, 3.0], [5.0, 7.0]], dtype=torch.float64)
    # rows far from orthogonal to their gradient, but the whole tensor orthogonal: layer view fires
    grad = torch.tensor([[1.0, 0.0], [0.0, -1.0]], dtype=torch.float64)
    out = project_if_scale_invariant(w, grad, update, delta=0.1, eps=1e-8)
    assert out is not None
    assert float((out * w).sum()) == pytest.approx(0.0, abs=1e-12)  # orthogonal as one vector
    assert float((out[0] * w[0]).sum()) != pytest.approx(0.0, abs=1e-3)  # but not row by row
    # each row orthogonal to its gradient: the channel view fires, every row is projected
    grad = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    out = project_if_scale_invariant(w, grad, update, delta=0.1, eps=1e-8)
    torch.testing.assert_close(out, torch.tensor([[0.0, 3.0], [5.0, 0.0]], dtype=torch.float64))
    # neither: no projection; a vector is never tested
    grad = torch.tensor([[1.0, 1.0], [1.0, 1.0]], dtype=torch.float64)
    assert project_if_scale_invariant(w, grad, update, delta=0.1, eps=1e-8) is None
    assert project_if_scale_invariant(w[0], grad[0] * 0, update[0], delta=0.1, eps=1e-8) is None


def test_threshold_scales_as_delta_over_root_dim():
    """|cos| just under δ/√dim projects, just over does not (channel view, dim = 100)."""
    dim = 100
    w = torch.zeros(1, dim, dtype=torch.float64)
    w[0, 0] = 1.0
    threshold = 0.1 / math.sqrt(dim)
    for cos, fires in ((0.999 * threshold, True), (1.001 * threshold, False)):
        grad = torch.zeros(1, dim, dtype=torch.float64)
        grad[0, 0], grad[0, 1] = cos, math.sqrt(1 - cos**2)
        out = project_if_scale_invariant(w, grad, torch.ones(1, dim, dtype=torch.float64), 0.1, 1e-12)
        assert (out is not None) is fires


def test_decoupled_weight_decay_uses_wd_ratio_only_where_projected():
    matrix = nn.Parameter(torch.ones(3, 4, dtype=torch.float64))
    vector = nn.Parameter(torch.ones(4, dtype=torch.float64))
    optimizer = AdamP([matrix, vector], lr=0.1, weight_decay=0.5, wd_ratio=0.1)
    matrix.grad, vector.grad = torch.zeros_like(matrix), torch.zeros_like(vector)  # cos = 0: fires
    optimizer.step()
    torch.testing.assert_close(matrix.detach(), torch.full((3, 4), 1 - 0.1 * 0.5 * 0.1, dtype=torch.float64))
    torch.testing.assert_close(vector.detach(), torch.full((4,), 1 - 0.1 * 0.5, dtype=torch.float64))
    sgd_param = nn.Parameter(torch.ones(3, 4, dtype=torch.float64))
    sgdp = SGDP([sgd_param], lr=0.1, momentum=0.5, weight_decay=0.5, wd_ratio=0.1)
    sgd_param.grad = torch.zeros_like(sgd_param)
    sgdp.step()  # official sgdp.py: the decay is divided by (1 - momentum)
    expected = 1 - 0.1 * 0.5 * 0.1 / (1 - 0.5)
    torch.testing.assert_close(sgd_param.detach(), torch.full((3, 4), expected, dtype=torch.float64))


@pytest.mark.parametrize(
    "make",
    [lambda p: AdamP(p, lr=0.01, weight_decay=0.01), lambda p: SGDP(p, lr=0.1, momentum=0.9, nesterov=True)],
)
def test_state_dict_round_trip_resumes_bit_for_bit(make):
    straight = _bn_net()
    resumed = copy.deepcopy(straight)
    opt_straight = make(straight.parameters())
    _train(straight, opt_straight, 12)

    opt_first = make(resumed.parameters())
    _train(resumed, opt_first, 5)
    saved_state = copy.deepcopy(opt_first.state_dict())
    opt_second = make(resumed.parameters())
    opt_second.load_state_dict(saved_state)
    _train(resumed, opt_second, 7)
    for a, b in zip(straight.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)
    assert opt_second.state_dict()["state"][0]["step"] == 12


def test_two_runs_are_bitwise_identical():
    nets = [_bn_net(), _bn_net()]
    for net in nets:
        _train(net, AdamP(net.parameters(), lr=0.01), 8)
    for a, b in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
        assert torch.equal(a, b)


def test_param_groups_and_closure():
    net = _bn_net()
    x, y = _batch()
    groups = [{"params": net[0].parameters(), "lr": 0.0}, {"params": net[3].parameters()}]
    optimizer = SGDP(groups, lr=0.1, momentum=0.9)
    frozen = net[0].weight.detach().clone()

    def closure() -> float:
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(net(x), y)
        loss.backward()
        return float(loss.detach())

    loss = optimizer.step(closure)
    assert isinstance(loss, float)
    assert torch.equal(net[0].weight, frozen)  # lr 0 group untouched


@pytest.mark.parametrize(
    ("factory", "match"),
    [
        (lambda p: AdamP(p, lr=-1.0), "lr"),
        (lambda p: AdamP(p, betas=(0.9, 1.0)), "betas"),
        (lambda p: AdamP(p, eps=0.0), "eps"),
        (lambda p: AdamP(p, delta=-0.1), "delta"),
        (lambda p: AdamP(p, weight_decay=-1.0), "weight_decay"),
        (lambda p: SGDP(p, lr=0.1, momentum=1.0), "momentum"),
        (lambda p: SGDP(p, lr=0.1, nesterov=True), "nesterov"),
        (lambda p: SGDP(p, lr=0.1, wd_ratio=-0.5), "wd_ratio"),
    ],
)
def test_invalid_hyperparameters_are_rejected(factory, match):
    with pytest.raises(ValueError, match=match):
        factory([nn.Parameter(torch.zeros(2, 2))])


def test_sparse_gradients_are_rejected():
    weight = nn.Parameter(torch.zeros(3, 2))
    weight.grad = torch.zeros(3, 2).to_sparse()
    with pytest.raises(RuntimeError, match="sparse"):
        AdamP([weight]).step()
