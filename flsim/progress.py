"""Run progress: a rich progress bar on a terminal, plain log lines otherwise (docs/architecture.md §7)."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

log = logging.getLogger("flsim")


#: Seconds between log lines when the total is unknown (a run bounded by a budget, not rounds).
OPEN_ENDED_EVERY_S = 5.0


class ProgressReporter:
    """Reports ``unit``s done (rounds of a run, runs of a sweep).

    ``mode`` is ``auto`` (bar on a TTY), ``bar``, ``lines`` or ``off``. Without :meth:`start`
    the total is unknown (event runs stop on a budget): lines then say ``round 39``, not
    ``round 39/0``, at most every :data:`OPEN_ENDED_EVERY_S` seconds.
    """

    def __init__(self, description: str, mode: str = "auto", unit: str = "round") -> None:
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "lines"
        self.mode = mode
        self.description = description
        self.unit = unit
        self._bar: Any = None
        self._task: Any = None
        self._total = 0
        self._last_line = -OPEN_ENDED_EVERY_S

    def start(self, total: int, done: int) -> None:
        self._total = total
        if self.mode == "bar":
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[status]}"),
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=total, completed=done, status="")

    def advance(self, done: int, row: dict[str, Any]) -> None:
        status = _status(row)
        if self.mode == "bar" and self._bar is not None:
            self._bar.update(self._task, completed=done, status=status)
        elif self.mode == "lines" and self._total > 0:
            if done == self._total or done % max(1, self._total // 10) == 0:
                log.info("%s %s %d/%d %s", self.description, self.unit, done, self._total, status)
        elif self.mode == "lines" and time.monotonic() - self._last_line >= OPEN_ENDED_EVERY_S:
            self._last_line = time.monotonic()
            log.info("%s %s %d %s", self.description, self.unit, done, status)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def _status(row: dict[str, Any]) -> str:
    parts = []
    for key in ("test_acc", "test_loss", "optimality_gap"):
        if key in row and row[key] is not None:
            parts.append(f"{key}={row[key]:.4g}")
    return " ".join(parts)
