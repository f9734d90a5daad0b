"""The shipped example plugin, installed into this venv, on local and on Ray: bit-identical.

Installing it is part of the test (``pip install --no-deps --no-build-isolation``, no
network). Ray actors find it by its ``flsim.plugins`` entry point, as the driver does. A
plugin that is only on the driver's ``sys.path`` reaches the actors through the runtime
environment (``py_modules``). One Ray session (num_cpus=2) serves the module.
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import flsim
from flsim.config import plugins
from tests.builders import metrics_without_wall_time, tiny_linreg

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.usefixtures("ray_session")]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "plugin_algorithm"


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory):
    """Install the example (entry point included) and reload the entry points of this process.

    pip builds in the source folder (``build/``, ``*.egg-info``): a copy keeps the checkout clean.
    """
    source = tmp_path_factory.mktemp("example") / "plugin_algorithm"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    command = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run([*command, "--force-reinstall", str(source)], check=True, timeout=300)
    importlib.invalidate_caches()
    plugins._entry_points_loaded = False
    return "flsim_plugin_example"


def _ray(raw: dict) -> dict:
    return {**raw, "backend": {"kind": "ray", "num_actors": 2, "timeout_s": 120}}


def _fedavgm(**extra) -> dict:
    raw = tiny_linreg(rounds=4, eval={"every": 1}, **extra)
    raw["algorithm"] = {**raw["algorithm"], "name": "fedavgm_example", "server_momentum": 0.5}
    return raw


def test_the_installed_example_runs_by_entry_point_on_local_and_ray(tmp_path, installed_example):
    raw = _fedavgm()  # no plugins key: the entry point registers fedavgm_example
    local = flsim.run(raw, run_dir=tmp_path / "local")
    remote = flsim.run(_ray(raw), run_dir=tmp_path / "ray")
    assert metrics_without_wall_time(local.run_dir) == metrics_without_wall_time(remote.run_dir)
    assert remote.summary["placement"]["kind"] == "ray"
    keyed = flsim.run(_ray({**raw, "plugins": [installed_example]}), run_dir=tmp_path / "keyed")
    assert metrics_without_wall_time(keyed.run_dir) == metrics_without_wall_time(local.run_dir)


def test_the_examples_own_test_passes(installed_example):
    tests = EXAMPLE / "tests"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests)],
        cwd=tests,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:]


def test_a_plugin_on_the_drivers_path_only_ships_to_the_actors(tmp_path, monkeypatch):
    """The module is in a folder that only the driver's sys.path has: py_modules carries it."""
    folder = tmp_path / "only_here"
    folder.mkdir()
    (folder / "flsim_shipped_plugin.py").write_text(
        "from flsim.algorithms.base import register\n"
        "from flsim.algorithms.fedavg import FedAvg\n\n\n"
        "@register\nclass Shipped(FedAvg):\n    name = 'shipped_fedavg'\n"
    )
    monkeypatch.syspath_prepend(str(folder))
    raw = tiny_linreg(rounds=3, eval={"every": 1}, plugins=["flsim_shipped_plugin"])
    raw["algorithm"] = {**raw["algorithm"], "name": "shipped_fedavg"}
    try:
        local = flsim.run(raw, run_dir=tmp_path / "local")
        remote = flsim.run(_ray(raw), run_dir=tmp_path / "ray")
    finally:
        from flsim.algorithms import REGISTRY

        REGISTRY.pop("shipped_fedavg", None)
        sys.modules.pop("flsim_shipped_plugin", None)
    assert metrics_without_wall_time(local.run_dir) == metrics_without_wall_time(remote.run_dir)
