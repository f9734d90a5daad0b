"""Wall-clock asynchronous mode: real concurrency on Ray actors, then an exact replay."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

import flsim
from tests.builders import metrics_without_wall_time, wall_clock_dadao

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.usefixtures("ray_session")]


def _wall_scenario() -> dict:
    return wall_clock_dadao(
        task={"dataset_params": {"l2": 1.0}},
        wall={"start_delay_s": 1.0},
        backend={"timeout_s": 60},
    )


def test_wall_run_records_its_events_and_replays_exactly(tmp_path):
    result = flsim.run(_wall_scenario(), run_dir=tmp_path / "wall")
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["wall"]["deterministic"] is False
    # Per-node locks order each node's events in time, so the replay is the wall run itself.
    assert summary["wall"]["replay_max_abs_difference"] == 0.0
    events = [json.loads(line) for line in (result.run_dir / "events.jsonl").read_text().splitlines()]
    times = [e["t"] for e in events]
    assert times == sorted(times) and times[-1] <= 8.5
    grads = sum(e["kind"] == "gradient" for e in events)
    assert 0.5 * 6 * 8 < grads < 1.5 * 6 * 8  # about N·t gradient events in real time
    assert any(e["kind"] == "communication" for e in events)
    assert len({p["pid"] for p in summary["placement"]["actors"]}) == 2

    again = flsim.api.replay_run(result.run_dir, tmp_path / "replay")
    assert metrics_without_wall_time(again.run_dir) == metrics_without_wall_time(result.run_dir)
    errors = [row["mean_sq_dist_to_opt"] for row in metrics_without_wall_time(again.run_dir)]
    assert errors[-1] < errors[0]
    assert np.isfinite(errors).all()


def test_wall_mode_is_rejected_off_ray_and_for_round_algorithms():
    raw = _wall_scenario()
    raw["backend"] = {"kind": "local"}
    with pytest.raises(flsim.config.ConfigErrors, match="Ray only"):
        flsim.run(raw)
    raw = _wall_scenario()
    raw["algorithm"] = {"name": "fedavg"}
    raw.pop("topology")
    with pytest.raises(flsim.config.ConfigError, match="event-driven"):
        flsim.run(raw)


def test_more_actors_than_cpus_fails_fast_with_the_numbers(tmp_path):
    """The module's session has 2 CPUs: 4 actors of 1 CPU never all start (they hung before)."""
    raw = _wall_scenario()
    raw["backend"]["num_actors"] = 4
    started = time.monotonic()
    with pytest.raises(flsim.config.ConfigError) as caught:
        flsim.run(raw, run_dir=tmp_path / "wall")
    assert time.monotonic() - started < 30
    message = str(caught.value)
    assert message.startswith("backend.num_actors: ") and "4 actors × 1 CPUs" in message
    assert "= 4 CPUs, but the cluster has 2" in message


def test_a_failing_wall_run_leaves_no_actor_behind(tmp_path, ray_session):
    """An actor that does not answer in time fails the run; every actor is killed on the way out."""
    raw = _wall_scenario()
    raw["backend"]["timeout_s"] = 0.5  # the run itself takes 2 s of real time, after 5 s
    raw["wall"]["start_delay_s"] = 5.0
    with pytest.raises(TimeoutError):
        flsim.run(raw, run_dir=tmp_path / "wall")
    deadline = time.monotonic() + 30
    while ray_session.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ray_session.available_resources().get("CPU", 0) == 2  # no actor holds a CPU


def test_realised_fraction_is_in_the_summary_and_rows(tmp_path):
    result = flsim.run(_wall_scenario(), run_dir=tmp_path / "wall")
    wall = result.summary["wall"]
    assert wall["realised_fraction"] == wall["events"] / wall["scheduled_events"]
    assert 0.5 < wall["realised_fraction"] <= 1.0
    rows = metrics_without_wall_time(result.run_dir)
    assert rows[0]["realised_fraction"] == 1.0
    assert rows[-1]["realised_fraction"] == pytest.approx(wall["realised_fraction"])
