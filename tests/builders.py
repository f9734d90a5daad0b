"""Tiny scenarios that run in well under a second each, and result readers."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any


def tiny_linreg(**updates: Any) -> dict[str, Any]:
    """A heterogeneous least-squares scenario with a known optimum."""
    scenario: dict[str, Any] = {
        "name": "tiny_linreg",
        "seed": 1,
        "task": {
            "dataset": "linreg",
            "num_clients": 6,
            "dataset_params": {"dim": 5, "samples_per_client": 20},
        },
        "algorithm": {"name": "fedavg", "lr": 0.05, "local_steps": 3, "batch_size": 8},
        "rounds": 6,
        "clients_per_round": 3,
        "system": {"compute": {"sigma": 0.5, "jitter": "exponential"}},
    }
    return merge(scenario, updates)


def make_ridge(algorithm: dict[str, Any] | str = "dadao", **updates: Any) -> dict[str, Any]:
    """tiny_linreg (6 nodes, d = 5) with l2 = 1, so every f_i is μ-strongly convex (A)."""
    raw = tiny_linreg(
        algorithm={"name": algorithm} if isinstance(algorithm, str) else algorithm,
        topology={"kind": "ring"},
        clients_per_round=None,
        budget={"time": 60.0},
        eval={"every_time": 20.0},
    )
    raw["task"]["dataset_params"]["l2"] = 1.0
    raw.update(updates)
    return raw


def wall_clock_dadao(**updates: Any) -> dict[str, Any]:
    """tiny_linreg as DADAO on a ring in ``time: wall`` on 2 Ray actors (8 time units of
    0.25 s, a row every 2); ``updates`` are merged in (nested)."""
    raw = tiny_linreg(
        algorithm={"name": "dadao"},
        topology={"kind": "ring"},
        clients_per_round=None,
        budget={"time": 8.0},
        eval={"every_time": 2.0},
        time="wall",
        wall={"seconds_per_unit": 0.25},
        backend={"kind": "ray", "num_actors": 2},
    )
    return merge(raw, updates)


def tiny_digits(**updates: Any) -> dict[str, Any]:
    scenario: dict[str, Any] = {
        "name": "tiny_digits",
        "seed": 0,
        "task": {
            "dataset": "digits",
            "num_clients": 8,
            "partition": {"kind": "dirichlet", "alpha": 0.5},
            "model": {"name": "mlp", "hidden": [16]},
        },
        "algorithm": {"name": "fedavg", "lr": 0.1, "local_steps": 2, "batch_size": 16},
        "rounds": 4,
        "clients_per_round": 4,
    }
    return merge(scenario, updates)


def merge(base: dict[str, Any], updates: dict[str, Any]) -> dict[str, Any]:
    """Nested update; an ``algorithm`` mapping replaces the base one wholesale."""
    out = copy.deepcopy(base)
    for key, value in updates.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "algorithm":
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def metrics_without_wall_time(run_dir: Path) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    for row in rows:
        row.pop("wall_time")
    return rows


def make_simulation(raw: dict[str, Any], run_dir: Path) -> Any:
    """A local simulation (the driver the algorithm asks for) that a test can step round by round."""
    from flsim.backends.local import LocalBackend
    from flsim.engine.modes import driver_class
    from flsim.progress import ProgressReporter
    from flsim.results.writer import RunWriter
    from flsim.scenario import load_scenario
    from flsim.tasks import build_task

    scenario = load_scenario(raw)
    task = build_task(scenario.task, scenario.seed)
    backend = LocalBackend(scenario, task)
    backend.start()
    driver = driver_class(scenario)
    return driver(scenario, task, backend, RunWriter(run_dir), ProgressReporter("test", "off"))


def run_until_crash(
    raw: dict[str, Any], run_dir: Path, driver: type, round_index: int, error: type = RuntimeError
) -> None:
    """Run ``raw`` until it dies as ``round_index`` starts, as a killed process would.

    ``driver`` is the simulation class whose ``run_round`` fails; the run directory is left
    as the crash leaves it (metrics so far, the last checkpoint, a ``failed`` summary).
    """
    import pytest

    import flsim

    original = driver.run_round

    def dies(self, index):
        if index == round_index:
            raise error("killed")
        return original(self, index)

    driver.run_round = dies
    try:
        with pytest.raises(error, match="killed"):
            flsim.run(raw, run_dir=run_dir)
    finally:
        driver.run_round = original


def fails_at_the_timeout(config: dict[str, Any], run_dir: Path, frozen: list[int]) -> None:
    """Run ``config`` while the actors ``frozen`` (SIGSTOPped pids, filled in as the run
    freezes them) neither answer nor die: the run must fail with ``backend.timeout_s``'s
    error, and its summary must say so. The frozen processes are killed afterwards."""
    import contextlib
    import os
    import signal

    import pytest

    import flsim

    timeout = f"timeout_s={config['backend']['timeout_s']:g}"
    try:
        with pytest.raises(TimeoutError, match=rf"did not answer within backend\.{timeout}"):
            flsim.run(config, run_dir=run_dir)
    finally:
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert frozen
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and timeout in summary["error"]
