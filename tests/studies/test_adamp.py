"""Study 16 (AdamP/SGDP): the scale-invariance oracle and the study in the harness.

Oracle (the specification's part (d)): for a weight whose rows feed a batch norm,
⟨w, ∇w⟩ = 0, so one plain SGD step grows ‖w‖² by exactly η²‖g‖². The checks use float64 and
batch norms whose ε is 1e-30, below float64 resolution next to the batch variances (the
default ε = 1e-5 breaks the invariance at relative order ε/Var; a large ε is shown to break
it).
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import flsim
from flsim.config.errors import ConfigErrors
from flsim.optim import SGDP, AdamP
from flsim.studies.adamp import bn_mlp, scale_invariant_weights

SCENARIO = "scenarios/studies/adamp.yaml"


def _network(bn_eps: float = 1e-30) -> nn.Sequential:
    """The study's BN MLP in float64, with the batch norms' ε set to ``bn_eps``."""
    net = bn_mlp(8, 16, 2, 4, torch.Generator().manual_seed(0)).double()
    for module in net:
        if isinstance(module, nn.BatchNorm1d):
            module.eps = bn_eps
    return net


def _batch(n: int = 48) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(n, 8, generator=gen, dtype=torch.float64), torch.randint(0, 4, (n,), generator=gen)


def _gradients(net: nn.Module) -> None:
    net.zero_grad()
    x, y = _batch()
    nn.functional.cross_entropy(net(x), y).backward()


def _row_cosines(weight: torch.Tensor) -> torch.Tensor:
    w, g = weight.detach(), weight.grad
    return ((w * g).sum(1) / (w.norm(dim=1) * g.norm(dim=1))).abs()


def test_gradient_is_orthogonal_to_every_bn_preceded_row():
    net = _network()
    _gradients(net)
    invariant = scale_invariant_weights(net)
    assert len(invariant) == 2
    for weight in invariant:
        assert float(_row_cosines(weight).max()) < 1e-6
    # the output layer is not scale-invariant: the same measurement is far from zero there
    assert float(_row_cosines(net[-1].weight).max()) > 1e-2


def test_batch_norm_epsilon_breaks_the_invariance_at_its_own_scale():
    net = _network(bn_eps=1e-2)
    _gradients(net)
    assert float(_row_cosines(scale_invariant_weights(net)[0]).max()) > 1e-6


def test_plain_sgd_grows_the_squared_norm_by_exactly_lr_squared_grad_squared():
    net, lr = _network(), 0.5
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    invariant = scale_invariant_weights(net)
    for _ in range(20):
        _gradients(net)
        before = [w.detach().pow(2).sum(1) for w in invariant]
        grad_sq = [w.grad.pow(2).sum(1) for w in invariant]
        optimizer.step()
        for weight, b, g2 in zip(invariant, before, grad_sq, strict=True):
            after = weight.detach().pow(2).sum(1)
            torch.testing.assert_close(after, b + lr**2 * g2, rtol=1e-12, atol=1e-15)


def _radial_excess(opt_class: type[torch.optim.Optimizer]) -> float:
    """max over 20 heavy-ball steps of |‖w + Δ‖² − ‖w‖² − ‖Δ‖²| = 2|⟨w, Δ⟩| on a BN-preceded weight."""
    net = _network()
    optimizer = opt_class(net.parameters(), lr=0.5, momentum=0.9)
    weight = scale_invariant_weights(net)[0]
    excess = 0.0
    for _ in range(20):
        _gradients(net)
        before = weight.detach().clone()
        optimizer.step()
        step = weight.detach() - before
        growth = weight.detach().pow(2).sum() - before.pow(2).sum()
        excess = max(excess, float((growth - step.pow(2).sum()).abs()))
    return excess


def test_momentum_breaks_the_identity_and_sgdp_restores_it():
    """Heavy-ball SGD adds a radial component (the paper's premature norm growth); SGDP removes it."""
    assert _radial_excess(SGDP) < 1e-12  # Δ ⟂ w, so ‖w + Δ‖² = ‖w‖² + ‖Δ‖²
    assert _radial_excess(torch.optim.SGD) > 1e-3


def test_a_wrong_projection_breaks_the_identity(monkeypatch):
    """Removing (w·p)w with an unnormalised w (a plausible slip) leaves a radial part: caught."""
    import flsim.optim.adamp as adamp_module

    def unnormalised(weight, update, per_channel, eps):
        w, p = adamp_module._flat(weight, per_channel), adamp_module._flat(update, per_channel)
        return (p - w * (w * p).sum(dim=1, keepdim=True)).reshape(update.shape)

    monkeypatch.setattr(adamp_module, "remove_radial", unnormalised)
    assert _radial_excess(SGDP) > 1e-3


def test_projection_fires_on_every_step_of_bn_rows_only():
    net = _network(bn_eps=1e-5)  # the default batch norm, as in the study
    optimizer = AdamP(net.parameters(), lr=1e-2)
    for _ in range(30):
        _gradients(net)
        optimizer.step()
    invariant = {id(w) for w in scale_invariant_weights(net)}
    for p in net.parameters():
        assert optimizer.state[p]["projected_steps"] == (30 if id(p) in invariant else 0), p.shape


@pytest.mark.parametrize("opt_class", [AdamP, SGDP])
def test_projection_never_fires_on_a_weight_with_a_radial_gradient(opt_class):
    weight, bias, target = _outward_quadratic()
    optimizer = opt_class([weight, bias], lr=1e-2)
    for _ in range(50):
        optimizer.zero_grad()
        (0.5 * (torch.cat([weight.flatten(), bias]) - target).pow(2).sum()).backward()
        optimizer.step()
    assert optimizer.state[weight]["projected_steps"] == 0 and optimizer.state[weight]["step"] == 50


def _outward_quadratic() -> tuple[nn.Parameter, nn.Parameter, torch.Tensor]:
    """½‖W − 3W₀‖² + ½‖b − 3b₀‖²: the gradient stays anti-parallel to W, so |cos| ≈ 1 throughout."""
    gen = torch.Generator().manual_seed(4)
    weight = nn.Parameter(torch.randn(6, 8, generator=gen, dtype=torch.float64))
    bias = nn.Parameter(torch.randn(6, generator=gen, dtype=torch.float64))
    return weight, bias, 3 * torch.cat([weight.detach().flatten(), bias.detach()])


ADAM = torch.optim.Adam
ADAMW = torch.optim.AdamW
SGD = torch.optim.SGD


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (lambda p: AdamP(p, lr=1e-2), lambda p: ADAM(p, lr=1e-2)),
        (lambda p: AdamP(p, lr=1e-2, weight_decay=0.1), lambda p: ADAMW(p, lr=1e-2, weight_decay=0.1)),
        (lambda p: SGDP(p, lr=1e-2, momentum=0.9), lambda p: SGD(p, lr=1e-2, momentum=0.9)),
        (
            lambda p: SGDP(p, lr=1e-2, momentum=0.9, nesterov=True),
            lambda p: SGD(p, lr=1e-2, momentum=0.9, nesterov=True),
        ),
    ],
)
def test_without_scale_invariance_adamp_is_adam_step_for_step(ours, theirs):
    pairs = [_outward_quadratic(), _outward_quadratic()]
    mine = ours([pairs[0][0], pairs[0][1]])
    reference = theirs([pairs[1][0], pairs[1][1]])
    for _ in range(50):
        for (weight, bias, target), optimizer in zip(pairs, (mine, reference), strict=True):
            optimizer.zero_grad()
            (0.5 * (torch.cat([weight.flatten(), bias]) - target).pow(2).sum()).backward()
            optimizer.step()
        for a, b in zip(pairs[0][:2], pairs[1][:2], strict=True):
            torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-13)
    assert all(s["projected_steps"] == 0 for s in mine.state.values())


def test_study_runs_in_the_harness_at_reduced_size(tmp_path):
    overrides = ["study.seeds=[0]", "study.epochs=2", "study.hidden=32"]
    result = flsim.run(SCENARIO, overrides, run_dir=tmp_path / "run")
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["status"] == "completed"
    medians = summary["results"]["medians"]
    assert medians["norm_ratio_AdamP"] >= 1.0  # the projected update only ever adds ‖Δ‖²
    assert medians["projected_fraction_bn_AdamP"] == 1.0
    gate = summary["criteria"]["norm_growth_adamp_over_adam"]
    expected = (medians["norm_ratio_AdamP"] - 1) / (medians["norm_ratio_Adam"] - 1)
    assert gate["value"] == pytest.approx(expected) and gate["gate"] is True
    frame = flsim.load_runs(result.run_dir)
    assert sorted(frame["optimizer"].unique()) == ["Adam", "AdamP", "SGD", "SGDP"]
    assert len(frame) == 4 * 2


@pytest.mark.parametrize(("key", "value"), [("epochs", 0), ("delta", -0.1), ("seeds", "[-1]"), ("epochz", 3)])
def test_a_malformed_study_parameter_names_its_key(key, value):
    with pytest.raises(ConfigErrors, match=rf"study\.{key}"):
        flsim.run(SCENARIO, [f"study.{key}={value}"])
