"""YAML loading with bounds, so a tiny hostile file cannot exhaust memory or the stack.

``yaml.safe_load`` never runs code, but it still expands aliases: a 400-byte "billion
laughs" file builds a structure whose copies (overrides, validation) need gigabytes, and a
1,000-level nesting overflows the recursion limit. Before anything is constructed, one pass
over the parser's event stream (iterative, so it cannot overflow) checks:

* the text is at most :data:`MAX_BYTES` bytes of UTF-8;
* nesting is at most :data:`MAX_DEPTH` levels;
* the document, with every alias expanded, has at most :data:`MAX_NODES` nodes (anchors and
  aliases stay allowed, as shipped scenarios use them to share a section);
* no alias refers to a collection that contains it (a recursive structure).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from flsim.config.errors import ConfigError

MAX_BYTES = 1 << 20
#: libyaml's parser when it is installed (about 10x faster); the same documents either way.
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
MAX_DEPTH = 50
MAX_NODES = 100_000


class YamlLimitError(ValueError):
    """The text breaks one of the bounds; the message says which."""


def _check_events(text: str) -> None:
    """Walk the event stream once: depth, expanded size, recursive aliases."""
    sizes: dict[str, int] = {}  # anchor -> expanded node count
    stack: list[list[Any]] = []  # open collections: [anchor, node count so far]
    total = 0
    for event in yaml.parse(text, Loader=_LOADER):
        if isinstance(event, yaml.AliasEvent):
            if any(frame[0] == event.anchor for frame in stack):
                raise YamlLimitError(f"alias *{event.anchor} refers to a collection that contains it")
            count = sizes.get(event.anchor, 1)
        elif isinstance(event, yaml.ScalarEvent):
            count = 1
            if event.anchor is not None:
                sizes[event.anchor] = 1
        elif isinstance(event, yaml.CollectionStartEvent):
            stack.append([event.anchor, 1])
            if len(stack) > MAX_DEPTH:
                raise YamlLimitError(f"nested more than {MAX_DEPTH} levels deep")
            continue
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, count = stack.pop()
            if anchor is not None:
                sizes[anchor] = count
        else:
            continue
        total += count
        if stack:
            stack[-1][1] += count
        if total > MAX_NODES or (stack and stack[-1][1] > MAX_NODES):
            raise YamlLimitError(f"more than {MAX_NODES} values once aliases are expanded")


def load_text(text: str) -> Any:
    """``yaml.safe_load`` within the bounds; raises :class:`YamlLimitError` or ``yaml.YAMLError``."""
    if len(text) > MAX_BYTES:
        raise YamlLimitError(f"longer than {MAX_BYTES} characters")
    _check_events(text)
    return yaml.load(text, Loader=_LOADER)  # a safe loader: C or Python


def read_text(path: Path, key: str) -> str:
    """A file's text, as UTF-8 and at most :data:`MAX_BYTES`; otherwise a ConfigError on ``key``."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(key, str(path), f"cannot read the file ({exc.strerror})") from None
    if len(data) > MAX_BYTES:
        raise ConfigError(key, str(path), f"file is larger than {MAX_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(key, str(path), f"not UTF-8 text (bad byte at offset {exc.start})") from None


def load_file(path: str | Path, key: str) -> Any:
    """A YAML file within the bounds; every problem is a one-line ConfigError on ``key``.

    The message never quotes the file: it may be something the user should not see echoed
    (a path given by mistake, or on purpose, such as a system file).
    """
    path = Path(path)
    text = read_text(path, key)
    try:
        return load_text(text)
    except YamlLimitError as exc:
        raise ConfigError(key, str(path), f"YAML refused: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(key, str(path), f"invalid YAML{_where(exc)}") from None


def _where(exc: yaml.YAMLError) -> str:
    """Line and column of a YAML error, without the snippet of the file PyYAML adds."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{at}: {problem}" if problem else at
