"""Study 6 (GVM-RAFT): exact accuracies, the allocation formula, and the RAFT gradient.

* The exact accuracy p_i = π(a*_i|i) is checked against a softmax written out by hand and
  against a Monte Carlo frequency of correct answers drawn by the study's own sampler.
* The allocation n_i ∝ G_i/√(p_i + α/p_i^(β−1)) is checked against numbers worked out by hand
  for α = 1e-3, β = 2 on a five-prompt case (including the zero rules of the official code); a
  wrong exponent (α/p_i^β) or a missing square root is shown to miss them.
* The RAFT M-step is, in expectation, the gradient of (1/N)Σ_i n_i p_i(θ): checked against
  finite differences of the exact accuracies, and the score vector against finite differences of
  log π.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import flsim
from flsim.config.errors import ConfigErrors
from flsim.studies import gvm_raft as gr

SCENARIO = "scenarios/studies/gvm_raft.yaml"


def small_toy(seed: int = 3, prompts: int = 5, answers: int = 6, dim: int = 4) -> gr.Toy:
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((prompts, answers, dim))
    correct = rng.integers(0, answers, prompts)
    return gr.Toy(features, correct, rng.standard_normal(dim))


# -- exact accuracies ------------------------------------------------------------------------------
def test_exact_accuracy_is_the_softmax_written_out_by_hand():
    toy = small_toy()
    exact = gr.accuracies(toy.theta0, toy)
    for i, a in enumerate(toy.correct):
        logits = [float(np.dot(toy.theta0, toy.features[i, b])) for b in range(toy.features.shape[1])]
        expected = math.exp(logits[a]) / sum(math.exp(v) for v in logits)
        assert exact[i] == pytest.approx(expected, rel=1e-12)


def test_exact_accuracy_matches_monte_carlo_frequencies():
    toy = small_toy()
    probs = gr.policy(toy.theta0, toy.features)
    draws = 100_000
    prompts = np.repeat(np.arange(len(toy.correct)), draws)
    answers = gr.sample_answers(probs, prompts, np.random.default_rng(11))
    frequency = (answers == toy.correct[prompts]).reshape(-1, draws).mean(axis=1)
    exact = gr.accuracies(toy.theta0, toy)
    standard_error = np.sqrt(exact * (1 - exact) / draws)
    assert np.all(np.abs(frequency - exact) <= 5 * standard_error + 1e-12)
    # the whole distribution, not only the correct answer: a chi-square-like bound per cell
    counts = np.stack([np.bincount(answers[prompts == i], minlength=probs.shape[1]) for i in range(5)])
    assert np.all(np.abs(counts / draws - probs) <= 5 * np.sqrt(probs * (1 - probs) / draws) + 1e-12)


def test_the_toy_spans_the_specified_initial_accuracies():
    params = gr.GvmRaftParams(pool=2048)
    toy = gr.build_toy(params, np.random.default_rng(0))
    start = gr.accuracies(toy.theta0, toy)
    assert start.shape == (64,) and toy.features.shape == (64, 16, 32)
    assert 0.004 <= start.min() <= 0.0065 and 0.7 <= start.max() <= 0.9
    assert _realisable(toy)


def _realisable(toy: gr.Toy) -> bool:
    """Whether one shared θ ranks every prompt's correct answer first (a feasibility LP, margin 1)."""
    from scipy.optimize import linprog

    m, k, _ = toy.features.shape
    rows = [
        toy.features[i, b] - toy.features[i, toy.correct[i]]
        for i in range(m)
        for b in range(k)
        if b != toy.correct[i]
    ]
    result = linprog(
        np.zeros(toy.features.shape[2]), A_ub=np.array(rows), b_ub=-np.ones(len(rows)), bounds=(None, None)
    )
    return result.status == 0


def test_random_correct_answers_would_not_be_realisable():
    toy = gr.build_toy(gr.GvmRaftParams(pool=2048), np.random.default_rng(0))
    shuffled = gr.Toy(toy.features, np.random.default_rng(1).integers(0, 16, 64), toy.theta0)
    assert not _realisable(shuffled)  # so the teacher construction is what makes the claim reachable


# -- the allocation ----------------------------------------------------------------------------------
G = np.array([1.0, 2.0, 0.5, 3.0, 0.0])
P = np.array([0.5, 0.125, 0.0, 0.01, 0.25])
# α = 1e-3, β = 2: weight_i = G_i / sqrt(p_i + 1e-3/p_i); prompts 2 (p = 0) and 4 (G = 0) get 0.
HAND = np.array([1 / math.sqrt(0.502), 2 / math.sqrt(0.133), 0.0, 3 / math.sqrt(0.11), 0.0])
HAND = HAND / HAND.sum()


def test_allocation_matches_the_hand_computation():
    assert gr.gvm_ratios(G, P, alpha=1e-3, beta=2.0) == pytest.approx(HAND, abs=1e-14)
    # 1.41140, 5.48408 and 9.04534 over their sum 15.94082, worked out by hand
    np.testing.assert_allclose(HAND, [0.0885, 0.3440, 0.0, 0.5674, 0.0], atol=1e-4)


def test_a_wrong_exponent_or_a_missing_root_misses_the_hand_computation():
    wrong_exponent = gr.gvm_ratios(G, P, alpha=1e-3, beta=3.0)  # α/p^β instead of α/p^(β−1)
    assert np.max(np.abs(wrong_exponent - HAND)) > 0.05
    live = (G > 0) & (P > 0)
    no_root = np.zeros(5)
    no_root[live] = G[live] / (P[live] + 1e-3 / P[live])  # G/(p + α/p): the square root dropped
    assert np.max(np.abs(no_root / no_root.sum() - HAND)) > 0.01


def test_allocation_without_any_accepted_sample_falls_back_to_uniform():
    assert gr.gvm_ratios(np.zeros(4), np.zeros(4), 1e-3, 2.0) == pytest.approx(np.full(4, 0.25))


@pytest.mark.parametrize("total", [1, 7, 512, 1000])
def test_integer_sizes_keep_the_budget_and_round_to_a_neighbour(total):
    sizes = gr.integer_sizes(HAND, total)
    assert sizes.sum() == total
    assert np.all(np.abs(sizes - HAND * total) < 1.0) and np.all(sizes >= 0)


# -- the RAFT gradient ---------------------------------------------------------------------------
def finite_difference(f, theta: np.ndarray, h: float = 1e-6) -> np.ndarray:
    basis = np.eye(len(theta))
    return np.array([(f(theta + h * e) - f(theta - h * e)) / (2 * h) for e in basis])


def test_score_vectors_are_the_gradient_of_log_pi():
    toy = small_toy()
    probs = gr.policy(toy.theta0, toy.features)
    prompts, answers = np.array([0, 1, 4]), np.array([2, 5, 0])
    scores = gr.score_vectors(probs, toy.features, prompts, answers)
    for row, i, a in zip(scores, prompts, answers, strict=True):
        numeric = finite_difference(
            lambda t, i=i, a=a: math.log(gr.policy(t, toy.features)[i, a]), toy.theta0
        )
        assert row == pytest.approx(numeric, abs=1e-7)


def test_the_raft_step_is_unbiased_for_the_gradient_of_the_allocated_accuracy():
    toy = small_toy()
    sizes = np.array([3, 0, 5, 1, 7])
    probs = gr.policy(toy.theta0, toy.features)
    exact = finite_difference(lambda t: sizes @ gr.accuracies(t, toy) / sizes.sum(), toy.theta0)
    rng = np.random.default_rng(5)
    steps = np.array(
        [gr.raft_step(toy.theta0, probs, toy, sizes, 1.0, rng) - toy.theta0 for _ in range(20_000)]
    )
    error = steps.std(axis=0) / math.sqrt(len(steps))
    assert np.all(np.abs(steps.mean(axis=0) - exact) <= 5 * error)
    assert np.max(np.abs(exact)) > 10 * np.max(error)  # the check has power


def test_stage_one_estimates_acceptance_and_gradient_norm():
    toy = small_toy()
    probs = gr.policy(toy.theta0, toy.features)
    accept, norms = gr.stage_one(probs, toy, 20_000, np.random.default_rng(2))
    exact = gr.accuracies(toy.theta0, toy)
    assert accept == pytest.approx(exact, abs=5 * 0.5 / math.sqrt(20_000))
    correct_scores = gr.score_vectors(probs, toy.features, np.arange(5), toy.correct)
    # every correct sample of prompt i is the same answer, so its norm is exact whenever one is drawn
    assert norms[accept > 0] == pytest.approx(np.linalg.norm(correct_scores, axis=1)[accept > 0], rel=1e-12)


# -- the harness -------------------------------------------------------------------------------
def test_study_runs_in_the_harness_at_reduced_size(tmp_path):
    overrides = ["study.seeds=[0, 1]", "study.iterations=30", "study.pool=512", "study.learning_rate=0.5"]
    result = flsim.run(SCENARIO, overrides, run_dir=tmp_path / "run")
    summary = result.summary
    assert summary["status"] == "completed"
    assert set(summary["criteria"]) == {
        "gvm_over_uniform_samples_to_target",
        "gvm_over_uniform_iterations_to_target",
    }
    assert summary["results"]["samples_per_iteration"] == {"uniform": 512, "gvm": 512 + 64 * 8}
    frame = flsim.load_runs(result.run_dir)
    assert len(frame) == 2 * 31  # the median curve per method: the start and 30 iterations


@pytest.mark.parametrize(
    ("key", "value"), [("budget", 0), ("alpha", -1.0), ("stage1_samples", 0), ("seeds", "[]"), ("lr", 0.1)]
)
def test_a_malformed_study_parameter_names_its_key(key, value, tmp_path):
    with pytest.raises(ConfigErrors, match=rf"study\.{key}"):
        flsim.run(SCENARIO, [f"study.{key}={value}"], run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()
