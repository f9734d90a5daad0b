"""Study 13 (Drop-Muon): the oracle and the study in the harness.

Oracle (the specification's part (d)): with the cut fixed at the first layer, Drop-Muon is Muon
step for step, bit for bit. With a cut s > 0 the graph really stops at layer s: the layers above
get exactly the gradients of full backpropagation, the layers below get none, and PyTorch's FLOP
counter sees exactly the matrix products the study's cost model charges.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import flsim
from flsim.config.errors import ConfigErrors
from flsim.optim import DropMuon, Muon
from flsim.studies.drop_muon import forward, layer_macs, mlp_layers, step_macs

SCENARIO = "scenarios/studies/drop_muon.yaml"
WIDTHS = [64, 32, 32, 32, 32, 10]


def _network() -> list[nn.Linear]:
    return [layer.double() for layer in mlp_layers(WIDTHS, torch.Generator().manual_seed(0))]


def _batches(steps: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(1)
    return [
        (torch.rand(24, 64, generator=gen, dtype=torch.float64), torch.randint(0, 10, (24,), generator=gen))
        for _ in range(steps)
    ]


def _train(layers: list[nn.Linear], optimizer: Muon, batches: list) -> list[list[torch.Tensor]]:
    """Train; return the weights after every step."""
    history = []
    for x, y in batches:
        cut = optimizer.sample_cut() if isinstance(optimizer, DropMuon) else 0
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(forward(layers, x, cut), y).backward()
        optimizer.step()
        history.append([layer.weight.detach().clone() for layer in layers])
    return history


def _drop_muon(layers: list[nn.Linear], probabilities: list[float] | None) -> DropMuon:
    weights = [layer.weight for layer in layers]
    return DropMuon(weights, generator=torch.Generator().manual_seed(2), probabilities=probabilities, lr=0.05)


def test_with_the_cut_at_the_first_layer_drop_muon_is_muon_bit_for_bit():
    batches = _batches(30)
    muon_layers, drop_layers = _network(), _network()
    muon = _train(muon_layers, Muon([m.weight for m in muon_layers], lr=0.05), batches)
    drop = _train(drop_layers, _drop_muon(drop_layers, [1.0, 0.0, 0.0, 0.0, 0.0]), batches)
    for step_muon, step_drop in zip(muon, drop, strict=True):
        for a, b in zip(step_muon, step_drop, strict=True):
            assert torch.equal(a, b)


def test_with_random_cuts_the_trajectories_part():
    """The comparison above can fail: uniform cuts give another trajectory from the first frozen layer on."""
    batches = _batches(10)
    muon_layers, drop_layers = _network(), _network()
    muon = _train(muon_layers, Muon([m.weight for m in muon_layers], lr=0.05), batches)
    drop = _train(drop_layers, _drop_muon(drop_layers, None), batches)
    assert not torch.equal(muon[-1][0], drop[-1][0])


@pytest.mark.parametrize("cut", [1, 2, 3, 4])
def test_the_cut_stops_backprop_and_leaves_the_gradients_above_it_exact(cut):
    layers = _network()
    x, y = _batches(1)[0]
    nn.functional.cross_entropy(forward(layers, x), y).backward()
    full = [layer.weight.grad.clone() for layer in layers]
    for layer in layers:
        layer.weight.grad = None
    nn.functional.cross_entropy(forward(layers, x, cut), y).backward()
    for index, layer in enumerate(layers):
        if index < cut:
            assert layer.weight.grad is None
        else:
            torch.testing.assert_close(layer.weight.grad, full[index], rtol=0, atol=1e-15)


def _by_hand(widths: list[int], cut: int) -> int:
    """Per-sample MACs written out: forward of every layer, weight gradient from the cut on, and the
    input gradient of every trained layer that has a trained layer below it."""
    sizes = [widths[i] * widths[i + 1] for i in range(len(widths) - 1)]
    forward_macs = sum(sizes)
    weight_grads = sum(sizes[i] for i in range(cut, len(sizes)))
    input_grads = sum(sizes[i] for i in range(cut + 1, len(sizes)))
    return forward_macs + weight_grads + input_grads


@pytest.mark.parametrize("cut", [0, 1, 2, 3, 4])
def test_the_cost_model_counts_exactly_the_matrix_products_autograd_runs(cut):
    layers, (x, y) = _network(), _batches(1)[0]
    counter = FlopCounterMode(display=False)
    with counter:
        nn.functional.cross_entropy(forward(layers, x, cut), y).backward()
    macs = counter.get_total_flops() // 2  # the counter reports 2 FLOPs per multiply-accumulate
    assert macs == len(y) * _by_hand(WIDTHS, cut) == len(y) * step_macs(layer_macs(WIDTHS), cut)


def test_study_runs_in_the_harness_at_reduced_size(tmp_path):
    overrides = ["study.seeds=[0]", "study.epochs=3", "study.hidden=32", "study.target_accuracy=25"]
    result = flsim.run(SCENARIO, overrides, run_dir=tmp_path / "run")
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["status"] == "completed"
    medians = summary["results"]["medians"]
    gate = summary["criteria"]["cost_ratio_to_target"]
    assert gate["value"] == pytest.approx(
        medians["cost_to_target_Drop-Muon"] / medians["cost_to_target_Muon"]
    )
    # Muon pays the full step every time; Drop-Muon's mean cost follows its drawn cuts
    widths = [64, 32, 32, 32, 32, 10]
    full = _by_hand(widths, 0) / sum(widths[i] * widths[i + 1] for i in range(len(widths) - 1))
    counts = summary["results"]["cut_counts"]
    steps = sum(counts)
    assert medians["total_cost_Muon"] == pytest.approx(steps * full)
    drop = sum(n * _by_hand(widths, cut) for cut, n in enumerate(counts)) / _by_hand(widths, 0)
    assert medians["total_cost_Drop-Muon"] == pytest.approx(drop * full)
    frame = flsim.load_runs(result.run_dir)
    assert sorted(frame["optimizer"].unique()) == ["Drop-Muon", "Muon"]


@pytest.mark.parametrize(("key", "value"), [("epochs", 0), ("lr", -0.1), ("seeds", "[-1]"), ("eval_evry", 3)])
def test_a_malformed_study_parameter_names_its_key(key, value):
    with pytest.raises(ConfigErrors, match=rf"study\.{key}"):
        flsim.run(SCENARIO, [f"study.{key}={value}"])
