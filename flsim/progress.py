"""Run progress: a rich progress bar on a terminal, plain log lines otherwise (docs/architecture.md §7)."""

from __future__ import annotations

import logging
import sys
from typing import Any

log = logging.getLogger("flsim")


class ProgressReporter:
    """Reports rounds done. ``mode`` is ``auto`` (bar on a TTY), ``bar``, ``lines`` or ``off``."""

    def __init__(self, description: str, mode: str = "auto") -> None:
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "lines"
        self.mode = mode
        self.description = description
        self._bar: Any = None
        self._task: Any = None
        self._total = 0

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
        elif self.mode == "lines" and (done == self._total or done % max(1, self._total // 10) == 0):
            log.info("%s round %d/%d %s", self.description, done, self._total, status)

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
