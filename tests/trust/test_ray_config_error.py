"""A ConfigError raised inside a Ray actor reaches the CLI as exit 2 and one line.

Both paths are covered: the actor pool of round-based runs and the wall-clock event actors.

Some checks can only fail where the data is built: each actor builds the task itself, so a
damaged dataset file fails in the actor. The error must cross Ray's pickling intact (same
key, value and reason) and be unwrapped from Ray's task error on the driver.
"""

from __future__ import annotations

import pickle

import pytest

from flsim.config.errors import ConfigError, ConfigErrors
from tests.builders import tiny_linreg, wall_clock_dadao
from tests.trust.helpers import cli, one_error_line, write_scenario


def test_config_errors_survive_pickling_with_key_value_and_reason():
    error = ConfigError("task.dataset_params.path", "/data/mnist", "IDX header is truncated")
    again = pickle.loads(pickle.dumps(error))
    assert (again.key, again.value, again.reason, str(again)) == (
        error.key,
        error.value,
        error.reason,
        str(error),
    )
    both = ConfigErrors([error, ConfigError("algorithm.lr", -1.0, "must be > 0")])
    copied = pickle.loads(pickle.dumps(both))
    assert [str(e) for e in copied.errors] == [str(e) for e in both.errors]
    assert str(copied) == str(both)


#: An algorithm plugin whose clients check something that exists only where the driver's
#: marker is set: Ray's workers got their environment when the session started, before the
#: test sets the marker (like a data path present on the driver's machine but not a worker's).
PLUGIN = """
import os

from flsim.algorithms.base import register
from flsim.algorithms.fedavg import FedAvg
from flsim.config.errors import ConfigError


@register
class FedAvgWhereItRuns(FedAvg):
    name = "fedavg_where_it_runs"

    def client_update(self, message, state, ctx):
        if "FLSIM_TRUST_ON_DRIVER" not in os.environ:
            raise ConfigError("task.dataset_params.path", "/shared/data", "no such directory on this worker")
        return super().client_update(message, state, ctx)
"""


@pytest.mark.ray
@pytest.mark.slow
def test_a_config_error_in_an_actor_is_exit_2_with_one_line(ray_session, tmp_path, capsys, monkeypatch):
    (tmp_path / "flsim_trust_where_built.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("FLSIM_TRUST_ON_DRIVER", "1")  # after ray.init: the workers never see it
    raw = tiny_linreg(backend={"kind": "ray", "num_actors": 1, "timeout_s": 60}, rounds=1)
    raw["algorithm"]["name"] = "fedavg_where_it_runs"
    raw["plugins"] = ["flsim_trust_where_built"]
    raw["output"] = {"dir": str(tmp_path / "runs")}
    code, _, err = cli(capsys, "run", str(write_scenario(tmp_path / "s.yaml", raw)))
    line = one_error_line(err)
    assert code == 2, err
    assert line == (
        "flsim: config error: task.dataset_params.path: no such directory on this worker (got '/shared/data')"
    )


WALL_PLUGIN = """
import os

from flsim.algorithms.base import register
from flsim.algorithms.dadao import DADAO
from flsim.config.errors import ConfigError


@register
class DadaoWhereItRuns(DADAO):
    name = "dadao_where_it_runs"

    def gradient(self, node, x):
        if "FLSIM_TRUST_ON_DRIVER" not in os.environ:
            raise ConfigError("task.dataset_params.path", "/shared/data", "no such directory on this worker")
        return super().gradient(node, x)
"""


@pytest.mark.ray
@pytest.mark.slow
def test_a_config_error_in_a_wall_clock_actor_is_exit_2_with_one_line(
    ray_session, tmp_path, capsys, monkeypatch
):
    (tmp_path / "flsim_trust_wall_where_built.py").write_text(WALL_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("FLSIM_TRUST_ON_DRIVER", "1")
    raw = wall_clock_dadao(
        algorithm={"name": "dadao_where_it_runs"},
        task={"dataset_params": {"l2": 1.0}},
        budget={"time": 4.0},
        wall={"seconds_per_unit": 0.1, "start_delay_s": 0.5},
        backend={"num_actors": 1, "cpus_per_actor": 0.5, "timeout_s": 60},
        plugins=["flsim_trust_wall_where_built"],
        output={"dir": str(tmp_path / "runs")},
    )
    code, _, err = cli(capsys, "run", str(write_scenario(tmp_path / "w.yaml", raw)))
    assert code == 2, err
    assert one_error_line(err) == (
        "flsim: config error: task.dataset_params.path: no such directory on this worker (got '/shared/data')"
    )
