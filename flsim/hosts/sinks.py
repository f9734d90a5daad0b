"""Where drivers and hosts send what a run produces: typed contracts, no implementations.

The run directory's writer (:class:`flsim.results.writer.RunWriter`) and the progress bar
(:class:`flsim.progress.ProgressReporter`) live in the layers above the engine. Drivers,
hosts and backends see them only through these protocols, so they never import those
layers, and a stand-in (an in-memory row list, a coordinator's output queue) is checked by
the type checker instead of being probed with ``getattr``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol


class RowSink(Protocol):
    """What a simulation writes as it goes: metric rows and checkpoints."""

    def append_metrics(self, row: dict[str, Any]) -> None: ...

    def save_checkpoint(self, state: dict[str, Any]) -> None: ...

    def truncate_metrics(self, last_round: int) -> None:
        """Drop rows after ``last_round`` (-1: all), before a restored run writes them again."""


class Writer(RowSink, Protocol):
    """A run directory, as the drivers use it (recovery messages, resume, the last row)."""

    @property
    def run_dir(self) -> Path: ...

    def has_checkpoint(self) -> bool: ...

    def load_checkpoint(self) -> dict[str, Any] | None: ...

    def read_metrics(self) -> list[dict[str, Any]]: ...


class Progress(Protocol):
    """A progress display advanced once per metric row."""

    def start(self, total: int, done: int) -> None: ...

    def advance(self, done: int, row: dict[str, Any]) -> None: ...

    def stop(self) -> None: ...


class Silent:
    """A :class:`Progress` that shows nothing (workers, replays, coordinator threads)."""

    def start(self, total: int, done: int) -> None:
        """Nothing to show."""

    def advance(self, done: int, row: dict[str, Any]) -> None:
        """Nothing to show."""

    def stop(self) -> None:
        """Nothing to show."""


class RowCollector:
    """A :class:`RowSink` that keeps rows in memory (wall-clock workers, tests, benchmarks).

    It keeps no checkpoints: its runs are short-lived and never resumed.
    """

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def append_metrics(self, row: dict[str, Any]) -> None:
        self.rows.append(row)

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """Not kept (see the class docstring)."""

    def truncate_metrics(self, last_round: int) -> None:
        """Nothing was written before a restore."""


class KeptRows:
    """A :class:`RowSink` that forwards to another and keeps the rows it forwarded.

    An event run's checkpoint carries every row written before it, so that a run continued
    elsewhere (a new Ray coordinator, a resumed directory) can write them again first.
    """

    def __init__(self, sink: RowSink) -> None:
        self.sink = sink
        self.rows: list[dict[str, Any]] = []

    def append_metrics(self, row: dict[str, Any]) -> None:
        self.sink.append_metrics(row)  # first: a row the writer refuses (a diverged run) is not kept
        self.rows.append(row)

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        self.sink.save_checkpoint(state)

    def truncate_metrics(self, last_round: int) -> None:
        self.sink.truncate_metrics(last_round)
        self.rows = [row for row in self.rows if row["round"] <= last_round]
