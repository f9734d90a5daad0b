"""Study 20 (upsample or upweight): the expected-gradient identity and the variance closed form.

* Both samplers' exact expected gradients equal ∇ Σ_i p_i L_i computed by torch autograd, and a
  wrong scalarization weight (q_i/p_i instead of p_i/q_i) breaks the identity.
* The samplers draw what they claim: domain frequencies p under temperature sampling, weights
  p_i/q_i under scalarization, and Monte Carlo means of their batch gradients match the identity.
* The closed-form batch variance equals an explicit enumeration over examples, matches the
  measured variance within its sampling error, and is lower for temperature sampling at τ > 1.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import flsim
from flsim.config.errors import ConfigErrors
from flsim.studies.upsample_upweight import (
    batch_gradient,
    draw_batch,
    exact_batch_variance,
    expected_gradient_scalarized,
    expected_gradient_temperature,
    make_domains,
    measured_batch_variance,
    steps_to_reach,
    temperature_distribution,
    weighted_gradient,
)

SIZES = [400, 100, 20, 5]


def _data(seed: int = 0):
    return make_domains(np.random.default_rng(seed), SIZES, 4, 3, 50)


def _theta(data, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((1 + len(SIZES), data.x.shape[1], data.classes)) * 0.5


def _autograd_balanced_gradient(theta: np.ndarray, data, p: np.ndarray) -> np.ndarray:
    """∇ Σ_i p_i L_i by torch autograd, L_i the mean cross-entropy of domain i."""
    params = torch.tensor(theta, requires_grad=True)
    x, y, dom = torch.tensor(data.x), torch.tensor(data.y), torch.tensor(data.domain)
    logits = torch.einsum("nd,ndc->nc", x, params[0][None] + params[1 + dom])
    losses = torch.nn.functional.cross_entropy(logits, y, reduction="none")
    objective = sum(p[k] * losses[dom == k].mean() for k in range(len(SIZES)))
    (grad,) = torch.autograd.grad(objective, params)
    return grad.numpy()


def test_temperature_distribution():
    sizes = np.array(SIZES, float)
    np.testing.assert_allclose(temperature_distribution(sizes, 1.0), sizes / sizes.sum(), rtol=1e-14)
    np.testing.assert_allclose(
        temperature_distribution(sizes, 3.0), sizes ** (1 / 3) / (sizes ** (1 / 3)).sum()
    )
    np.testing.assert_allclose(temperature_distribution(sizes, 1e6), 0.25, rtol=1e-5)


@pytest.mark.parametrize("tau", [1.0, 2.0, 5.0, 100.0])
def test_both_expected_gradients_equal_the_autograd_gradient_of_the_balanced_loss(tau):
    data = _data()
    theta = _theta(data)
    p = temperature_distribution(data.sizes, tau)
    reference = _autograd_balanced_gradient(theta, data, p)
    upsampled = expected_gradient_temperature(theta, data, p)
    upweighted = expected_gradient_scalarized(theta, data, p / data.natural)
    np.testing.assert_allclose(upsampled, reference, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(upweighted, reference, rtol=1e-10, atol=1e-13)
    assert np.abs(upsampled - upweighted).max() < 1e-12


def test_a_wrong_scalarization_weight_breaks_the_identity():
    data = _data()
    theta = _theta(data)
    p = temperature_distribution(data.sizes, 5.0)
    upsampled = expected_gradient_temperature(theta, data, p)
    wrong = expected_gradient_scalarized(theta, data, data.natural / p)  # q_i/p_i
    unweighted = expected_gradient_scalarized(theta, data, np.ones_like(p))  # natural sampling, no weights
    for variant in (wrong, unweighted):
        assert np.abs(variant - upsampled).max() > 1e-2 * np.abs(upsampled).max()


def test_samplers_draw_domains_and_weights_as_specified():
    data = _data()
    p = temperature_distribution(data.sizes, 5.0)
    rng = np.random.default_rng(7)
    index, weights = draw_batch(rng, data, p, 200_000, upweight=False)
    freq = np.bincount(data.domain[index], minlength=len(SIZES)) / len(index)
    assert np.all(np.abs(freq - p) < 5 * np.sqrt(p * (1 - p) / len(index)))
    np.testing.assert_allclose(weights, 1 / 200_000)
    within = index[data.domain[index] == 3] - sum(SIZES[:3])  # uniform over the 5 examples of domain 3
    assert set(within) == set(range(5))
    index, weights = draw_batch(rng, data, p, 1000, upweight=True)
    np.testing.assert_allclose(weights * 1000, (p / data.natural)[data.domain[index]], rtol=1e-14)


@pytest.mark.parametrize("upweight", [False, True])
def test_monte_carlo_mean_of_batch_gradients_matches_the_identity(upweight):
    data = _data()
    theta = _theta(data)
    p = temperature_distribution(data.sizes, 5.0)
    rng = np.random.default_rng(3)
    grads = np.stack(
        [batch_gradient(theta, data, *draw_batch(rng, data, p, 16, upweight)) for _ in range(4000)]
    )
    stderr = grads.std(axis=0) / np.sqrt(len(grads))
    expected = expected_gradient_temperature(theta, data, p)
    assert np.all(np.abs(grads.mean(axis=0) - expected) < 5 * stderr + 1e-12)


def _enumerated_variance(theta, data, p, batch, upweight) -> float:
    """Var of the batch gradient from explicit per-example gradients and draw probabilities."""
    n = len(data.y)
    per_example = np.stack(
        [
            weighted_gradient(theta, data.x[j : j + 1], data.y[j : j + 1], data.domain[j : j + 1], np.ones(1))
            for j in range(n)
        ]
    ).reshape(n, -1)
    dom = data.domain
    prob = np.full(n, 1 / n) if upweight else p[dom] / data.sizes[dom]
    weight = (p / data.natural)[dom] if upweight else np.ones(n)
    draws = per_example * weight[:, None]
    mean = prob @ draws
    return float((prob @ (draws**2).sum(axis=1) - mean @ mean) / batch)


@pytest.mark.parametrize("tau", [1.0, 3.0, 20.0])
def test_closed_form_variance_equals_enumeration_and_lower_for_temperature(tau):
    data = _data()
    theta = _theta(data)
    p = temperature_distribution(data.sizes, tau)
    exact = {u: exact_batch_variance(theta, data, p, 8, u) for u in (False, True)}
    for upweight, value in exact.items():
        assert value == pytest.approx(_enumerated_variance(theta, data, p, 8, upweight), rel=1e-10)
    if tau == 1.0:
        assert exact[False] == pytest.approx(exact[True], rel=1e-12)  # p = q: the samplers coincide
    else:
        assert exact[False] < exact[True]


@pytest.mark.parametrize("upweight", [False, True])
def test_measured_variance_matches_the_closed_form(upweight):
    data = _data()
    theta = _theta(data)
    p = temperature_distribution(data.sizes, 3.0)
    measured = measured_batch_variance(np.random.default_rng(5), theta, data, p, 8, 6000, upweight)
    assert measured == pytest.approx(exact_batch_variance(theta, data, p, 8, upweight), rel=0.1)


def test_steps_to_reach_interpolates_and_reports_never():
    curve = np.array([2.0, 1.5, 1.0, 0.8])
    assert steps_to_reach([0, 10, 20, 30], curve, 1.25) == pytest.approx(15.0)
    assert steps_to_reach([0, 10, 20, 30], curve, 0.5) == float("inf")


def test_reduced_study_runs_in_the_harness(tmp_path):
    overrides = ["study.steps=300", "study.seeds=[0]", "study.variance_draws=200", "study.taus=[1,5]"]
    result = flsim.run("scenarios/studies/upsample_upweight.yaml", overrides, run_dir=tmp_path / "run")
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["criteria"]["full_batch_gradient_gap"]["pass"] is True
    assert set(summary["results"]["final_val_loss"]) == {"tau=1", "tau=5", "scalarized tau=5", "cooldown"}
    frame = flsim.load_runs(result.run_dir)
    assert set(frame["figure"].dropna()) == {"validation", "variance"}


@pytest.mark.parametrize(
    ("key", "value"), [("taus", [5, 1]), ("batch", 0), ("sizes", [100, 0]), ("lr", -1.0), ("sizez", [1, 2])]
)
def test_a_malformed_study_parameter_names_its_key(key, value):
    with pytest.raises(ConfigErrors, match=rf"study\.{key}"):
        flsim.run({"kind": "study", "study": {"name": "upsample_upweight", key: value}})
