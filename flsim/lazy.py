"""Package re-exports imported on first use (PEP 562).

``flsim.compression`` and ``flsim.topology`` re-export names from submodules that import
torch, networkx or scipy. Loading a scenario needs only their torch-free config modules, and
commands such as ``flsim report`` or ``flsim list`` should not pay seconds of imports for a
name they never touch, so each package resolves its re-exports lazily.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, sources: dict[str, str]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` serving ``sources`` (public name → submodule of ``package``)."""

    def __getattr__(name: str) -> Any:
        if name not in sources:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{sources[name]}"), name)

    return __getattr__
