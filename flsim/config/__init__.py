"""Scenario configuration: the generic schema, bounded YAML loading and overrides, ConfigError.

The re-exports resolve on first use (PEP 562): the parts that own a scenario section
(compression, topology) import :mod:`flsim.config.errors`, and an eager import of the schema
here would import them back while they are still half-initialised.
"""

from __future__ import annotations

from flsim.lazy import lazy_exports

__all__ = ["ConfigError", "ConfigErrors", "Scenario", "load_scenario"]

__getattr__ = lazy_exports(
    "flsim.config",
    {"ConfigError": "errors", "ConfigErrors": "errors", "Scenario": "schema", "load_scenario": "loading"},
)
