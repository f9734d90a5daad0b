"""YAML loading, ``-o dotted.key=value`` overrides, and translation of validation errors.

Everything that can be wrong with a scenario is found here, before a run directory exists,
so a bad file never leaves a half-written result behind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from flsim.config.bounds import check_values
from flsim.config.errors import ConfigError, ConfigErrors
from flsim.config.schema import Scenario
from flsim.config.yamlsafe import YamlLimitError, load_file, load_text


def _errors_from_validation(exc: ValidationError, prefix: str = "") -> ConfigErrors:
    errors = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"]) or "(scenario)"
        if prefix:
            key = f"{prefix}.{key}" if err["loc"] else prefix
        message = err["msg"].removeprefix("Value error, ")
        errors.append(ConfigError(key, err.get("input"), message))
    return ConfigErrors(errors)


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
    """Validate a raw mapping: bounds on every value, the schema, then each part's own section.

    The algorithm's hyperparameter model, the dataset's parameters and the topology are
    checked here too, so everything a run would reject is found before it writes anything.
    """
    from flsim.algorithms import REGISTRY, parse_algorithm_config
    from flsim.config.plugins import load_plugins

    check_values(raw)
    load_plugins(raw.get("plugins"))  # before any name is looked up in a registry
    try:
        scenario = Scenario.model_validate(raw)
    except ValidationError as exc:
        raise _errors_from_validation(exc) from None
    # Sections with their own models may coerce text ("inf") into a float: check the result.
    check_values(scenario.model_dump(mode="python"))
    if scenario.kind == "federated":
        try:
            config = parse_algorithm_config(scenario.algorithm)
        except ValidationError as exc:
            raise _errors_from_validation(exc, prefix="algorithm") from None
        check_values(config.model_dump(mode="python"), "algorithm")
        # Checks that need the scenario as well (buffer_size <= task.num_clients, ...).
        REGISTRY[config.name].validate_against(config, scenario)
        from flsim.tasks import check_task

        check_task(scenario.task)
        _check_mode_sections(scenario, config.name, getattr(REGISTRY[config.name], "mode", "sync"))
    else:
        _check_study(scenario)
    return scenario


def _check_mode_sections(scenario: Scenario, name: str, mode: str) -> None:
    """Sections that only some driver modes use: a section the mode would ignore is an error."""
    if scenario.topology is not None and mode not in ("gossip", "events"):
        raise ConfigError(
            "topology",
            scenario.topology.kind or scenario.topology.file,
            f"{name!r} is a {mode!r} algorithm and ignores the topology; remove the section",
        )
    if scenario.topology is not None:
        from flsim.topology.schedule import check_topology

        check_topology(scenario.topology, scenario.task.num_clients, scenario.seed)
    if scenario.time == "wall" and mode != "events":
        raise ConfigError("time", "wall", f"wall-clock mode runs event-driven algorithms, not {mode!r} ones")
    if scenario.compression.choco is not None and mode != "gossip":
        reason = f"CHOCO corrects gossip between nodes; {name!r} is a {mode!r} algorithm"
        raise ConfigError("compression.choco", scenario.compression.choco.model_dump(), reason)
    if scenario.compression.downlink is not None and mode != "sync":
        reason = f"a compressed downlink is supported by the synchronous driver only, not {mode!r}"
        raise ConfigError("compression.downlink", scenario.compression.downlink.kind, reason)


def _check_study(scenario: Scenario) -> None:
    """The study exists and its parameters fit its own model."""
    from flsim.studies import load_builtin_studies

    studies = load_builtin_studies()
    if scenario.study.get("name") not in studies:
        raise ConfigError(
            "study.name", scenario.study.get("name"), f"unknown study; choose from {sorted(studies)}"
        )
    parameters = {key: value for key, value in scenario.study.items() if key != "name"}
    try:
        studies[scenario.study["name"]].params.model_validate(parameters)
    except ValidationError as exc:
        raise _errors_from_validation(exc, prefix="study") from None


def load_scenario(source: str | Path | dict[str, Any], overrides: list[str] | None = None) -> Scenario:
    """A validated :class:`Scenario` from a YAML path or a mapping, with overrides applied."""
    raw = dict(source) if isinstance(source, dict) else read_yaml(source)
    check_values(raw)  # before the copy in apply_overrides, which recurses
    return validate_scenario(apply_overrides(raw, overrides or []))
