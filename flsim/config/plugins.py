"""Plugins: a user's own modules that add algorithms (or datasets, models, topologies) to flsim.

A plugin is a plain Python module that calls a registry's ``register`` when it is imported
(for an algorithm, :func:`flsim.algorithms.base.register`). It reaches flsim in two ways:

- installed, as an entry point of the group ``flsim.plugins`` (``[project.entry-points]``
  in its ``pyproject.toml``): every such module is imported once per process, before the
  first scenario is validated;
- named by a scenario, ``plugins: [my_module]``: imported before the scenario's
  ``algorithm`` section is checked, so that its name is known by then.

The scenario loader (:mod:`flsim.scenario`) calls :func:`load_plugins` before it validates,
since validation is where a name is first looked up; every Ray actor calls it again
(:mod:`flsim.backends.actor_scenario`), since its process validated nothing. Both layers need
it, so it sits on the ground floor; the import is dynamic, so config depends on no plugin.
A plugin is trusted code: importing it runs it (the README's Security section).
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

from flsim.config.errors import ConfigError, clip

#: The entry-point group that installed plugins declare.
GROUP = "flsim.plugins"
_entry_points_loaded = False


def _import(key: str, name: str) -> ModuleType:
    """Import one plugin module; any failure is the user's input, named by ``key``."""
    try:
        return importlib.import_module(name)
    except Exception as exc:  # a plugin's own import error (any type) is the user's to fix
        reason = clip(f"{type(exc).__name__}: {exc}", 160)
        raise ConfigError(key, name, f"cannot import module {name!r} ({reason})") from None


def load_entry_point_plugins() -> None:
    """Import every installed ``flsim.plugins`` entry point, once per process."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for point in entry_points(group=GROUP):
        _import(f"entry point {GROUP}:{point.name}", point.value.partition(":")[0])


def check_plugins_key(raw: Any) -> list[str]:
    """The ``plugins`` value as a list of module names, or an error naming the bad entry."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ConfigError("plugins", raw, "must be a list of module names")
    for index, name in enumerate(raw):
        if not isinstance(name, str) or not all(part.isidentifier() for part in name.split(".")):
            raise ConfigError(f"plugins.{index}", name, "is no module name (dotted Python identifiers)")
    return list(raw)


def load_plugins(modules: Any) -> list[ModuleType]:
    """Import the installed plugins and the scenario's ``plugins`` list; returns the latter."""
    load_entry_point_plugins()
    return [_import(f"plugins.{index}", name) for index, name in enumerate(check_plugins_key(modules))]


def shippable_paths(modules: list[str]) -> list[str]:
    """Where the scenario's plugin modules live, for Ray's ``runtime_env["py_modules"]``.

    A package ships as its directory and a single-file module as its ``.py`` file, so actors
    on other machines (or a local cluster started from another directory) can import it.
    Modules installed in site-packages are left out: they are expected to be installed on
    every node, like flsim itself.
    """
    paths = []
    for module in load_plugins(modules):
        path = Path(module.__path__[0]) if hasattr(module, "__path__") else Path(module.__file__ or "")
        if path.name and not any(part in ("site-packages", "dist-packages") for part in path.parts):
            paths.append(str(path))
    return paths
