"""Scenario validation: bad input names the dotted key and value, exits 2, writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from flsim.cli import main
from flsim.config.errors import ConfigError, ConfigErrors
from flsim.config.loading import apply_overrides
from flsim.scenario import load_scenario
from tests.builders import tiny_linreg


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("mutation", "key", "value"),
    [
        ({"algorithm": {"name": "fedavg", "lr": -0.5}}, "algorithm.lr", "-0.5"),
        ({"algorithm": {"name": "fedavg", "lr_rate": 0.1}}, "algorithm.lr_rate", "0.1"),
        ({"task": {"num_clients": "many"}}, "task.num_clients", "many"),
        ({"task": {"partition": {"kind": "zipf"}}}, "task.partition.kind", "zipf"),
        ({"rounds": 0}, "rounds", "0"),
        ({"colour": "blue"}, "colour", "blue"),
        ({"algorithm": {"name": "fedmagic"}}, "algorithm.name", "fedmagic"),
        ({"system": {"compute": {"slow_fraction": 1.5}}}, "system.compute.slow_fraction", "1.5"),
    ],
)
def test_bad_values_name_the_key_and_value(tmp_path, capsys, mutation, key, value):
    data = tiny_linreg(**mutation, output={"dir": str(tmp_path / "results")})
    path = _write(tmp_path, data)
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert key in err
    assert value in err
    assert not (tmp_path / "results").exists(), "a rejected scenario must not create a run directory"


def test_validate_reports_every_file(tmp_path, capsys):
    good = _write(tmp_path, tiny_linreg())
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(tiny_linreg(rounds=-1)))
    assert main(["validate", str(good)]) == 0
    assert main(["validate", str(good), str(bad)]) == 2
    captured = capsys.readouterr()
    assert "ok" in captured.out
    assert "rounds" in captured.err


def test_overrides_are_coerced_through_the_schema():
    scenario = load_scenario(tiny_linreg(), ["algorithm.lr=0.25", "seed=7", "task.partition.alpha=0.1"])
    assert scenario.seed == 7
    assert scenario.algorithm["lr"] == 0.25
    assert scenario.task.partition.alpha == pytest.approx(0.1)
    with pytest.raises(ConfigErrors) as info:
        load_scenario(tiny_linreg(), ["algorithm.local_steps=lots"])
    assert "algorithm.local_steps" in str(info.value)


def test_override_syntax_errors_are_config_errors():
    with pytest.raises(ConfigError):
        apply_overrides({}, ["no_equals_sign"])
    with pytest.raises(ConfigError):
        apply_overrides({"seed": 3}, ["seed.inner=1"])


def test_exclusive_options_are_rejected():
    with pytest.raises(ConfigErrors, match="local_steps or local_epochs"):
        load_scenario(tiny_linreg(algorithm={"name": "fedavg", "local_steps": 2, "local_epochs": 1}))
    with pytest.raises(ConfigErrors, match="clients_per_round or participation"):
        load_scenario(tiny_linreg(participation=0.5))
    with pytest.raises(ConfigErrors, match="exceeds"):
        load_scenario(tiny_linreg(clients_per_round=60))


def test_shipped_scenarios_validate():
    files = sorted(Path("scenarios").rglob("*.yaml"))
    assert files, "no scenarios shipped"
    assert main(["validate", *map(str, files)]) == 0
