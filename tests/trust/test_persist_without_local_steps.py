"""``client_optimizer.state: persist`` on a method without local steps is refused at load.

Such methods (the compressed one-step methods, dpsgd, the event-driven ones) take their one
gradient without a client optimizer, so there is no state to keep: a persist setting would
change nothing, silently. The default (reset) and an explicit reset still load everywhere.
"""

from __future__ import annotations

import pytest

from flsim.algorithms import REGISTRY
from flsim.api import load_scenario
from flsim.config.errors import ConfigError, ConfigErrors
from tests.builders import tiny_linreg
from tests.trust.helpers import cli, one_error_line, write_scenario

WITHOUT_LOCAL_STEPS = [
    "adom_plus",
    "async_gossip_sgd",
    "compressed_sgd",
    "dadao",
    "dpsgd",
    "econtrol",
    "ef14",
    "ef21",
    "ef21_sgdm",
]


def _scenario(name: str, **options: str) -> dict:
    raw = REGISTRY[name].example_scenario(tiny_linreg())
    raw["algorithm"] = {**raw["algorithm"], "client_optimizer": {"name": "sgd", **options}}
    return raw


def _keys(exc: ConfigError | ConfigErrors) -> list[tuple[str, object]]:
    errors = exc.errors if isinstance(exc, ConfigErrors) else [exc]
    return [(e.key, e.value) for e in errors]


@pytest.mark.parametrize("name", WITHOUT_LOCAL_STEPS)
def test_persist_is_refused_naming_the_key(name):
    with pytest.raises((ConfigError, ConfigErrors)) as caught:
        load_scenario(_scenario(name, state="persist"))
    assert _keys(caught.value) == [("algorithm.client_optimizer.state", "persist")]
    assert "no local steps" in str(caught.value)


@pytest.mark.parametrize("name", WITHOUT_LOCAL_STEPS)
def test_reset_and_the_default_still_load(name):
    assert load_scenario(_scenario(name, state="reset")).algorithm["name"] == name
    assert load_scenario(_scenario(name)).algorithm["name"] == name


@pytest.mark.parametrize("name", ["fedavg", "fedsam", "scaffold", "dfedavg", "dfedsam", "fedamd"])
def test_methods_with_local_steps_accept_persist(name):
    raw = _scenario(name, state="persist")
    raw["algorithm"]["momentum"] = 0.5  # heavy-ball SGD: a momentum buffer to keep
    assert load_scenario(raw).algorithm["client_optimizer"]["state"] == "persist"


@pytest.mark.parametrize("optimizer", ["sgd", "sam", "sgdp"])
def test_persist_of_a_stateless_sgd_is_refused(optimizer):
    """Without momentum, SGD, SAM and SGDP keep nothing between steps: persist would be a no-op."""
    raw = _scenario("fedavg", state="persist")
    raw["algorithm"]["client_optimizer"]["name"] = optimizer
    with pytest.raises((ConfigError, ConfigErrors)) as caught:
        load_scenario(raw)
    assert _keys(caught.value) == [("algorithm.client_optimizer.state", "persist")]
    assert "without algorithm.momentum" in str(caught.value)


def test_the_set_of_refusing_methods_is_the_registry_minus_those_with_local_steps():
    refusing = set()
    for name in REGISTRY:
        try:
            load_scenario(_scenario(name, state="persist"))
        except (ConfigError, ConfigErrors) as exc:
            assert _keys(exc) == [("algorithm.client_optimizer.state", "persist")], name
            if "no local steps" in str(exc):  # the others: plain SGD without momentum
                refusing.add(name)
    assert refusing == set(WITHOUT_LOCAL_STEPS)


def test_validate_exits_2_with_one_line(tmp_path, capsys):
    path = write_scenario(tmp_path / "ef21.yaml", _scenario("ef21", state="persist"))
    code, _, err = cli(capsys, "validate", str(path))
    assert code == 2
    line = one_error_line(err)
    assert "algorithm.client_optimizer.state" in line and "'persist'" in line and "ef21" in line
