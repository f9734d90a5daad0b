"""FedAvg (docs/algorithms.md B1) against reference computations."""

from __future__ import annotations

import pytest
import torch

import flsim
from tests.builders import make_simulation, tiny_digits, tiny_linreg


def _global_gradient(task, x: torch.Tensor, l2: float) -> torch.Tensor:
    """∇f for f = (1/2n)‖Ax − b‖² + (l2/2)‖x‖², computed from the pooled data directly."""
    a = torch.cat([c.x for c in task.clients])
    b = torch.cat([c.y for c in task.clients])
    return a.T @ (a @ x - b) / a.shape[0] + l2 * x


@pytest.mark.parametrize("weighting", ["samples", "uniform"])
def test_one_full_batch_step_full_participation_is_gradient_descent(tmp_path, weighting):
    raw = tiny_linreg(
        algorithm={
            "name": "fedavg",
            "lr": 0.3,
            "local_steps": 1,
            "batch_size": "full",
            "weighting": weighting,
        },
        clients_per_round=None,
        task={"dataset_params": {"l2": 0.01}},
        rounds=25,
    )
    simulation = make_simulation(raw, tmp_path)
    x = simulation.algorithm.global_model(simulation.server).clone()
    for round_index in range(25):
        simulation.run_round(round_index)
        x = x - 0.3 * _global_gradient(simulation.task, x, 0.01)
        got = simulation.algorithm.global_model(simulation.server)
        assert torch.allclose(got, x, rtol=0, atol=1e-12), f"round {round_index}"
    assert simulation.counters.grad_evals == 25 * 6


def test_fedavg_with_many_local_steps_is_not_gradient_descent(tmp_path):
    """The reference check above can fail: K > 1 local steps drift away from GD."""
    raw = tiny_linreg(
        algorithm={"name": "fedavg", "lr": 0.3, "local_steps": 5, "batch_size": "full"},
        clients_per_round=None,
        task={"dataset_params": {"heterogeneity": 2.0}},
    )
    simulation = make_simulation(raw, tmp_path)
    x = simulation.algorithm.global_model(simulation.server).clone()
    simulation.run_round(0)
    gd = x - 0.3 * _global_gradient(simulation.task, x, 0.0)
    assert not torch.allclose(simulation.algorithm.global_model(simulation.server), gd, atol=1e-6)


def test_local_epochs_count_steps_from_the_shard_size(tmp_path):
    raw = tiny_linreg(
        algorithm={"name": "fedavg", "lr": 0.05, "local_epochs": 2, "batch_size": 8},
        clients_per_round=None,
        rounds=1,
    )
    simulation = make_simulation(raw, tmp_path)
    replies = simulation.run_round(0)
    assert all(r.local_steps == 2 * 3 for r in replies)  # 20 samples, batch 8 → 3 steps/epoch


def test_bytes_and_events_are_accounted(tmp_path):
    simulation = make_simulation(tiny_linreg(rounds=2), tmp_path)
    simulation.run_round(0)
    d = simulation.task.dim
    assert simulation.counters.bytes_down == 3 * d * 8
    assert simulation.counters.bytes_up == 3 * d * 8
    assert simulation.counters.events == 6
    assert simulation.counters.virtual_time > 0


@pytest.mark.slow
def test_fedavg_learns_digits(tmp_path):
    raw = tiny_digits(
        task={"num_clients": 20, "partition": {"kind": "iid"}, "model": {"hidden": [64]}},
        algorithm={"name": "fedavg", "lr": 0.1, "local_steps": 10, "batch_size": 32},
        rounds=30,
        clients_per_round=10,
        eval={"every": 10},
    )
    result = flsim.run(raw, run_dir=tmp_path / "run")
    assert result.final["test_acc"] > 0.90
