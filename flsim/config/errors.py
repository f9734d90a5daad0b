"""The one error type that means "the user's input is wrong" (CLI exit code 2)."""

from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """A bad scenario, override or CLI argument, naming the offending dotted key and value."""

    def __init__(self, key: str, value: Any, reason: str) -> None:
        self.key = key
        self.value = value
        self.reason = reason
        super().__init__(f"{key}: {reason} (got {value!r})")


class ConfigErrors(ValueError):
    """Several :class:`ConfigError` at once, so a user can fix a file in one pass."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))
