"""Batched client execution is bit-identical on the embedded and Ray backends (docs/vectorized.md).

Each Ray actor stacks only its share of a round (clients ``i % actors``), so this checks that a
client's batched result does not depend on which clients share its stack or its host.
"""

from __future__ import annotations

import pytest

import flsim
from flsim.hosts.client_host import ClientHost
from flsim.hosts.node_host import NodeHost
from flsim.scenario import load_scenario
from tests.builders import metrics_without_wall_time, tiny_digits

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.mark.parametrize(
    "algorithm",
    [
        {"name": "scaffold", "lr": 0.1, "local_epochs": 1, "batch_size": 16},
        {"name": "fedspeed", "rho": 0.05, "lr": 0.1, "local_steps": 3, "batch_size": 16},
    ],
    ids=["scaffold", "fedspeed"],
)
def test_batched_rounds_are_bit_identical_on_ray(tmp_path, ray_session, algorithm):
    """Dirichlet shards (unequal sizes, so several groups a host) and stateful clients."""
    raw = tiny_digits(algorithm=algorithm, clients_per_round=6, rounds=3, backend={"vectorize": "on"})
    assert ClientHost(load_scenario(raw)).vectorized is not None
    local = flsim.run(raw, run_dir=tmp_path / "local")
    ray_raw = {**raw, "backend": {"kind": "ray", "num_actors": 2, "timeout_s": 120, "vectorize": "on"}}
    remote = flsim.run(ray_raw, run_dir=tmp_path / "ray")
    assert len(remote.summary["placement"]["actors"]) == 2
    assert metrics_without_wall_time(local.run_dir) == metrics_without_wall_time(remote.run_dir)


def test_batched_gossip_is_bit_identical_on_ray(tmp_path, ray_session):
    """DFedSAM on a ring: each node actor stacks its own nodes' local phases."""
    algorithm = {"name": "dfedsam", "lr": 0.1, "local_epochs": 1, "batch_size": 16}
    raw = tiny_digits(
        algorithm=algorithm,
        rounds=3,
        topology={"kind": "ring"},
        clients_per_round=None,
        backend={"vectorize": "on"},
    )
    assert NodeHost(load_scenario(raw)).vectorized is not None
    local = flsim.run(raw, run_dir=tmp_path / "local")
    ray_raw = {**raw, "backend": {"kind": "ray", "num_actors": 2, "timeout_s": 120, "vectorize": "on"}}
    remote = flsim.run(ray_raw, run_dir=tmp_path / "ray")
    assert len(remote.summary["placement"]["actors"]) == 2
    assert metrics_without_wall_time(local.run_dir) == metrics_without_wall_time(remote.run_dir)
