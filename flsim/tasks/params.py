"""Typed, validated reads of ``task.dataset_params``.

``dataset_params`` is a free-form mapping in the schema (each dataset has its own knobs), so
the schema cannot catch a typo such as ``samples_per_clinet``. Every dataset reads its
parameters through :class:`DatasetParams` in one function per dataset (the dataset's typed
parameter set, ``flsim.tasks.DATASET_PARAMS``), which ends with :meth:`DatasetParams.finish`:
any key it did not read becomes a :class:`ConfigError` naming the dotted key. A wrong type,
an out-of-range value or a missing data directory is reported the same way. ``validate``
calls these functions too, so all of this is found before a run directory exists.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flsim.config.errors import ConfigError

PREFIX = "task.dataset_params"
#: Most numbers a generated dataset may hold (features and labels of all clients).
MAX_DATA_VALUES = 250_000_000
#: Largest feature dimension or per-client sample count a parameter may ask for.
MAX_DIM = 100_000
MAX_SAMPLES = 10_000_000


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

    def integer(
        self, name: str, default: int, *, minimum: int | None = None, maximum: int | None = None
    ) -> int:
        present, value = self._take(name)
        if not present:
            return default
        return self._check_int(name, value, minimum, maximum)

    def optional_integer(
        self, name: str, *, minimum: int | None = None, maximum: int | None = None
    ) -> int | None:
        present, value = self._take(name)
        if not present or value is None:
            return None
        return self._check_int(name, value, minimum, maximum)

    def _check_int(self, name: str, value: Any, minimum: int | None, maximum: int | None) -> int:
        # bool is an int subclass; `dim: true` is a typo, not 1.
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(self.key(name), value, "must be an integer")
        if minimum is not None and value < minimum:
            raise ConfigError(self.key(name), value, f"must be >= {minimum}")
        if maximum is not None and value > maximum:
            raise ConfigError(self.key(name), value, f"must be <= {maximum}")
        return int(value)

    def real(
        self,
        name: str,
        default: float,
        *,
        minimum: float | None = None,
        exclusive_minimum: float | None = None,
        maximum: float | None = None,
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
        if maximum is not None and number > maximum:
            raise ConfigError(self.key(name), value, f"must be <= {maximum}")
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

    def check_size(self, values: int, what: str) -> None:
        """Refuse parameters that would generate more than :data:`MAX_DATA_VALUES` numbers.

        Each parameter can be reasonable alone while their product fills the memory; the
        check runs before any data is drawn, so ``validate`` reports it too.
        """
        if values > MAX_DATA_VALUES:
            raise ConfigError(
                PREFIX,
                self._raw,
                f"{what} is {values:.3g} numbers, more than the {MAX_DATA_VALUES:.0e} allowed",
            )

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
