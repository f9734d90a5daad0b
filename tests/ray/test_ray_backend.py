"""The Ray backend against the local reference: bit-identical metrics, faults, placement.

One Ray session (num_cpus=2) serves the whole module; it is always shut down.
"""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch

import flsim
from flsim.algorithms import REGISTRY
from flsim.backends.base import WorkerLost
from flsim.backends.ray_backend import RayBackend, RayCoordinator
from flsim.engine.modes import driver_class
from flsim.scenario import load_scenario
from flsim.tasks import build_task
from tests.builders import fails_at_the_timeout, metrics_without_wall_time, tiny_digits, tiny_linreg

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
    mode = getattr(REGISTRY[algorithm], "mode", "sync")
    expected_actors = 1 if mode == "events" else 2
    assert len(remote.summary["placement"]["actors"]) == expected_actors
    # Round-based runs keep their server state on a server actor of its own.
    assert ("server" in remote.summary["placement"]) == (mode in ("sync", "buffered"))


@pytest.mark.parametrize(
    "compression",
    [
        {"uplink": {"kind": "qsgd", "levels": 4}},
        {"uplink": {"kind": "topk", "k": 1}, "choco": {"consensus_lr": 0.4}},
    ],
    ids=["plain", "choco"],
)
def test_compressed_gossip_is_bit_identical_on_ray(tmp_path, compression):
    """Compressed gossip and CHOCO's x̂ copies cross actors by reference, two steps a round."""
    base = tiny_linreg(rounds=4, eval={"every": 1}, compression=compression)
    raw = REGISTRY["dpsgd"].example_scenario(base)
    raw["algorithm"]["gossip_steps"] = 2
    local = flsim.run(raw, run_dir=tmp_path / "local")
    remote = flsim.run(_ray(raw), run_dir=tmp_path / "ray")
    assert metrics_without_wall_time(local.run_dir) == metrics_without_wall_time(remote.run_dir)


def test_compressed_channels_are_bit_identical_on_ray(tmp_path):
    """Uplink error feedback lives on the client actors, the downlink's x̂ on the server actor."""
    compression = {
        "uplink": {"kind": "topk", "k": 2},
        "error_feedback": "ef21",
        "downlink": {"kind": "qsgd", "levels": 8},
    }
    raw = tiny_linreg(rounds=6, eval={"every": 1}, checkpoint={"every": 2}, compression=compression)
    local = flsim.run(raw, run_dir=tmp_path / "local")
    remote = flsim.run(_ray(raw), run_dir=tmp_path / "ray")
    assert metrics_without_wall_time(local.run_dir) == metrics_without_wall_time(remote.run_dir)


def test_neural_network_task_is_bit_identical_on_ray(tmp_path):
    raw = tiny_digits(rounds=3)
    local = flsim.run(raw, run_dir=tmp_path / "local")
    remote = flsim.run(_ray(raw), run_dir=tmp_path / "ray")
    assert metrics_without_wall_time(local.run_dir) == metrics_without_wall_time(remote.run_dir)


def _client_actor(placement: dict) -> int:
    return placement["actors"][0]["pid"]


def _server_actor(placement: dict) -> int:
    return placement["server"]["pid"]


def _kill_before_round(
    monkeypatch, raw: dict, round_index: int, victim, how: signal.Signals = signal.SIGKILL
) -> list[int]:
    """Send ``how`` to the ``victim`` actor's process once, just before ``round_index`` runs."""
    scenario = load_scenario(raw)
    driver = driver_class(scenario)
    original = driver.run_round
    killed: list[int] = []

    def kill_once(self, index):
        if index == round_index and not killed:
            pid = victim(self.backend.describe())
            os.kill(pid, how)
            killed.append(pid)
        return original(self, index)

    monkeypatch.setattr(driver, "run_round", kill_once)
    return killed


@pytest.mark.parametrize(
    ("algorithm", "victim"),
    [
        ("fedavg", _client_actor),
        ("fedavg", _server_actor),
        ("fedamd", _server_actor),  # its server holds an N x d table
        ("fedbuff", _client_actor),  # checkpoints hold replies still in flight
        ("dpsgd", _client_actor),  # gossip nodes
    ],
    ids=["fedavg-client", "fedavg-server", "fedamd-server", "fedbuff-client", "dpsgd-node"],
)
def test_killed_actor_is_replaced_and_the_run_replays_to_identical_metrics(
    tmp_path, monkeypatch, algorithm, victim
):
    base = tiny_linreg(rounds=8, checkpoint={"every": 2}, eval={"every": 1})
    raw = REGISTRY[algorithm].example_scenario(base)
    reference = flsim.run(raw, run_dir=tmp_path / "local")

    killed = _kill_before_round(monkeypatch, raw, 5, victim)
    remote = flsim.run(_ray(raw), run_dir=tmp_path / "ray")
    assert killed, "the fault was never injected"
    assert metrics_without_wall_time(remote.run_dir) == metrics_without_wall_time(reference.run_dir)
    summary = json.loads((remote.run_dir / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["recoveries"] == 1
    assert killed[0] not in {actor["pid"] for actor in summary["placement"]["actors"]}


def test_a_lost_event_coordinator_continues_from_its_checkpoint_to_identical_metrics(tmp_path, monkeypatch):
    """DADAO streams rows and checkpoints from its coordinator; killing it loses nothing."""
    raw = REGISTRY["dadao"].example_scenario(tiny_linreg(checkpoint={"every": 1}))
    raw.update(budget={"time": 4000.0}, eval={"every_time": 200.0})  # about 2 s of events
    reference = flsim.run(raw, run_dir=tmp_path / "local")

    original = RayCoordinator.poll
    killed: list[int] = []

    def kill_after_a_checkpoint(self, wait):
        items = original(self, wait)
        if not killed and any(kind == "checkpoint" for kind, _ in items):
            killed.append(self.describe()["actors"][0]["pid"])
            os.kill(killed[0], signal.SIGKILL)
        return items

    monkeypatch.setattr(RayCoordinator, "poll", kill_after_a_checkpoint)
    remote = flsim.run(_ray(raw), run_dir=tmp_path / "ray")
    assert killed, "the fault was never injected"
    assert remote.summary["recoveries"] == 1
    assert killed[0] not in {actor["pid"] for actor in remote.summary["placement"]["actors"]}
    assert metrics_without_wall_time(remote.run_dir) == metrics_without_wall_time(reference.run_dir)


def test_a_run_out_of_recoveries_fails_clearly_and_resumes_to_identical_metrics(tmp_path, monkeypatch):
    raw = tiny_linreg(rounds=8, checkpoint={"every": 2}, eval={"every": 1})
    reference = flsim.run(raw, run_dir=tmp_path / "local")
    killed = _kill_before_round(monkeypatch, raw, 5, _client_actor)
    failing = _ray(raw)
    failing["backend"]["max_recoveries"] = 0
    run_dir = tmp_path / "ray"
    with pytest.raises(WorkerLost, match=r"max_recoveries=0.*from round 4 with `flsim run --resume"):
        flsim.run(failing, run_dir=run_dir)
    assert killed
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "failed"
    monkeypatch.undo()
    resumed = flsim.resume(run_dir)
    assert resumed.summary["status"] == "completed"
    assert metrics_without_wall_time(run_dir) == metrics_without_wall_time(reference.run_dir)


def test_a_hung_actor_fails_the_run_with_the_configured_timeout(tmp_path, monkeypatch):
    """A frozen (SIGSTOP) client actor neither answers nor dies: the wait must end anyway."""
    raw = tiny_linreg(rounds=6, checkpoint={"every": 2})
    frozen = _kill_before_round(monkeypatch, raw, 3, _client_actor, signal.SIGSTOP)
    config = _ray(raw)
    config["backend"]["timeout_s"] = 3
    fails_at_the_timeout(config, tmp_path / "ray", frozen)


def test_the_driver_only_holds_references_to_models(tmp_path):
    """Broadcasts and reply payloads stay in Ray; the server actor's state matches in-process."""
    import ray

    from flsim.backends.local import LocalBackend

    scenario = load_scenario(_ray(REGISTRY["scaffold"].example_scenario(tiny_linreg())))
    task = build_task(scenario.task, scenario.seed)
    remote, local = RayBackend(scenario), LocalBackend(scenario, task)
    remote.start()
    local.start()
    try:
        clients = [0, 3, 4]
        for round_index in range(2):
            message, bytes_down = remote.server_role().broadcast(round_index, clients)
            local_message, local_bytes = local.server_role().broadcast(round_index, clients)
            assert isinstance(message, ray.ObjectRef)
            assert bytes_down == local_bytes
            replies = remote.run_clients(message, clients, round_index)
            # Each payload is an item of its client actor's batch object, still in Ray.
            assert all(isinstance(reply.message.batch, ray.ObjectRef) for reply in replies)
            assert len({reply.message.batch.hex() for reply in replies}) == 2  # one per client actor
            assert [r.bytes_up for r in replies] == [r.bytes_up for r in remote.materialize(replies)]
            remote.server_role().aggregate(replies, round_index)
            local.server_role().aggregate(local.run_clients(local_message, clients, round_index), round_index)
        remote_state = remote.server_role().export_state()["server"]
        local_state = local.server_role().export_state()["server"]
        assert remote_state.keys() == local_state.keys()
        for key, value in local_state.items():
            assert torch.equal(remote_state[key], value), key
        assert remote.describe()["server"]["pid"] not in {a["pid"] for a in remote.describe()["actors"]}
    finally:
        remote.shutdown()
        local.shutdown()


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
