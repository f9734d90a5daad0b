"""A lazy population gives the same metrics, bit for bit, on the embedded and Ray backends."""

from __future__ import annotations

import pytest

import flsim
from tests.builders import metrics_without_wall_time, tiny_linreg

pytestmark = pytest.mark.ray


def test_lazy_linreg_is_bit_identical_on_ray(tmp_path, ray_session):
    """2,000 clients of dim 50 are lazy by size (no patching: the actors are other processes).

    The streamed optimum's products go through torch, whose threads every host sets alike; with
    NumPy's BLAS (threaded in the driver, one thread in a worker) the optimality gap differed in
    its last bits between the two runs.
    """
    raw = tiny_linreg(
        task={"num_clients": 2000, "dataset_params": {"dim": 50, "samples_per_client": 20}},
        clients_per_round=100,
        rounds=3,
        eval={"every": 1},
        backend={"client_cache_clients": 50},
    )
    local = flsim.run(raw, run_dir=tmp_path / "local")
    ray_raw = {
        **raw,
        "backend": {"kind": "ray", "num_actors": 2, "timeout_s": 120, "client_cache_clients": 50},
    }
    remote = flsim.run(ray_raw, run_dir=tmp_path / "ray")
    assert metrics_without_wall_time(local.run_dir) == metrics_without_wall_time(remote.run_dir)
    assert "optimality_gap" in local.final


def test_lazy_synthetic_leaf_is_bit_identical_on_ray(tmp_path, ray_session):
    """5,000 synthetic_leaf clients are lazy by size: every actor draws only the clients it runs
    (plus the 20 test clients) from their own streams, and gets the driver's samples."""
    raw = {
        "name": "lazy_leaf_ray",
        "seed": 4,
        "task": {"dataset": "synthetic_leaf", "num_clients": 5000, "dataset_params": {"test_clients": 20}},
        "algorithm": {"name": "fedavg", "lr": 0.05, "local_steps": 2, "batch_size": 10},
        "rounds": 2,
        "clients_per_round": 20,
        "eval": {"every": 1, "train_loss": False},
        "backend": {"client_cache_clients": 5},
    }
    local = flsim.run(raw, run_dir=tmp_path / "local")
    ray_raw = {
        **raw,
        "backend": {"kind": "ray", "num_actors": 2, "timeout_s": 120, "client_cache_clients": 5},
    }
    remote = flsim.run(ray_raw, run_dir=tmp_path / "ray")
    assert metrics_without_wall_time(local.run_dir) == metrics_without_wall_time(remote.run_dir)
    assert local.final["test_acc"] > 0
