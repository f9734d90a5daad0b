"""Typed, validated reads of ``task.dataset_params``.

``dataset_params`` is a free-form mapping in the schema (each dataset has its own knobs), so
the schema cannot catch a typo such as ``samples_per_clinet``. Every dataset builder reads
its parameters through :class:`DatasetParams` and calls :meth:`DatasetParams.finish`, which
turns any key it did not read into a :class:`ConfigError` naming the dotted key. A wrong
type or an out-of-range value is reported the same way, before any data is generated.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flsim.config.errors import ConfigError

PREFIX = "task.dataset_params"


class DatasetParams:
    """Reads one dataset's parameters, checking type and range, and remembering what was read."""

    def __init__(self, dataset: str, raw: Mapping[str, Any]) -> None:
        self.dataset = dataset
        self._raw = dict(raw)
        self._known: list[str] = []

    @staticmethod
    def key(name: str) -> str:
        """The dotted key a user wrote, for error messages."""
        return f"{PREFIX}.{name}"

    def _take(self, name: str) -> tuple[bool, Any]:
        self._known.append(name)
        if name in self._raw:
            return True, self._raw[name]
        return False, None

    def integer(self, name: str, default: int, *, minimum: int | None = None) -> int:
        present, value = self._take(name)
        if not present:
            return default
        return self._check_int(name, value, minimum)

    def optional_integer(self, name: str, *, minimum: int | None = None) -> int | None:
        present, value = self._take(name)
        if not present or value is None:
            return None
        return self._check_int(name, value, minimum)

    def _check_int(self, name: str, value: Any, minimum: int | None) -> int:
        # bool is an int subclass; `dim: true` is a typo, not 1.
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(self.key(name), value, "must be an integer")
        if minimum is not None and value < minimum:
            raise ConfigError(self.key(name), value, f"must be >= {minimum}")
        return int(value)

    def real(
        self,
        name: str,
        default: float,
        *,
        minimum: float | None = None,
        exclusive_minimum: float | None = None,
    ) -> float:
        present, value = self._take(name)
        if not present:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(self.key(name), value, "must be a number")
        number = float(value)
        if not math.isfinite(number):
            raise ConfigError(self.key(name), value, "must be finite")
        if minimum is not None and number < minimum:
            raise ConfigError(self.key(name), value, f"must be >= {minimum}")
        if exclusive_minimum is not None and number <= exclusive_minimum:
            raise ConfigError(self.key(name), value, f"must be > {exclusive_minimum}")
        return number

    def boolean(self, name: str, default: bool) -> bool:
        present, value = self._take(name)
        if not present:
            return default
        if not isinstance(value, bool):
            raise ConfigError(self.key(name), value, "must be true or false")
        return value

    def path(self, name: str, what: str) -> Path:
        """A required, existing directory; ``what`` says what it must contain."""
        present, value = self._take(name)
        if not present or value is None:
            raise ConfigError(self.key(name), None, f"required for dataset {self.dataset!r}: {what}")
        if not isinstance(value, str | Path) or str(value) == "":
            raise ConfigError(self.key(name), value, "must be a directory path")
        path = Path(value).expanduser()
        if not path.is_dir():
            raise ConfigError(self.key(name), value, f"no such directory; expected {what}")
        return path

    def finish(self) -> None:
        """Reject keys that no read asked for: they are typos or belong to another dataset."""
        unknown = sorted(set(self._raw) - set(self._known), key=str)
        if unknown:
            name = unknown[0]
            known = ", ".join(sorted(self._known)) or "none"
            raise ConfigError(
                self.key(str(name)),
                self._raw[name],
                f"unknown parameter for dataset {self.dataset!r} (known: {known})",
            )
