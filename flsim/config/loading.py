"""YAML loading, ``-o dotted.key=value`` overrides, and validation of a scenario mapping.

Everything that can be wrong with a scenario is found here, before a run directory exists,
so a bad file never leaves a half-written result behind. The sections that parts own are
checked through the registries of :mod:`flsim.config.sections`; importing those parts is
the job of the layer above (:mod:`flsim.scenario`), since config may not import them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from flsim.config.bounds import check_values
from flsim.config.errors import ConfigError, errors_from_validation
from flsim.config.schema import Scenario
from flsim.config.sections import run_checks
from flsim.config.yamlsafe import YamlLimitError, load_file, load_text


def parse_override(text: str) -> tuple[str, Any]:
    """``a.b=value`` → (``a.b``, value parsed as YAML, so ``3`` is an int and ``[1,2]`` a list)."""
    if "=" not in text:
        raise ConfigError("-o", text, "an override must look like dotted.key=value")
    key, _, raw = text.partition("=")
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError("-o", text, "empty key in override")
    try:
        value = load_text(raw) if raw.strip() else raw
    except YamlLimitError as exc:
        raise ConfigError(key, raw, f"YAML refused: {exc}") from None
    except yaml.YAMLError:
        value = raw
    return key, value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set each dotted key in a copy of the raw mapping; the schema coerces the values later."""
    data = yaml.safe_load(yaml.safe_dump(raw))  # deep copy of plain data
    for text in overrides:
        key, value = parse_override(text)
        node = data
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(
                    ".".join(parts[: depth + 1]), child, "is not a mapping, cannot set a sub-key"
                )
            node = child
        node[parts[-1]] = value
    return data


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError("scenario", str(path), "file not found")
    data = load_file(path, "scenario")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("scenario", str(path), "the top level must be a mapping")
    return data


def validate_scenario(raw: dict[str, Any]) -> Scenario:
    """Validate a raw mapping: bounds on every value, the schema, then every registered check.

    The parts that own a section registered its model or its check
    (:mod:`flsim.config.sections`): the algorithm's hyperparameters, the dataset's parameters,
    the study, the topology, and the sections the algorithm's mode would ignore are checked
    here too, so everything a run would reject is found before it writes anything.
    """
    check_values(raw)
    try:
        scenario = Scenario.model_validate(raw)
    except ValidationError as exc:
        raise errors_from_validation(exc) from None
    # Sections with their own models may coerce text ("inf") into a float: check the result.
    check_values(scenario.model_dump(mode="python"))
    run_checks(scenario)
    return scenario


def raw_scenario(source: str | Path | dict[str, Any], overrides: list[str] | None = None) -> dict[str, Any]:
    """The mapping a YAML path (or a mapping) holds, bounded, with ``-o`` overrides applied."""
    raw = dict(source) if isinstance(source, dict) else read_yaml(source)
    check_values(raw)  # before the copy in apply_overrides, which recurses
    return apply_overrides(raw, overrides or [])
