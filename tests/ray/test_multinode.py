"""A real two-node Ray cluster on this machine: `ray start --head` plus a worker node.

Token authentication stays on (Ray 2.60's default for `ray start`): every process gets
RAY_AUTH_MODE=token and finds the token in ~/.ray/auth_token. The cluster is torn down
even when the test fails.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import flsim
from tests.builders import make_ridge, metrics_without_wall_time, tiny_linreg

pytestmark = [pytest.mark.ray, pytest.mark.slow]

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ray(*args: str, env: dict[str, str]) -> None:
    subprocess.run([str(BIN / "ray"), *args], env=env, check=True, capture_output=True, timeout=120)


@pytest.fixture
def cluster():
    env = {**os.environ, "RAY_AUTH_MODE": "token", "PATH": f"{BIN}:{os.environ['PATH']}"}
    port = _free_port()
    address = f"127.0.0.1:{port}"
    try:
        _ray(
            "start",
            "--head",
            f"--port={port}",
            "--num-cpus=1",
            "--include-dashboard=false",
            "--disable-usage-stats",
            env=env,
        )
        _ray("start", f"--address={address}", "--num-cpus=1", "--disable-usage-stats", env=env)
        yield address, env
    finally:
        subprocess.run([str(BIN / "ray"), "stop", "--force"], env=env, capture_output=True, timeout=120)


def _run_flsim(scenario: Path, run_dir: Path, env: dict[str, str], *args: str) -> dict:
    flsim = shutil.which("flsim", path=env["PATH"])
    assert flsim is not None
    command = [flsim, "run", str(scenario), *args, "-o", "backend.num_actors=2"]
    command += ["--run-dir", str(run_dir), "--progress", "off"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed"
    return summary


def test_run_places_actors_on_both_nodes(cluster, tmp_path):
    address, env = cluster
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(yaml.safe_dump(tiny_linreg()))
    summary = _run_flsim(scenario, tmp_path / "run", env, "--address", address)
    nodes = {actor["node_id"] for actor in summary["placement"]["actors"]}
    assert len(nodes) == 2, summary["placement"]
    # What `ray job submit` does: the entrypoint finds the cluster in RAY_ADDRESS. Joining it
    # (not starting a fresh one-node instance) is what puts the actors on both nodes.
    summary = _run_flsim(scenario, tmp_path / "env", {**env, "RAY_ADDRESS": address}, "--backend", "ray")
    nodes = {actor["node_id"] for actor in summary["placement"]["actors"]}
    assert len(nodes) == 2, summary["placement"]


def test_parallel_event_parts_on_two_nodes_match_the_local_run(cluster, tmp_path):
    """DADAO's nodes split over one actor per cluster node; states cross nodes by reference."""
    address, env = cluster
    raw = make_ridge("dadao", topology={"kind": "ring"})
    local = flsim.run(raw, run_dir=tmp_path / "local")
    scenario = tmp_path / "events.yaml"
    scenario.write_text(yaml.safe_dump({**raw, "backend": {"kind": "ray", "event_parallelism": "on"}}))
    summary = _run_flsim(scenario, tmp_path / "cluster", env, "--address", address)
    assert summary["event_parallelism"]["mode"] == "on"
    assert summary["event_parallelism"]["stats"]["cross_events"] > 0
    nodes = {actor["node_id"] for actor in summary["placement"]["actors"]}
    assert len(nodes) == 2, summary["placement"]
    assert metrics_without_wall_time(tmp_path / "cluster") == metrics_without_wall_time(local.run_dir)
