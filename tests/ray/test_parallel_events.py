"""Parallel event runs on Ray actors against the local (sequential) engine: bit-identical rows
and final states, the ``auto`` choice, and a lost actor (docs/parallel_events.md).

One Ray session (num_cpus=2) serves the whole module; it is always shut down.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

import flsim
from flsim.backends import ray_parallel_events
from flsim.backends.base import WorkerLost
from flsim.backends.ray_parallel_events import RayEventParts, RayPartExecutor, pays_off
from flsim.hosts import event_mailbox
from flsim.hosts.event_stretch import WRITTEN
from flsim.results.writer import RunWriter
from tests.builders import fails_at_the_timeout, make_ridge, metrics_without_wall_time

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]

GRAPHS = {
    "ring": {"kind": "ring"},
    "grid": {"kind": "grid", "params": {"rows": 3, "cols": 3}},
    "geometric": {"kind": "geometric", "params": {"radius": 0.6}},
}


def _scenario(algorithm: str, graph: str, rates: str, **updates) -> dict:
    params = {"name": algorithm, **({"batch_size": 4} if algorithm == "async_gossip_sgd" else {})}
    raw = make_ridge(params, topology={**GRAPHS[graph], "rates": rates}, checkpoint={"every": 1}, **updates)
    raw["task"]["num_clients"] = 9
    return raw


def _on_ray(raw: dict, actors: int, setting: str = "on", **backend) -> dict:
    # Half a CPU each: three actors fit the module's two CPUs, and every test asks for the
    # same size, so the actors pooled by one test fit the next one.
    options = {"num_actors": actors, "cpus_per_actor": 0.5, "event_parallelism": setting, "timeout_s": 120}
    options["startup_timeout_s"] = 120
    return {**raw, "backend": {"kind": "ray", **options, **backend}}


@pytest.fixture
def shm(monkeypatch):
    """A directory of its own in /dev/shm for the run's mailboxes and control file (the driver
    creates them), so that what a run leaves there can be checked."""
    folder = Path("/dev/shm") / f"flsim-test-{uuid.uuid4().hex}"
    folder.mkdir()
    monkeypatch.setattr(event_mailbox, "SHM", folder)
    try:
        yield folder
    finally:
        for leftover in folder.iterdir():
            leftover.unlink()
        folder.rmdir()


@pytest.mark.parametrize(
    ("algorithm", "graph", "rates", "actors"),
    [
        ("dadao", "ring", "uniform", 2),
        ("async_gossip_sgd", "grid", "sdp", 3),
        ("adom_plus", "geometric", "uniform", 2),
    ],
)
def test_parallel_parts_on_actors_match_the_local_run(tmp_path, shm, algorithm, graph, rates, actors):
    raw = _scenario(algorithm, graph, rates)
    local = flsim.run(raw, run_dir=tmp_path / "local")
    remote = flsim.run(_on_ray(raw, actors), run_dir=tmp_path / "ray")
    assert metrics_without_wall_time(remote.run_dir) == metrics_without_wall_time(local.run_dir)
    facts = remote.summary["event_parallelism"]
    assert facts["mode"] == "on" and facts["parts"] == actors
    assert len(remote.summary["placement"]["actors"]) == actors
    assert facts["stats"]["handover"] == "shared memory"  # one machine: the mailboxes
    calls = facts["stats"]["calls"]
    if algorithm != "adom_plus":
        assert 0 < facts["stats"]["cross_events"] < facts["stats"]["events"]
        # One call per actor per stretch, the actors waiting on each other in shared memory.
        assert calls["level"] == 0 and 0 < calls["stretch"] <= actors * facts["stats"]["flushes"]
        assert facts["stats"]["levels"] > facts["stats"]["flushes"]
    else:
        assert calls["stretch"] == 0 and calls["sync"] > 0  # synchronous: calls per iteration
    # The last checkpoint holds every node's state, gathered from the parts: the same arrays.
    ours, theirs = RunWriter(remote.run_dir).load_checkpoint(), RunWriter(local.run_dir).load_checkpoint()
    assert ours["loop"] == theirs["loop"]
    for name, value in theirs["algorithm"].items():
        np.testing.assert_array_equal(ours["algorithm"][name], value, err_msg=name)
    assert not list(shm.iterdir())  # mailboxes and control file unlinked once mapped


def test_without_shared_memory_states_travel_through_the_object_store(tmp_path, monkeypatch):
    """Where no mailbox can be made (no /dev/shm; parts on several machines), exported states
    are call results in Ray's object store: the same rows."""
    monkeypatch.setattr("flsim.backends.ray_parallel_events.create_mailboxes", lambda *args: None)
    raw = _scenario("async_gossip_sgd", "ring", "uniform")
    local = flsim.run(raw, run_dir=tmp_path / "local")
    remote = flsim.run(_on_ray(raw, 2), run_dir=tmp_path / "ray")
    assert remote.summary["event_parallelism"]["stats"]["handover"] == "object store"
    assert remote.summary["event_parallelism"]["stats"]["calls"]["stretch"] == 0
    assert metrics_without_wall_time(remote.run_dir) == metrics_without_wall_time(local.run_dir)


def test_auto_keeps_a_convex_run_on_one_coordinator_and_says_why(tmp_path, caplog):
    """An event of a 5-dimensional ridge problem costs microseconds: parts cannot pay."""
    raw = _scenario("dadao", "ring", "uniform")
    local = flsim.run(raw, run_dir=tmp_path / "local")
    with caplog.at_level(logging.INFO, logger="flsim"):
        remote = flsim.run(_on_ray(raw, 2, "auto"), run_dir=tmp_path / "ray")
    facts = remote.summary["event_parallelism"]
    assert facts["mode"] == "off"
    assert not pays_off(facts["work_per_level_s"], 2, facts["round_trip_s"], facts["state_transfer_s"])
    assert len(remote.summary["placement"]["actors"]) == 1
    assert any(
        "event_parallelism=auto" in r.message and "one coordinator" in r.message for r in caplog.records
    )
    assert metrics_without_wall_time(remote.run_dir) == metrics_without_wall_time(local.run_dir)


def test_the_auto_rule_weighs_shared_work_against_two_messages_per_level():
    assert pays_off(work_per_level=0.040, parts=2, round_trip=0.001, transfer=0.002)  # MLP-like
    assert not pays_off(work_per_level=0.0004, parts=2, round_trip=0.001, transfer=0.0)  # convex
    assert not pays_off(work_per_level=0.004, parts=2, round_trip=0.001, transfer=0.0)  # 2 ms ≤ 2 ms
    assert pays_off(work_per_level=0.004, parts=4, round_trip=0.001, transfer=0.0)  # 3 ms > 2 ms


def _kill_part_on_flush(monkeypatch, flush: int, part: int, how: int = signal.SIGKILL) -> list[int]:
    """Signal (SIGKILL) actor ``part`` as the ``flush``-th stretch of events (or of
    synchronous iterations) starts, after a checkpoint."""
    calls: list[int] = []
    killed: list[int] = []

    def killing(original):
        def run(self, work):
            calls.append(1)
            if len(calls) == flush and not killed:
                killed.append(self.pool.describe()["actors"][part]["pid"])
                os.kill(killed[0], how)
            return original(self, work)

        return run

    monkeypatch.setattr(RayPartExecutor, "run_levels", killing(RayPartExecutor.run_levels))
    monkeypatch.setattr(RayPartExecutor, "run_sync", killing(RayPartExecutor.run_sync))
    return killed


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["async_gossip_sgd", "adom_plus"])
def test_a_killed_part_actor_is_replaced_and_the_run_ends_bit_identical(tmp_path, monkeypatch, algorithm):
    raw = _scenario(algorithm, "ring", "uniform")
    reference = flsim.run(raw, run_dir=tmp_path / "local")
    killed = _kill_part_on_flush(monkeypatch, 2, 1)
    remote = flsim.run(_on_ray(raw, 2), run_dir=tmp_path / "ray")
    assert killed, "the fault was never injected"
    assert remote.summary["recoveries"] == 1
    assert killed[0] not in {actor["pid"] for actor in remote.summary["placement"]["actors"]}
    assert metrics_without_wall_time(remote.run_dir) == metrics_without_wall_time(reference.run_dir)


@pytest.mark.slow
def test_a_parallel_run_out_of_recoveries_resumes_to_identical_metrics(tmp_path, monkeypatch):
    raw = _scenario("dadao", "grid", "uniform")
    reference = flsim.run(raw, run_dir=tmp_path / "local")
    killed = _kill_part_on_flush(monkeypatch, 2, 0)
    run_dir = tmp_path / "ray"
    with pytest.raises(WorkerLost):
        flsim.run(_on_ray(raw, 2, max_recoveries=0), run_dir=run_dir)
    assert killed
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "failed"
    monkeypatch.undo()
    resumed = flsim.resume(run_dir)
    assert resumed.summary["status"] == "completed"
    assert resumed.summary["event_parallelism"]["mode"] == "on"
    assert metrics_without_wall_time(run_dir) == metrics_without_wall_time(reference.run_dir)


@pytest.mark.slow
def test_a_frozen_part_actor_fails_the_run_within_the_timeout(tmp_path, monkeypatch):
    """A SIGSTOPped actor neither answers nor dies: the level waits end at backend.timeout_s."""
    raw = _scenario("dadao", "ring", "uniform")
    frozen = _kill_part_on_flush(monkeypatch, 2, 1, signal.SIGSTOP)
    fails_at_the_timeout(_on_ray(raw, 2, timeout_s=3), tmp_path / "ray", frozen)


@pytest.mark.slow
def test_pooled_actors_of_another_size_do_not_block_a_run(tmp_path):
    """Idle pooled actors keep their CPU reservations: after three half-CPU parts, two one-CPU
    parts find only half a CPU free unless the idle actors are let go (before, the run waited
    until backend.startup_timeout_s and failed)."""
    raw = _scenario("dadao", "ring", "uniform")
    local = flsim.run(raw, run_dir=tmp_path / "local")
    flsim.run(_on_ray(raw, 3), run_dir=tmp_path / "half")
    wide = _on_ray(raw, 2, cpus_per_actor=1.0, startup_timeout_s=30)
    remote = flsim.run(wide, run_dir=tmp_path / "whole")
    assert remote.summary["event_parallelism"]["parts"] == 2
    assert metrics_without_wall_time(remote.run_dir) == metrics_without_wall_time(local.run_dir)


def _hold_part_mid_stretch(monkeypatch, stretch: int, part: int, action) -> dict:
    """In the ``stretch``-th stretch, give ``part`` a step halfway that waits for a counter no
    partner ever publishes (or, with ``action="raise"``, that fails), so that it surely is in
    the middle of its stretch call; with ``action`` a signal, send it to the actor once it
    has got there."""
    seen = {"stretches": 0}
    original_plan, original_watch = ray_parallel_events.plan_stretch, RayEventParts.watch
    original_run = RayPartExecutor.run_levels

    def run_levels(self, plan):  # the actor's pid, asked while it is idle
        seen["pid"] = self.pool.describe()["actors"][part]["pid"]
        return original_run(self, plan)

    def plan(plan, planner, base):
        steps = original_plan(plan, planner, base)
        seen["stretches"] += 1
        if seen["stretches"] == stretch and len(steps[part]) > 2 and "step" not in seen:
            index = len(steps[part]) // 2
            step, seen["before"] = steps[part][index], steps[part][index - 1].level + 1
            if action == "raise":
                step.later = [(0.0, 10**6, -1)]  # a node that does not exist: IndexError
            else:
                step.after.append((1 - part, 1 << 60))  # never published
            seen["step"] = step.level
        return steps

    def watch(self, refs, control):
        if "step" in seen and "killed" not in seen and action != "raise":
            deadline = time.monotonic() + 60
            while control.value(WRITTEN, part) < seen["before"] and time.monotonic() < deadline:
                time.sleep(0.001)
            seen["reached"] = control.value(WRITTEN, part) >= seen["before"]
            seen["killed"] = seen["pid"]
            os.kill(seen["pid"], action)
        return original_watch(self, refs, control)

    monkeypatch.setattr(ray_parallel_events, "plan_stretch", plan)
    monkeypatch.setattr(RayEventParts, "watch", watch)
    monkeypatch.setattr(RayPartExecutor, "run_levels", run_levels)
    return seen


def test_a_part_failing_mid_stretch_fails_the_run_at_once_with_its_error(tmp_path, monkeypatch, shm):
    """The failing part's partner waits for counters the failed part will never publish: the
    driver's abort flag ends that wait at once, not at backend.timeout_s (60 s here)."""
    raw = _scenario("async_gossip_sgd", "grid", "uniform")
    seen = _hold_part_mid_stretch(monkeypatch, 2, 1, "raise")
    start = time.perf_counter()
    with pytest.raises(IndexError):
        flsim.run(_on_ray(raw, 2, timeout_s=60), run_dir=tmp_path / "ray")
    assert time.perf_counter() - start < 30 and "step" in seen
    summary = json.loads((tmp_path / "ray" / "summary.json").read_text())
    assert summary["status"] == "failed" and "IndexError" in summary["error"]
    assert "partner part failed" not in summary["error"]
    assert not list(shm.iterdir())  # no mailbox or control file left


@pytest.mark.slow
def test_an_actor_killed_mid_stretch_is_replaced_and_the_rows_stay_identical(tmp_path, monkeypatch, shm):
    raw = _scenario("async_gossip_sgd", "grid", "uniform")
    reference = flsim.run(raw, run_dir=tmp_path / "local")
    seen = _hold_part_mid_stretch(monkeypatch, 2, 1, signal.SIGKILL)
    start = time.perf_counter()
    remote = flsim.run(_on_ray(raw, 2), run_dir=tmp_path / "ray")
    assert time.perf_counter() - start < 60  # the partner stopped waiting at once (timeout_s: 120)
    assert seen.get("reached"), "the part never got halfway through its stretch"
    assert remote.summary["recoveries"] == 1
    assert seen["killed"] not in {actor["pid"] for actor in remote.summary["placement"]["actors"]}
    assert metrics_without_wall_time(remote.run_dir) == metrics_without_wall_time(reference.run_dir)
    assert remote.summary["event_parallelism"]["stats"]["calls"]["stretch"] > 0
    assert not list(shm.iterdir())
