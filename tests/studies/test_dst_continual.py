"""Study 19 (continual learning with DST): the hard gates, checked independently of the study's totals.

* ERK layer densities against a hand computation for the 64-256-256 body: ε = d·ΣN/Σ(n_in + n_out)
  = d·81920/832, so d₁ = 25d/13 and d₂ = 10d/13; a layer that would exceed 1 is made dense.
* Exact per-task density: every task's final masks hold exactly round(d_l·N_l) entries, and one
  prune-and-grow update keeps that count for every growth rule.
* Zero backward transfer: with earlier tasks' entries frozen, every earlier task's test logits are
  bitwise unchanged after all later tasks; a variant that lets later tasks train shared entries
  (``isolate=False``) must change them.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import flsim
from flsim.config.errors import ConfigErrors
from flsim.studies.dst_continual import (
    BODY,
    DSTContinualParams,
    RunConfig,
    erk_densities,
    evaluate,
    layer_counts,
    prune_and_grow,
    run_sequence,
    split_tasks,
    uniform_densities,
)

SCENARIO = "scenarios/studies/dst_continual.yaml"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize(("density", "expected"), [(0.2, (5 / 13, 2 / 13)), (0.05, (1.25 / 13, 0.5 / 13))])
def test_erk_densities_match_the_hand_computation(density, expected):
    # raw scores (64 + 256)/(64·256) = 320/16384 and 512/65536; ε·(320 + 512) = d·(16384 + 65536)
    assert erk_densities(BODY, density) == pytest.approx(expected, rel=1e-12)
    d1, d2 = erk_densities(BODY, density)
    assert d1 * 16384 + d2 * 65536 == pytest.approx(density * 81920, rel=1e-12)
    assert d1 / d2 == pytest.approx(2.5, rel=1e-12)  # the smaller layer is denser
    assert uniform_densities(BODY, density) == [density, density]


def test_erk_makes_an_overfull_layer_dense_and_rebalances():
    # d = 0.6 would give the first layer 25·0.6/13 > 1: it becomes dense and the second layer takes
    # the rest of the budget, (0.6·81920 − 16384)/65536 = 0.5
    assert erk_densities(BODY, 0.6) == pytest.approx((1.0, 0.5), rel=1e-12)


def test_layer_counts_are_the_rounded_products():
    assert layer_counts(BODY, erk_densities(BODY, 0.2)) == [6302, 10082]  # 6301.54 and 10082.46
    assert layer_counts(BODY, uniform_densities(BODY, 0.05)) == [819, 3277]  # 819.2 and 3276.8


@pytest.mark.parametrize("rule", ["random", "unfired", "gradient"])
def test_prune_and_grow_keeps_the_count_and_drops_the_smallest(rule):
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(20, 30, generator=gen)
    mask = torch.zeros(600, dtype=torch.bool)
    mask[torch.randperm(600, generator=gen)[:100]] = True
    mask = mask.view(20, 30)
    fired = mask.clone()
    grad = torch.randn(20, 30, generator=gen)
    new, dropped, grown = prune_and_grow(weight, mask, 25, rule, fired, grad, gen)
    assert int(new.sum()) == 100 and len(dropped) == 25 and len(grown) == 25
    active = weight.abs().flatten()[mask.flatten()]
    assert weight.abs().flatten()[dropped].max() <= torch.sort(active).values[24]  # the 25 smallest
    if rule == "gradient":
        inactive_after_drop = grad.abs().flatten().clone()
        kept = mask.flatten().clone()
        kept[dropped] = False
        inactive_after_drop[kept] = -1
        assert set(grown.tolist()) == set(torch.topk(inactive_after_drop, 25).indices.tolist())
    if rule == "unfired":
        assert not fired.flatten()[grown].any()  # 500 never-active entries to choose from


def _sequence(isolate: bool, growth: str = "random"):
    params = DSTContinualParams(epochs=3, update_every=5, isolate=isolate)
    tasks = split_tasks(3, 0.3, np.random.default_rng(0))
    out = run_sequence(RunConfig(0.8, "ERK", growth), tasks, params, torch.Generator().manual_seed(1))
    return out, tasks


@pytest.mark.parametrize("growth", ["random", "gradient"])
def test_frozen_masks_give_exactly_zero_backward_transfer(growth):
    out, tasks = _sequence(isolate=True, growth=growth)
    acc = out.acc
    for t in range(3):
        for s in range(t):
            assert acc[t, s] == acc[s, s]
    assert out.drift == 0.0
    # the shared weights as they are now reproduce what task 0 scored right after its training
    accuracy, _ = evaluate(out.net, out.net.tasks[0], tasks[0])
    assert accuracy == acc[0, 0]


def test_letting_later_tasks_train_earlier_weights_breaks_it():
    out, _ = _sequence(isolate=False)
    assert out.drift > 1e-3  # earlier tasks' logits move: BWT is no longer exactly 0 by construction


def test_every_task_mask_has_the_exact_density():
    out, _ = _sequence(isolate=True, growth="gradient")
    counts = layer_counts(BODY, erk_densities(BODY, 0.2))
    for part in out.net.tasks:
        assert [int(m.sum()) for m in part.masks] == counts
    assert out.count_errors and max(out.count_errors) == 0
    assert sum(counts) / sum(o * i for o, i in BODY) == pytest.approx(0.2, abs=1e-4)
    used = out.net.used
    assert all(u.float().mean() < 1.0 for u in used)  # masks overlap: sharing, not exhaustion


def test_study_runs_in_the_harness_at_reduced_size(tmp_path):
    overrides = [
        "study.seeds=[0]",
        "study.growths=[random]",
        "study.sparsities=[0.8]",
        "study.tasks=2",
        "study.epochs=2",
        "study.min_task_accuracy=0.0",
    ]
    result = flsim.run(SCENARIO, overrides, run_dir=tmp_path / "run")
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["status"] == "completed"
    for gate in ("max_abs_bwt", "max_abs_logit_drift_of_earlier_tasks", "max_mask_count_error"):
        assert summary["criteria"][gate]["gate"] is True and summary["criteria"][gate]["pass"] is True
    assert summary["criteria"]["erk_minus_uniform_pt_at_80"]["gate"] is False
    frame = flsim.load_runs(result.run_dir)
    assert len(frame[frame["figure"] == "sequence"]) == 2 * 2  # 2 inits x 2 tasks


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("tasks", 6),
        ("sparsities", "[]"),
        ("inits", "[dense]"),
        ("growths", "[momentum]"),
        ("lr", 0.0),
        ("epoch", 3),
        ("sparsities", "[1.0]"),
    ],
)
def test_a_malformed_study_parameter_names_its_key(key, value):
    with pytest.raises(ConfigErrors, match=rf"study\.{key}"):
        flsim.run(SCENARIO, [f"study.{key}={value}"])
