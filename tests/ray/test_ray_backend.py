"""The Ray backend against the local reference: bit-identical metrics, faults, placement.

One Ray session (num_cpus=2) serves the whole module; it is always shut down.
"""

from __future__ import annotations

import json
import os
import signal

import pytest

import flsim
from flsim.algorithms import REGISTRY
from flsim.backends.ray_backend import RayBackend
from tests.builders import metrics_without_wall_time, tiny_digits, tiny_linreg

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]


def _ray(raw: dict) -> dict:
    return {**raw, "backend": {"kind": "ray", "num_actors": 2, "timeout_s": 120}}


@pytest.mark.parametrize("algorithm", sorted(REGISTRY))
def test_every_algorithm_is_bit_identical_on_ray(tmp_path, algorithm):
    raw = REGISTRY[algorithm].example_scenario(tiny_linreg(rounds=4, eval={"every": 1}))
    local = flsim.run(raw, run_dir=tmp_path / "local")
    remote = flsim.run(_ray(raw), run_dir=tmp_path / "ray")
    assert metrics_without_wall_time(local.run_dir) == metrics_without_wall_time(remote.run_dir)
    assert remote.summary["placement"]["kind"] == "ray"
    # Event-driven runs are sequential by nature and run on one coordinator actor.
    expected_actors = 1 if getattr(REGISTRY[algorithm], "mode", "sync") == "events" else 2
    assert len(remote.summary["placement"]["actors"]) == expected_actors


def test_neural_network_task_is_bit_identical_on_ray(tmp_path):
    raw = tiny_digits(rounds=3)
    local = flsim.run(raw, run_dir=tmp_path / "local")
    remote = flsim.run(_ray(raw), run_dir=tmp_path / "ray")
    assert metrics_without_wall_time(local.run_dir) == metrics_without_wall_time(remote.run_dir)


def test_killed_actor_is_replaced_and_the_run_replays_to_identical_metrics(tmp_path, monkeypatch):
    raw = tiny_linreg(rounds=8, checkpoint={"every": 2}, eval={"every": 1})
    reference = flsim.run(raw, run_dir=tmp_path / "local")

    original = RayBackend.run_clients
    killed = []

    def kill_once(self, message, clients, round_index):
        if round_index == 5 and not killed:
            pid = self.describe()["actors"][0]["pid"]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        return original(self, message, clients, round_index)

    monkeypatch.setattr(RayBackend, "run_clients", kill_once)
    remote = flsim.run(_ray(raw), run_dir=tmp_path / "ray")
    assert killed, "the fault was never injected"
    assert metrics_without_wall_time(remote.run_dir) == metrics_without_wall_time(reference.run_dir)
    summary = json.loads((remote.run_dir / "summary.json").read_text())
    assert summary["status"] == "completed"


def test_sweep_runs_as_parallel_ray_tasks_with_local_results(tmp_path):
    import yaml

    from flsim.sweep import run_sweep

    (tmp_path / "base.yaml").write_text(yaml.safe_dump(tiny_linreg(rounds=3)))
    sweep = {
        "name": "mini",
        "base": "base.yaml",
        "seeds": [0],
        "variants": {"a": {}, "b": {"algorithm.lr": 0.2}},
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"sweep": sweep}))
    remote = run_sweep(path, backend="ray", output_dir=tmp_path / "ray")
    local = run_sweep(path, backend="local", output_dir=tmp_path / "local")
    assert [o.status for o in remote] == ["completed"] * 2
    for r, lo in zip(remote, local, strict=True):
        assert metrics_without_wall_time(r.run_dir) == metrics_without_wall_time(lo.run_dir)
