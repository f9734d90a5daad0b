"""The scenario as a Ray actor receives it: plain data, parsed again in the actor's process.

The actor's process loaded no scenario before. Two things must happen before the data is
parsed and used: the parts that own the typed sections (compression, topology) register
their models with :mod:`flsim.config.sections`, which importing them here does, and the
scenario's plugins are imported, so the algorithm a plugin registers can be looked up.
"""

from __future__ import annotations

from typing import Any

import flsim.compression.config
import flsim.topology.config  # noqa: F401 - both imported for their section registrations
from flsim.config.plugins import load_plugins
from flsim.config.schema import Scenario


def scenario_from_data(data: dict[str, Any]) -> Scenario:
    """``Scenario.model_dump()`` output, parsed again, with the scenario's plugins loaded."""
    scenario = Scenario.model_validate(data)
    load_plugins(scenario.plugins)
    return scenario
