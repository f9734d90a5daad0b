"""Scenario schema, YAML loading and overrides."""

from flsim.config.errors import ConfigError, ConfigErrors
from flsim.config.loading import load_scenario
from flsim.config.schema import Scenario

__all__ = ["ConfigError", "ConfigErrors", "Scenario", "load_scenario"]
