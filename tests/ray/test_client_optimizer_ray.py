"""Client optimizers on Ray: persisted optimizer state on the client actors, Drop-Muon tail uploads."""

from __future__ import annotations

import pytest

import flsim
from tests.builders import metrics_without_wall_time, tiny_digits, tiny_linreg

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]

DROP_MUON = tiny_digits(
    algorithm={
        "name": "fedavg",
        "lr": 0.02,
        "local_steps": 2,
        "batch_size": 16,
        "client_optimizer": {"name": "drop_muon", "state": "persist"},
    },
    rounds=4,
    eval={"every": 1},
)
GOSSIP_ADAM = tiny_linreg(
    algorithm={
        "name": "dfedavg",
        "lr": 0.01,
        "local_steps": 3,
        "client_optimizer": {"name": "adam", "state": "persist"},
    },
    topology={"kind": "ring"},
    clients_per_round=None,
    rounds=4,
    eval={"every": 1},
)


@pytest.mark.parametrize("raw", [DROP_MUON, GOSSIP_ADAM], ids=["fedavg_drop_muon", "dfedavg_adam"])
def test_client_optimizer_state_is_bit_identical_on_ray(tmp_path, raw):
    local = flsim.run(raw, run_dir=tmp_path / "local")
    remote = flsim.run(
        {**raw, "backend": {"kind": "ray", "num_actors": 2, "timeout_s": 120}}, run_dir=tmp_path / "ray"
    )
    rows = metrics_without_wall_time(local.run_dir)
    assert rows == metrics_without_wall_time(remote.run_dir)
    assert remote.summary["placement"]["kind"] == "ray"
    assert rows[-1]["round"] == 4
