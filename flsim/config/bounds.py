"""Limits every scenario value must respect, whatever section it belongs to.

Sections owned by other parts (algorithm hyperparameters, ``dataset_params``, ``study``,
topology ``params``) are free-form mappings until their part validates them, and some are
only read when a run starts. These checks walk the whole mapping first, so a value that no
part could use safely is refused at load time with its dotted key, by ``validate`` as well
as ``run``:

* a float that is not finite (``lr: .inf``): no hyperparameter or size means anything then;
* an integer outside the signed 64-bit range (seeds and counts end up in numpy, torch and
  parquet, which would overflow or fail later, far from the scenario);
* a string longer than :data:`MAX_STRING` or holding a NUL byte (paths, names).
"""

from __future__ import annotations

import math
from typing import Any

from flsim.config.errors import ConfigError

#: Bounds of a signed 64-bit integer: what numpy, torch and parquet can hold.
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
MAX_STRING = 4096
#: Deepest nesting and most values of a scenario given as a Python mapping (YAML files have
#: the same bounds in :mod:`flsim.config.yamlsafe`); shared sub-objects count each time.
MAX_DEPTH = 50
MAX_NODES = 100_000


def _problem(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number"
    if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        return "is out of range (integers must fit in 64 bits)"
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            return f"is longer than {MAX_STRING} characters"
        if "\x00" in value:
            return "contains a NUL byte"
    return None


def check_values(data: Any, prefix: str = "") -> None:
    """Raise :class:`ConfigError` on the first value out of bounds, naming its dotted key.

    Iterative, so a deeply nested mapping built in Python cannot overflow the stack.
    """
    pending: list[tuple[str, Any, int]] = [(prefix, data, 0)]
    visited = 0
    while pending:
        key, value, depth = pending.pop()
        visited += 1
        if visited > MAX_NODES:
            raise ConfigError(prefix or "(scenario)", "...", f"holds more than {MAX_NODES} values")
        if depth > MAX_DEPTH:
            raise ConfigError(key, "...", f"nested more than {MAX_DEPTH} levels deep")
        if isinstance(value, dict):
            for child, item in value.items():
                name = str(child)
                problem = _problem(child)
                if problem is not None:
                    raise ConfigError(f"{key}.<key>" if key else "<key>", child, f"a key {problem}")
                pending.append((f"{key}.{name}" if key else name, item, depth + 1))
        elif isinstance(value, list | tuple):
            pending.extend((f"{key}[{index}]", item, depth + 1) for index, item in enumerate(value))
        else:
            problem = _problem(value)
            if problem is not None:
                raise ConfigError(key or "(scenario)", value, problem)
