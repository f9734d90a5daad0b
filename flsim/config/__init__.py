"""Scenario configuration: the generic schema, bounded YAML loading and overrides, ConfigError,
and the registries through which the parts validate the sections they own.

The re-exports resolve on first use (PEP 562): the many modules that need only
:class:`ConfigError` do not load the schema, the YAML reader and pydantic's models with it.
"""

from __future__ import annotations

from flsim.lazy import lazy_exports

__all__ = ["ConfigError", "ConfigErrors", "Scenario", "validate_scenario"]

__getattr__ = lazy_exports(
    "flsim.config",
    {"ConfigError": "errors", "ConfigErrors": "errors", "Scenario": "schema", "validate_scenario": "loading"},
)
