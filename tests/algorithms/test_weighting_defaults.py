"""Each algorithm averages clients the way its paper and official code do (issue 21).

FedSpeed (F4) and FedAMD (M1, M5) take plain means over clients; the shared default of the
other round-based algorithms is sample-count weighting (B1). The references below are
computed here, in numpy, from the clients' uploads and the server's table, on digits with
Dirichlet shards of 119-226 samples, where the two weightings give visibly different models.
"""

from __future__ import annotations

import numpy as np
import pytest

from flsim.algorithms.base import parse_algorithm_config
from tests.builders import make_simulation, tiny_digits

#: float32 models: a plain mean of 4-8 vectors is exact to well below this.
ATOL = 1e-6
#: The two weightings must differ by much more than ATOL, or the tests could not fail.
SEPARATION = 1e-4


def _vector(tensor) -> np.ndarray:
    return tensor.detach().numpy().astype(np.float64)


def _weighted(rows: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    return (weights[:, None] * np.stack(rows)).sum(axis=0) / weights.sum()


@pytest.mark.parametrize(
    ("name", "paper"), [("fedspeed", "uniform"), ("fedamd", "uniform"), ("fedavg", "samples")]
)
def test_default_weighting_is_the_papers_and_stays_overridable(name, paper):
    assert parse_algorithm_config({"name": name}).weighting == paper
    other = "samples" if paper == "uniform" else "uniform"
    assert parse_algorithm_config({"name": name, "weighting": other}).weighting == other


def test_fedspeed_default_round_is_the_uniform_mean_of_f4(tmp_path):
    """(F4) x^{t+1} = mean_{i∈S}(y_K^i) + (1/N) Σ_all h_i, a plain mean over S, on unequal shards."""
    algorithm = {"name": "fedspeed", "lr": 0.05, "local_steps": 2, "batch_size": 16, "rho": 0.05}
    simulation = make_simulation(tiny_digits(algorithm=algorithm), tmp_path)
    num_clients = simulation.task.num_clients
    h_sum = np.zeros_like(_vector(simulation.server["x"]))
    for round_index in range(3):
        x = _vector(simulation.server["x"])
        replies = simulation.run_round(round_index)
        y_k = [x + _vector(r.message["delta"]) for r in replies]  # the uploads are y_K − x^t
        h_sum = h_sum + sum(y - x for y in y_k)  # F3, summed over every client that trained
        uniform = np.mean(y_k, axis=0) + h_sum / num_clients
        by_samples = _weighted(y_k, np.array([r.num_samples for r in replies], dtype=np.float64))
        by_samples = by_samples + h_sum / num_clients
        assert np.abs(uniform - by_samples).max() > SEPARATION
        np.testing.assert_allclose(_vector(simulation.server["x"]), uniform, rtol=0, atol=ATOL)


def test_fedamd_default_round_is_the_uniform_mean_of_m1_and_m5(tmp_path):
    """(M1) v^t = (1/N) Σ_m v_m over the whole table; (M5) x^{t+1} = x^t − mean_miners Δ_m."""
    algorithm = {"name": "fedamd", "lr": 0.2, "local_steps": 5, "batch_size": 16, "anchor_prob": 0.3}
    simulation = make_simulation(tiny_digits(algorithm=algorithm), tmp_path)
    sizes = np.array([len(shard) for shard in simulation.task.clients], dtype=np.float64)
    checked = 0
    for round_index in range(4):
        x = _vector(simulation.server["x"])
        table = [_vector(row) for row in simulation.server["table"]]
        v = _vector(simulation.algorithm.broadcast(simulation.server, round_index)["v"])
        if round_index > 0:  # round 0's table is all of x^0's gradients after the init phase
            assert np.abs(np.mean(table, axis=0) - _weighted(table, sizes)).max() > SEPARATION
        np.testing.assert_allclose(v, np.mean(table, axis=0), rtol=0, atol=ATOL)
        replies = simulation.run_round(round_index)
        deltas = [_vector(r.message["delta"]) for r in replies if "delta" in r.message]
        if len(deltas) < 2:
            continue
        miners = np.array([r.num_samples for r in replies if "delta" in r.message], dtype=np.float64)
        assert np.abs(np.mean(deltas, axis=0) - _weighted(deltas, miners)).max() > SEPARATION
        np.testing.assert_allclose(
            _vector(simulation.server["x"]), x - np.mean(deltas, axis=0), rtol=0, atol=ATOL
        )
        checked += 1
    assert checked >= 2
