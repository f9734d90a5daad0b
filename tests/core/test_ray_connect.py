"""A wrong Ray address or a missing token fails within ``backend.connect_timeout_s``: exit 2,
one line saying what to check, and no run directory (the run never started).

Nothing here joins a cluster: every case fails in the pre-flight check, on loopback only.
"""

from __future__ import annotations

import socket
import time

import pytest

from flsim.cli import main
from tests.builders import tiny_linreg


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends


@pytest.fixture
def scenario_file(tmp_path):
    import yaml

    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({**tiny_linreg(rounds=2), "output": {"dir": str(tmp_path / "out")}}))
    return path


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2"])
def test_nobody_listening_exits_2_at_once_without_a_run_dir(scenario_file, tmp_path, capsys, host):
    started = time.monotonic()
    code = main(["run", str(scenario_file), "--address", f"{host}:{_closed_port()}", "--progress", "off"])
    assert code == 2
    assert time.monotonic() - started < 30  # connect_timeout_s's default
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "backend.address" in err[0] and "check the address" in err[0]
    assert not (tmp_path / "out").exists()


def test_a_token_cluster_without_the_token_names_ray_auth_mode(scenario_file, tmp_path, capsys, monkeypatch):
    import ray._raylet
    from ray.exceptions import AuthenticationError

    def refuse(**_kwargs):
        raise AuthenticationError("InvalidAuthToken: Authentication token is missing or incorrect")

    monkeypatch.setattr(ray._raylet, "GcsClient", refuse)
    with socket.socket() as listener:  # the head's port answers; its GCS refuses the token
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        assert main(["run", str(scenario_file), "--address", address, "--progress", "off"]) == 2
    assert "RAY_AUTH_MODE=token" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_sweep_with_a_bad_address_exits_2(tmp_path, capsys):
    import yaml

    (tmp_path / "base.yaml").write_text(yaml.safe_dump(tiny_linreg(rounds=2)))
    sweep = {"sweep": {"name": "bad", "base": "base.yaml", "seeds": [0]}}
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    args = ["sweep", str(tmp_path / "sweep.yaml"), "--address", f"127.0.0.1:{_closed_port()}"]
    assert main([*args, "--output-dir", str(tmp_path / "out"), "--progress", "off"]) == 2
    assert "check the address" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_connect_timeout_is_validated():
    from flsim.config.errors import ConfigErrors
    from flsim.scenario import load_scenario

    with pytest.raises(ConfigErrors, match=r"backend\.connect_timeout_s"):
        load_scenario({**tiny_linreg(), "backend": {"connect_timeout_s": 0}})
