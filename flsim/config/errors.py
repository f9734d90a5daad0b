"""The one error type that means "the user's input is wrong" (CLI exit code 2)."""

from __future__ import annotations

import reprlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import ValidationError

#: Longest echo of a bad value (or key) in a message: a bad input can be megabytes long, and
#: the message must stay one readable line.
MAX_ECHO = 200
#: Longest reason: reasons can quote a parser's message, which can be long too.
MAX_REASON = 240


def _short_repr() -> reprlib.Repr:
    short = reprlib.Repr()
    short.maxstring = short.maxother = short.maxlong = MAX_ECHO
    short.maxlevel, short.maxdict, short.maxlist, short.maxtuple = 3, 6, 6, 6
    return short


_SHORT = _short_repr()


def clip(text: str, limit: int) -> str:
    """``text`` on one line and at most ``limit`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def echo(value: Any) -> str:
    """``repr(value)``, capped at :data:`MAX_ECHO` characters and on one line."""
    try:
        text = _SHORT.repr(value)
    except (RecursionError, ValueError):  # a deep structure, or an int too long to print
        text = f"<{type(value).__name__}>"
    return clip(text, MAX_ECHO)


class ConfigError(ValueError):
    """A bad scenario, override or CLI argument, naming the offending dotted key and value."""

    def __init__(self, key: str, value: Any, reason: str) -> None:
        self.key = key
        self.value = value
        self.reason = reason
        super().__init__(f"{clip(key, MAX_ECHO)}: {clip(reason, MAX_REASON)} (got {echo(value)})")

    def __reduce__(self) -> tuple[type[ConfigError], tuple[str, Any, str]]:
        """Pickle by the three fields: a check that fails in a Ray actor (where the data is
        built) must reach the driver as this error, not as Ray's stand-in for one it cannot
        rebuild (the default pickles ``args``, the one formatted message)."""
        return type(self), (self.key, self.value, self.reason)


class ConfigErrors(ValueError):
    """Several :class:`ConfigError` at once, so a user can fix a file in one pass."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))

    def __reduce__(self) -> tuple[type[ConfigErrors], tuple[list[ConfigError]]]:
        return type(self), (self.errors,)


def errors_from_validation(exc: ValidationError, prefix: str = "") -> ConfigErrors:
    """Pydantic's errors as :class:`ConfigError` s keyed by the full dotted path.

    ``prefix`` is the section a model validated on its own (``algorithm``, ``study``), so the
    key reads as the user wrote it: ``algorithm.lr``, not ``lr``.
    """
    errors = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"]) or "(scenario)"
        if prefix:
            key = f"{prefix}.{key}" if err["loc"] else prefix
        message = err["msg"].removeprefix("Value error, ")
        errors.append(ConfigError(key, err.get("input"), message))
    return ConfigErrors(errors)
