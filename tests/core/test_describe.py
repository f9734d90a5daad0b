"""``flsim list --details`` and ``flsim schema`` read the pydantic models the loader uses."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest

from flsim.cli import main
from flsim.config.loading import read_yaml

ROOT = Path(__file__).resolve().parents[2]


def test_details_of_one_algorithm_show_types_defaults_and_descriptions(capsys):
    assert main(["list", "--details", "fedprox"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("fedprox (algorithm)")
    # One line per parameter, names padded to the longest one (its width is not the point).
    assert re.search(r"\n  mu +float = 0\.01\n", out)
    assert re.search(r"\n  lr_decay +float = 1\.0  # Per-round multiplicative decay of lr\.\n", out)


def test_details_cover_algorithms_datasets_and_studies(capsys):
    assert main(["list", "--details", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert set(listing) == {"algorithms", "datasets", "studies"}
    assert {"fedavg", "scaffold"} <= set(listing["algorithms"])
    assert "digits" in listing["datasets"] and listing["studies"]
    seeds = {r["name"]: r for r in next(iter(listing["studies"].values()))}
    assert "seeds" in seeds


def test_details_of_an_unknown_name_exit_2(capsys):
    assert main(["list", "--details", "fedsgdx"]) == 2
    assert "fedsgdx" in capsys.readouterr().err


@pytest.fixture(scope="module")
def schema(tmp_path_factory):
    path = tmp_path_factory.mktemp("schema") / "scenario.schema.json"
    assert main(["schema", "--output", str(path)]) == 0
    return json.loads(path.read_text())


def _yaml12(value):
    """PyYAML reads ``1.0e6`` as text (YAML 1.1); editors' YAML 1.2 reads a number, as pydantic does."""
    if isinstance(value, dict):
        return {k: _yaml12(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_yaml12(v) for v in value]
    if isinstance(value, str) and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+", value):
        return float(value)
    return value


def _shipped_scenarios():
    for path in sorted((ROOT / "scenarios").rglob("*.yaml")):
        raw = read_yaml(path)
        if "sweep" not in raw:
            yield path, _yaml12(raw)


def test_every_shipped_scenario_is_valid_under_the_schema(schema):
    validator = jsonschema.Draft202012Validator(schema)
    checked = 0
    for path, raw in _shipped_scenarios():
        errors = list(validator.iter_errors(raw))
        assert not errors, f"{path}: {errors[0].message}"
        checked += 1
    assert checked > 10


@pytest.mark.parametrize(
    "bad",
    [
        {"rounds": 0},
        {"algorithm": {"name": "fedprox", "mu_typo": 1}},
        {"algorithm": {"name": "no_such_algorithm"}},
        {"task": {"datset": "digits"}},
        # Sections whose models their parts register (flsim.config.sections) are embedded too.
        {"compression": {"uplink": {"kind": "no_such_compressor"}}},
        {"topology": {"kind": "ring", "mixing_typo": "metropolis"}},
    ],
)
def test_the_schema_rejects_what_validate_rejects(schema, bad):
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema, cls=jsonschema.Draft202012Validator)
