"""The shared client optimizer (momentum, weight decay, lr decay, clipping, steps vs epochs)."""

from __future__ import annotations

import pytest
import torch

from flsim.algorithms import REGISTRY
from tests.algorithms import CENTRALIZED
from tests.builders import make_simulation, tiny_linreg

BASE = {"lr": 0.05, "local_steps": 3, "batch_size": "full"}


def _grad(shard, y):
    return shard.x.T @ (shard.x @ y - shard.y) / len(shard)


def test_momentum_is_heavy_ball_on_the_local_gradient(tmp_path):
    raw = tiny_linreg(
        algorithm={"name": "fedavg", **BASE, "momentum": 0.9, "weight_decay": 0.01},
        clients_per_round=None,
        rounds=1,
    )
    simulation = make_simulation(raw, tmp_path)
    x = simulation.server["x"].clone()
    for reply in simulation.run_round(0):
        shard = simulation.task.clients[reply.client]
        y, buffer = x.clone(), None
        for _ in range(3):
            g = _grad(shard, y) + 0.01 * y
            buffer = g if buffer is None else 0.9 * buffer + g
            y = y - 0.05 * buffer
        torch.testing.assert_close(reply.message["delta"], y - x, rtol=0, atol=1e-14)


def test_clipping_bounds_every_step(tmp_path):
    raw = tiny_linreg(
        algorithm={"name": "fedavg", **BASE, "clip_norm": 0.01, "lr": 1.0, "local_steps": 1},
        clients_per_round=None,
        rounds=1,
    )
    simulation = make_simulation(raw, tmp_path)
    x = simulation.server["x"].clone()
    for reply in simulation.run_round(0):
        g = _grad(simulation.task.clients[reply.client], x)
        assert float(g.norm()) > 0.01
        torch.testing.assert_close(reply.message["delta"], -0.01 * g / g.norm(), rtol=1e-12, atol=0)


def test_lr_decay_scales_the_local_rate_per_round(tmp_path):
    raw = tiny_linreg(
        algorithm={"name": "fedavg", **BASE, "local_steps": 1, "lr_decay": 0.5},
        clients_per_round=None,
        rounds=3,
    )
    simulation = make_simulation(raw, tmp_path)
    for round_index in range(3):
        x = simulation.server["x"].clone()
        for reply in simulation.run_round(round_index):
            g = _grad(simulation.task.clients[reply.client], x)
            torch.testing.assert_close(
                reply.message["delta"], -0.05 * 0.5**round_index * g, rtol=0, atol=1e-14
            )


OPTIONS = {
    "momentum": {"momentum": 0.5},
    "weight_decay": {"weight_decay": 0.3},
    "clip_norm": {"clip_norm": 1e-3},
    "lr_decay": {"lr_decay": 0.5},
}


@pytest.mark.parametrize("option", sorted(OPTIONS))
@pytest.mark.parametrize("name", CENTRALIZED)
def test_every_algorithm_honours_the_client_optimizer(tmp_path, name, option):
    """Each option changes the trajectory of every algorithm (none is silently ignored)."""
    base = REGISTRY[name].example_scenario(tiny_linreg(rounds=3))
    algorithm = {**base["algorithm"], "clip_norm": None, "weight_decay": 0.0, "lr_decay": 1.0}
    if name == "fedamd":
        algorithm["anchor_prob"] = 0.2
    finals = []
    for extra in ({}, OPTIONS[option]):
        simulation = make_simulation(
            {**base, "algorithm": {**algorithm, **extra}}, tmp_path / f"{option}{len(extra)}"
        )
        for round_index in range(3):
            simulation.run_round(round_index)
        finals.append(simulation.algorithm.global_model(simulation.server))
    assert not torch.allclose(finals[0], finals[1], rtol=0, atol=1e-9)


@pytest.mark.parametrize("name", CENTRALIZED)
def test_local_epochs_count_steps_for_every_algorithm(tmp_path, name):
    base = REGISTRY[name].example_scenario(tiny_linreg(rounds=1))
    algorithm = {k: v for k, v in base["algorithm"].items() if k != "local_steps"}
    algorithm.update(local_epochs=2, batch_size=8)
    if name == "fedamd":
        algorithm["anchor_prob"] = 0.0
    simulation = make_simulation({**base, "algorithm": algorithm}, tmp_path)
    replies = simulation.run_round(0)
    assert replies and all(r.local_steps == 2 * 3 for r in replies)  # 20 samples, batch 8: 3 steps/epoch
