"""Loading a scenario completely: the parts that own its sections first, then validation.

Config validates the generic scenario and runs whatever the parts registered
(:mod:`flsim.config.sections`); it may not import the parts itself, since they sit above it.
This module, in the face, is where they are imported: the built-in parts, the installed
plugins and the scenario's own ``plugins``, in that order, before any name is looked up.
Every command and the Python API load scenarios through :func:`load_scenario`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flsim.config.bounds import check_values
from flsim.config.loading import raw_scenario
from flsim.config.loading import validate_scenario as validate_registered
from flsim.config.plugins import load_plugins
from flsim.config.schema import Scenario


def load_parts() -> None:
    """Import every built-in part that owns a scenario section; each registers on import.

    The algorithms (``algorithm``, and ``backend.vectorize``), tasks (``task``), topology,
    compression and studies own their sections; the engine's mode table owns the check
    that a section fits the algorithm's mode.
    """
    # Imported for their registrations only (each line binds the name ``flsim``).
    import flsim.algorithms
    import flsim.compression.config
    import flsim.engine.modes
    import flsim.studies.spec
    import flsim.tasks
    import flsim.topology.config  # noqa: F401


def validate_scenario(raw: dict[str, Any]) -> Scenario:
    """Validate a raw mapping, once every part and plugin that may own a section is loaded."""
    check_values(raw)  # a malformed plugins list is reported before any import runs
    load_parts()
    load_plugins(raw.get("plugins"))
    return validate_registered(raw)


def load_scenario(source: str | Path | dict[str, Any], overrides: list[str] | None = None) -> Scenario:
    """A validated :class:`Scenario` from a YAML path or a mapping, with overrides applied."""
    return validate_scenario(raw_scenario(source, overrides))
