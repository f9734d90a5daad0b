"""Acceptance soak test: a run SIGKILLed at 20 random moments and resumed each time ends
bit-identical to an undisturbed run.

Each kill lands while the run computes: the test waits until the process has written one to
seven new metrics rows (a seeded draw), then sleeps a random moment of up to 30 ms and sends
SIGKILL. Kills therefore hit rounds,
row appends, checkpoint writes and the resume path itself at random points.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

import flsim
from tests.builders import metrics_without_wall_time, tiny_digits

KILLS = 20
SCENARIO = tiny_digits(rounds=400, checkpoint={"every": 3}, eval={"every": 1}, seed=5)


def _rows(run_dir):
    try:
        return (run_dir / "metrics.jsonl").read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _kill_once(argv, run_dir, rng, timeout=120.0):
    """Start ``flsim argv``, wait for a new row, sleep a random moment, SIGKILL; True if killed."""
    before = _rows(run_dir)
    process = subprocess.Popen(
        [sys.executable, "-m", "flsim", *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + timeout
    # Progress is counted in rows, not seconds: on a fast machine a fixed sleep lets the run
    # finish before its twentieth kill. A few rows, then a random moment inside the next round.
    target = before + int(rng.integers(1, 8))
    while _rows(run_dir) < target and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(float(rng.uniform(0.0, 0.03)))
    if process.poll() is not None:
        stderr = process.stderr.read().decode()
        assert process.returncode == 0, stderr
        return False
    process.send_signal(signal.SIGKILL)
    process.wait()
    process.stderr.close()
    return True


@pytest.mark.slow
def test_twenty_sigkills_and_resumes_end_bit_identical(tmp_path):
    reference = flsim.run(SCENARIO, run_dir=tmp_path / "reference")
    scenario_file = tmp_path / "s.yaml"
    scenario_file.write_text(yaml.safe_dump(SCENARIO))
    run_dir = tmp_path / "killed"
    rng = np.random.default_rng(20)

    kills = 0
    argv = ["run", str(scenario_file), "--run-dir", str(run_dir), "--progress", "off"]
    while kills < KILLS:
        if not _kill_once(argv, run_dir, rng):
            break
        kills += 1
        if (run_dir / "config.yaml").is_file():
            argv = ["run", "--resume", str(run_dir), "--progress", "off"]
    assert kills == KILLS, "the run finished before it was killed 20 times: make it longer"

    done = subprocess.run(
        [sys.executable, "-m", "flsim", *argv], capture_output=True, text=True, timeout=600, cwd=os.getcwd()
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"
    assert metrics_without_wall_time(run_dir) == metrics_without_wall_time(reference.run_dir)
    assert not list(run_dir.rglob(".*.tmp"))
