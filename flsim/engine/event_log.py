"""Reading a wall-clock run's ``events.jsonl`` back, within bounds, for ``flsim replay``.

A run directory may have been copied from elsewhere or edited, so the log is untrusted input
like a scenario file (compare :mod:`flsim.config.yamlsafe`). One pass over the file, line by
line, never holding more than one bounded line of raw text, checks that:

* the file is a regular file (not a pipe or a device, which could block or never end);
* no line is longer than :data:`MAX_LINE_BYTES` and there are at most :data:`MAX_EVENTS`;
* each line is a UTF-8 JSON object ``{"t", "kind", "i", "j"}`` exactly as the wall run
  writes it: a finite time in ``[0, horizon + one evaluation interval]``, never earlier than
  the line before (the log is in time order, and the replay's evaluation grid relies on it),
  a known kind, node ids of the scenario (``j = -1`` for a gradient event).

The time bound matters for more than tidiness: the replay writes one metrics row per grid
point up to each event's time, so a time of 1e300 would mean an endless run. A wall run stops
its clocks at ``budget.time``; only a message already in flight lands after it, by the
network's latency, far below one evaluation interval.

Whether each communication is an edge of the scenario's graph is checked once the graphs are
built (:func:`check_edges`). Every problem is one :class:`ConfigError` naming the file and the
line; the message never quotes the file's text.
"""

from __future__ import annotations

import json
import math
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from flsim.config.errors import ConfigError

#: One event line as the wall run writes it is under 100 bytes; this leaves room for any id.
MAX_LINE_BYTES = 512
#: Far above what a real-time run records (each event costs real work), and a bound on memory.
MAX_EVENTS = 5_000_000

KINDS = ("gradient", "communication")

#: ``(time, kind, i, j)``: the replay's event tuple.
Event = tuple[float, str, int, int]


class _Refused(ValueError):
    """One line breaks a rule; the reader adds the file and the line number."""


def read_event_log(path: Path, num_nodes: int, horizon: float) -> list[Event]:
    """The events of ``path`` in file order; a :class:`ConfigError` on the first bad line."""
    _check_regular(path)
    events: list[Event] = []
    lineno = 0
    try:
        with open(path, "rb") as handle:
            while raw := handle.readline(MAX_LINE_BYTES + 1):
                lineno += 1
                if lineno > MAX_EVENTS:
                    raise _Refused(f"more than {MAX_EVENTS} events")
                if len(raw) > MAX_LINE_BYTES:
                    raise _Refused(f"longer than {MAX_LINE_BYTES} bytes")
                last = events[-1][0] if events else 0.0
                events.append(_parse(raw, num_nodes, horizon, last))
    except _Refused as exc:
        raise ConfigError("replay", str(path), f"events.jsonl line {lineno}: {exc}") from None
    except OSError as exc:
        raise ConfigError("replay", str(path), f"cannot read events.jsonl ({exc.strerror})") from None
    return events


def _check_regular(path: Path) -> None:
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise ConfigError("replay", str(path), f"cannot read events.jsonl ({exc.strerror})") from None
    if not stat.S_ISREG(mode):
        raise ConfigError("replay", str(path), "events.jsonl is not a regular file")


def _parse(raw: bytes, num_nodes: int, horizon: float, last: float) -> Event:
    """One line: decoded, parsed and checked against the scenario and the previous time."""
    try:
        record = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise _Refused("not UTF-8 text") from None
    except ValueError:
        raise _Refused("not a complete JSON object (a truncated or damaged line)") from None
    if not isinstance(record, dict) or sorted(record) != ["i", "j", "kind", "t"]:
        raise _Refused('not an event: an object with exactly the keys "t", "kind", "i", "j"')
    t, kind, i, j = record["t"], record["kind"], record["i"], record["j"]
    if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t):
        raise _Refused("time t is not a finite number")
    if not 0.0 <= t <= horizon:
        raise _Refused(f"time t={t:g} is outside [0, {horizon:g}] (budget.time plus one evaluation interval)")
    if t < last:
        raise _Refused(f"time t={t:g} is earlier than the line before ({last:g}): events are out of order")
    if kind not in KINDS:
        raise _Refused(f"kind is not one of {', '.join(KINDS)}")
    if not _node(i, num_nodes):
        raise _Refused(f"node i is not a node id in 0..{num_nodes - 1}")
    if kind == "gradient" and not (_is_int(j) and j == -1):
        raise _Refused("a gradient event has j = -1")
    if kind == "communication" and (not _node(j, num_nodes) or j == i):
        raise _Refused(f"node j is not a node id in 0..{num_nodes - 1} other than i")
    return float(t), kind, i, j


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _node(value: Any, num_nodes: int) -> bool:
    return _is_int(value) and 0 <= value < num_nodes


def check_edges(path: Path, events: list[Event], graphs_edges: Iterable[list[tuple[int, int]]]) -> None:
    """Every communication joins two neighbours of one of the run's graphs (either direction).

    A pair that is not an edge would still be applied by the algorithm, silently gossiping
    between nodes that the topology keeps apart: refused, naming the line.
    """
    allowed = {(min(a, b), max(a, b)) for edges in graphs_edges for a, b in edges}
    for lineno, (_t, kind, i, j) in enumerate(events, start=1):
        if kind == "communication" and (min(i, j), max(i, j)) not in allowed:
            raise ConfigError(
                "replay", str(path), f"events.jsonl line {lineno}: nodes {i} and {j} are not neighbours"
            )
