"""sampling: temperature / importance / dpp: the mathematics, the plumbing, validation, resume.

* Temperature sampling and importance weighting give the same expected server step
  x + Σ_k p_k Δ_k: exact enumeration of every draw sequence on full-batch linreg, through the
  real client updates and FedAvg's aggregate.
* DPP inclusion probabilities match the marginal kernel K = αL(αL + I)⁻¹ (and the k-DPP's
  exact enumeration), over many draws, within a bound of five binomial standard errors.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

import flsim
from flsim.algorithms.selection import (
    DppSampler,
    draw_weights,
    label_histograms,
    log_elementary_symmetric,
    rbf_kernel,
    temperature_distribution,
)
from flsim.backends.local import LocalBackend
from flsim.cli import main
from flsim.config.errors import ConfigError, ConfigErrors
from flsim.engine.client_selection import ClientSelector, Selection
from flsim.engine.modes import driver_class
from flsim.engine.simulation import RoundSimulation
from flsim.progress import ProgressReporter
from flsim.results.writer import RunWriter
from flsim.scenario import load_scenario
from flsim.tasks import build_task
from flsim.tasks.base import Shard
from tests.builders import metrics_without_wall_time, run_until_crash, tiny_digits, tiny_linreg

COOL = {"to": 1, "rounds": 5}
SIZES = [20, 10, 4, 2]  # unequal client sizes, so p (τ = 2) differs from q and from uniform
M = 3  # draws a round


def _skewed_linreg(sampling: dict, tmp_path) -> RoundSimulation:
    """Full-batch linreg on 4 clients of sizes SIZES (the shards cut to length), float64."""
    raw = tiny_linreg(
        task={"num_clients": 4},
        algorithm={"name": "fedavg", "lr": 0.05, "local_steps": 3, "batch_size": "full"},
        clients_per_round=M,
        sampling=sampling,
    )
    scenario = load_scenario(raw)
    task = build_task(scenario.task, scenario.seed)
    task.clients = [Shard(c.x[:n], c.y[:n]) for c, n in zip(task.clients, SIZES, strict=True)]
    backend = LocalBackend(scenario, task)
    backend.start()
    return driver_class(scenario)(scenario, task, backend, RunWriter(tmp_path), ProgressReporter("t", "off"))


def _expected_step(simulation: RoundSimulation, draw_from: np.ndarray, target: np.ndarray) -> torch.Tensor:
    """E[x⁺] over every ordered sequence of M draws from ``draw_from``, through FedAvg's aggregate."""
    server = simulation.server_role
    x0 = server.export_state()["server"]["x"]
    message, _ = server.broadcast(0, list(range(4)))
    replies = {r.client: r for r in simulation.backend.run_clients(message, list(range(4)), 0)}
    mean = torch.zeros_like(x0)
    for sequence in itertools.product(range(4), repeat=M):
        probability = float(np.prod(draw_from[list(sequence)]))
        selection = Selection(sorted(set(sequence)), draw_weights(np.array(sequence), draw_from, target))
        chosen = selection.weigh([replies[k] for k in selection.clients])
        x_new = simulation.algorithm.aggregate({"x": x0}, chosen, 0)["x"]
        mean += probability * x_new
    return mean


def test_temperature_and_importance_have_the_same_expected_update(tmp_path):
    simulation = _skewed_linreg({"kind": "temperature", "tau": 2.0}, tmp_path)
    sizes = np.array(SIZES, dtype=np.float64)
    p, q = temperature_distribution(sizes, 2.0), sizes / sizes.sum()
    np.testing.assert_allclose(p, np.sqrt(sizes) / np.sqrt(sizes).sum(), rtol=1e-14)
    upsampled = _expected_step(simulation, p, p)
    upweighted = _expected_step(simulation, q, p)
    # Both equal x + Σ p_k Δ_k, Δ_k the client's full-batch local update.
    x0 = simulation.server_role.export_state()["server"]["x"]
    message, _ = simulation.server_role.broadcast(0, [0, 1, 2, 3])
    deltas = [r.message["delta"] for r in simulation.backend.run_clients(message, [0, 1, 2, 3], 0)]
    reference = x0 + sum(float(pk) * d for pk, d in zip(p, deltas, strict=True))
    torch.testing.assert_close(upsampled, reference, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(upweighted, reference, rtol=1e-12, atol=1e-12)
    natural = x0 + sum(float(qk) * d for qk, d in zip(q, deltas, strict=True))
    assert float((natural - reference).norm()) > 1e-3  # the target mixture is not the natural one


def test_the_selector_draws_from_p_or_q_and_its_weights_average_to_p(tmp_path):
    for weighting, draws_from in (("draws", "p"), ("importance", "q")):
        simulation = _skewed_linreg({"kind": "temperature", "tau": 2.0, "weighting": weighting}, tmp_path)
        selector: ClientSelector = simulation.selector
        p, q = selector.distributions(0)
        rounds = 4000
        weights = np.zeros((rounds, 4))
        counts = np.zeros(4)
        for t in range(rounds):
            selection = selector.select(t)
            assert selection.clients == sorted(selection.weights)
            for k, w in selection.weights.items():
                weights[t, k] = w
                counts[k] += w * M / (p[k] / (p if draws_from == "p" else q)[k])
        mean, se = weights.mean(axis=0), weights.std(axis=0) / math.sqrt(rounds)
        assert np.all(np.abs(mean - p) < 5 * se), (weighting, mean, p)
        frequency = counts / (rounds * M)
        expected = p if draws_from == "p" else q
        assert np.all(np.abs(frequency - expected) < 5 * np.sqrt(expected * (1 - expected) / (rounds * M)))


def test_a_round_aggregates_with_the_selection_weights(tmp_path):
    simulation = _skewed_linreg({"kind": "temperature", "tau": 2.0, "weighting": "importance"}, tmp_path)
    x0 = simulation.server_role.export_state()["server"]["x"].clone()
    selection = simulation.selector.select(0)
    replies = simulation.run_round(0)
    assert [r.client for r in replies] == selection.clients
    step = sum(selection.weights[r.client] * r.message["delta"] for r in replies)
    torch.testing.assert_close(simulation.server_role.export_state()["server"]["x"], x0 + step)
    assert abs(sum(selection.weights.values()) - 1.0) > 1e-6  # importance weights: one on average only


def test_cooldown_schedule():
    scenario = load_scenario(
        tiny_linreg(sampling={"kind": "temperature", "cooldown": {"from": 5, "to": 1, "rounds": 4}})
    )
    assert [scenario.sampling.temperature(t) for t in (0, 1, 2, 4, 9)] == [5.0, 4.0, 3.0, 1.0, 1.0]
    assert load_scenario(tiny_linreg(sampling={"kind": "temperature"})).sampling.temperature(3) == 1.0


# --------------------------------------------------------------------------- DPP


def _small_kernel() -> np.ndarray:
    """An RBF kernel over 6 label histograms: two near-duplicate pairs and two loners."""
    labels = [
        np.array(y)
        for y in ([0] * 9 + [1], [0] * 8 + [1] * 2, [2] * 10, [2] * 9 + [3], [4] * 5, [1] * 5 + [3] * 5)
    ]
    return rbf_kernel(label_histograms(labels, 5), None)


def _binomial_bound(p: np.ndarray, draws: int) -> np.ndarray:
    return 5 * np.sqrt(p * (1 - p) / draws) + 1e-12


def test_dpp_inclusion_probabilities_match_the_marginal_kernel():
    kernel = _small_kernel()
    sampler = DppSampler(kernel, k=2, fixed_size=False)
    scaled = sampler.alpha * kernel
    reference = scaled @ np.linalg.inv(scaled + np.eye(6))  # K = αL(αL + I)⁻¹, computed directly
    np.testing.assert_allclose(sampler.marginal_kernel(), reference, atol=1e-10)
    assert np.trace(reference) == pytest.approx(2.0, abs=1e-9)  # α makes the mean size k
    # Exact enumeration: P(S) = det(αL_S) / det(αL + I) gives the same marginals.
    norm = np.linalg.det(scaled + np.eye(6))
    exact = np.zeros(6)
    for size in range(1, 7):
        for subset in itertools.combinations(range(6), size):
            exact[list(subset)] += np.linalg.det(scaled[np.ix_(subset, subset)]) / norm
    np.testing.assert_allclose(exact, np.diag(reference), atol=1e-10)
    draws = 6000
    rng = np.random.default_rng(0)
    counts, together = np.zeros(6), 0
    for _ in range(draws):
        chosen = sampler.draw(rng)
        counts[chosen] += 1
        together += 0 in chosen and 1 in chosen
    marginal = np.diag(reference)
    assert np.all(np.abs(counts / draws - marginal) < _binomial_bound(marginal, draws))
    pair = reference[0, 0] * reference[1, 1] - reference[0, 1] ** 2  # P({0, 1} ⊆ S) = det(K_{01})
    assert abs(together / draws - pair) < _binomial_bound(np.array(pair), draws)
    assert pair < 0.2 * reference[0, 0] * reference[1, 1]  # near-duplicates repel


def test_k_dpp_draws_k_clients_with_the_exact_marginals():
    kernel, k = _small_kernel(), 3
    subsets = list(itertools.combinations(range(6), k))
    dets = np.array([np.linalg.det(kernel[np.ix_(s, s)]) for s in subsets])
    eigenvalues = np.linalg.eigvalsh(kernel)
    assert math.exp(log_elementary_symmetric(eigenvalues, k)[k, 6]) == pytest.approx(dets.sum(), rel=1e-9)
    marginal = np.zeros(6)
    for s, d in zip(subsets, dets, strict=True):
        marginal[list(s)] += d / dets.sum()
    sampler = DppSampler(kernel, k=k, fixed_size=True)
    rng = np.random.default_rng(1)
    draws = 6000
    counts = np.zeros(6)
    for _ in range(draws):
        chosen = sampler.draw(rng)
        assert len(chosen) == k == len(set(chosen))
        counts[chosen] += 1
    assert np.all(np.abs(counts / draws - marginal) < _binomial_bound(marginal, draws))


def test_dpp_selection_on_digits_is_seeded_and_diverse():
    scenario = load_scenario(
        tiny_digits(
            task={"num_clients": 30, "partition": {"kind": "dirichlet", "alpha": 0.1}}, clients_per_round=5
        )
    )
    task = build_task(scenario.task, scenario.seed)
    dpp = ClientSelector(
        load_scenario({**scenario.model_dump(mode="json"), "sampling": {"kind": "dpp"}}), task
    )
    uniform = ClientSelector(scenario, task)
    picks = [dpp.select(t).clients for t in range(200)]
    assert all(len(p) == 5 for p in picks) and len({tuple(p) for p in picks}) > 100
    assert picks == [dpp.select(t).clients for t in range(200)]
    histograms = label_histograms([np.asarray(c.y) for c in task.clients], 10)

    def dominant_labels(clients: list[int]) -> int:  # distinct majority labels in the round
        return len(set(histograms[clients].argmax(axis=1).tolist()))

    def spread(clients: list[int]) -> float:  # mean pairwise distance of the histograms
        h = histograms[clients]
        d = np.sqrt(((h[:, None] - h[None]) ** 2).sum(axis=-1))
        return float(d[np.triu_indices(len(clients), 1)].mean())

    uniform_picks = [uniform.select(t).clients for t in range(200)]
    # Measured: 4.6 vs 4.1 distinct majority labels among 5 clients (200 rounds, SE ≈ 0.06).
    assert (
        np.mean([dominant_labels(p) for p in picks])
        > np.mean([dominant_labels(p) for p in uniform_picks]) + 0.3
    )
    assert np.mean([spread(p) for p in picks]) > np.mean([spread(p) for p in uniform_picks]) + 0.05


# --------------------------------------------------------------------------- validation, runs


@pytest.mark.parametrize(
    ("sampling", "updates", "key"),
    [
        ({"kind": "dpp", "tau": 2}, {}, "sampling.tau"),
        ({"kind": "temperature", "features": "label_histogram"}, {}, "sampling.features"),
        ({"kind": "temperature", "tau": 2, "cooldown": COOL | {"from": 3}}, {}, "sampling.cooldown"),
        ({"kind": "temperature", "cooldown": COOL | {"from": 0}}, {}, "sampling.cooldown.from"),
        ({"kind": "temperature", "tau": 0}, {}, "sampling.tau"),
        ({"kind": "uniform"}, {}, "sampling.kind"),
        ({"kind": "temperature"}, {"algorithm": {"name": "scaffold"}}, "sampling.kind"),
        ({"kind": "dpp"}, {"algorithm": {"name": "fedbuff", "buffer_size": 2}}, "sampling.kind"),
        ({"kind": "dpp"}, {}, "sampling.features"),  # linreg has no labels
    ],
    ids=["tau-on-dpp", "features-on-temperature", "tau-and-cooldown", "cooldown-from", "tau-zero",
         "unknown-kind", "scaffold", "buffered", "regression"],
)  # fmt: skip
def test_bad_sampling_names_the_key(sampling, updates, key):
    with pytest.raises((ConfigError, ConfigErrors)) as caught:
        load_scenario(tiny_linreg(sampling=sampling, **updates))
    assert str(caught.value).startswith(key) or f"\n{key}" in str(caught.value), str(caught.value)


def test_bad_sampling_exits_2_before_any_run_directory(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    import yaml

    path.write_text(
        yaml.safe_dump(tiny_linreg(sampling={"kind": "dpp"}, output={"dir": str(tmp_path / "out")}))
    )
    assert main(["run", str(path)]) == 2
    assert "sampling.features" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_plain_words_still_work_and_are_written_back_as_words():
    scenario = load_scenario(tiny_linreg(sampling="bernoulli", clients_per_round=None, participation=0.5))
    assert scenario.sampling.kind == "bernoulli"
    assert scenario.model_dump(mode="json")["sampling"] == "bernoulli"
    again = load_scenario(
        tiny_linreg(sampling={"kind": "temperature", "cooldown": {"from": 3, "to": 1, "rounds": 2}})
    )
    assert load_scenario(again.model_dump(mode="json")) == again


@pytest.mark.parametrize(
    "sampling",
    [
        {"kind": "temperature", "cooldown": {"from": 4, "to": 1, "rounds": 4}, "weighting": "importance"},
        {"kind": "dpp"},
    ],
    ids=["temperature", "dpp"],
)
def test_runs_resume_bit_identically(tmp_path, sampling):
    raw = tiny_digits(
        task={"num_clients": 12, "partition": {"kind": "dirichlet", "alpha": 0.1}},
        sampling=sampling,
        rounds=6,
        clients_per_round=4,
        checkpoint={"every": 2},
        eval={"every": 1},
    )
    full = flsim.run(raw, run_dir=tmp_path / "full")
    run_until_crash(raw, tmp_path / "crashed", RoundSimulation, 3)
    resumed = flsim.resume(tmp_path / "crashed")
    rows = metrics_without_wall_time(resumed.run_dir)
    assert rows == metrics_without_wall_time(full.run_dir)
    plain = flsim.run({**raw, "sampling": "fixed"}, run_dir=tmp_path / "plain")
    assert metrics_without_wall_time(plain.run_dir) != rows  # the sampler changed the run
