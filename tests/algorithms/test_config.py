"""Bad hyperparameters are rejected at load time, naming the dotted key."""

from __future__ import annotations

import pytest

from flsim.algorithms import REGISTRY, parse_algorithm_config
from flsim.cli import main
from flsim.config.errors import ConfigError, ConfigErrors
from flsim.scenario import load_scenario
from tests.algorithms import CENTRALIZED
from tests.builders import tiny_linreg


def _error_keys(raw) -> list[str]:
    with pytest.raises((ConfigError, ConfigErrors)) as info:
        load_scenario(raw)
    exc = info.value
    return [e.key for e in exc.errors] if isinstance(exc, ConfigErrors) else [exc.key]


@pytest.mark.parametrize(
    ("algorithm", "key"),
    [
        ({"name": "fedsam", "rho": -0.1}, "algorithm.rho"),
        ({"name": "fedspeed", "rho": -1.0}, "algorithm.rho"),
        ({"name": "fedspeed", "alpha": 1.5}, "algorithm.alpha"),
        ({"name": "fedspeed", "alpha": -0.5}, "algorithm.alpha"),
        ({"name": "fedspeed", "lamb": 0.0}, "algorithm.lamb"),
        ({"name": "fedspeed", "h_average": "some"}, "algorithm.h_average"),
        ({"name": "fedamd", "anchor_prob": 1.2}, "algorithm.anchor_prob"),
        ({"name": "fedamd", "anchor_prob": -0.1}, "algorithm.anchor_prob"),
        ({"name": "fedamd", "period": 0}, "algorithm.period"),
        ({"name": "fedprox", "mu": -0.01}, "algorithm.mu"),
        ({"name": "feddyn", "alpha": 0.0}, "algorithm.alpha"),
        ({"name": "scaffold", "lr": -0.1}, "algorithm.lr"),
        ({"name": "fedbuff", "buffer_size": 0}, "algorithm.buffer_size"),
        ({"name": "fedbuff", "buffer_size": 7}, "algorithm.buffer_size"),  # tiny_linreg has 6 clients
        ({"name": "fedbuff", "buffer_size": 2, "max_concurrency": 9}, "algorithm.max_concurrency"),
        ({"name": "fedbuff", "staleness_weight": "linear"}, "algorithm.staleness_weight"),
        ({"name": "fedavg", "momentum": 1.0}, "algorithm.momentum"),
        ({"name": "fedsam", "clip_norm": 0}, "algorithm.clip_norm"),
    ],
)
def test_bad_hyperparameters_are_rejected_naming_the_key(algorithm, key):
    keys = _error_keys(tiny_linreg(algorithm=algorithm))
    assert any(k == key or k.startswith(key + ".") for k in keys), keys


def test_fedamd_period_and_anchor_prob_are_exclusive():
    keys = _error_keys(tiny_linreg(algorithm={"name": "fedamd", "period": 2, "anchor_prob": 0.3}))
    assert keys == ["algorithm"]


def test_cli_validate_exits_2_naming_the_buffer_size(tmp_path, capsys):
    import yaml

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(tiny_linreg(algorithm={"name": "fedbuff", "buffer_size": 50})))
    assert main(["validate", str(path)]) == 2
    captured = capsys.readouterr()
    assert "algorithm.buffer_size" in captured.out + captured.err


def test_defaults_are_the_specs():
    speed = parse_algorithm_config({"name": "fedspeed"})
    assert (speed.lr, speed.lr_decay, speed.lamb, speed.rho, speed.weight_decay, speed.batch_size) == (
        0.1,
        0.998,
        0.1,
        0.1,
        1e-3,
        50,
    )
    assert (speed.local_epochs, speed.local_steps, speed.clip_norm, speed.alpha) == (5, None, 10.0, 1.0)
    assert (speed.perturb_normalized, speed.h_average) == (True, "all")
    assert parse_algorithm_config({"name": "fedspeed", "local_steps": 7}).local_steps == 7
    amd = parse_algorithm_config({"name": "fedamd"})
    assert (amd.lr, amd.server_lr, amd.local_steps, amd.batch_size, amd.anchor_batch, amd.anchor_prob) == (
        0.01,
        1.0,
        10,
        64,
        "full",
        0.2,
    )
    buff = parse_algorithm_config({"name": "fedbuff"})
    assert (buff.buffer_size, buff.staleness_weight, buff.weighting) == (10, "sqrt", "uniform")


@pytest.mark.parametrize("name", CENTRALIZED)
def test_every_example_scenario_validates(name):
    load_scenario(REGISTRY[name].example_scenario(tiny_linreg()))
