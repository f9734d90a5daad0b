"""The one run loop: rows, checkpoints, progress, wall time and recovery, for every driver.

Drivers differ in how they advance: the round drivers run one round at a time, the event
simulation runs its clocks from one virtual-time evaluation point to the next. Each says so
by yielding a :class:`Step` from ``steps()``; :class:`RunLoop` does everything else the same
way for all of them. It writes the first row of a fresh run, decides from its
:class:`Cadence` whether a step gets a metrics row and a checkpoint, advances the progress
display, keeps the counters' wall time and, for a driver that can lose a worker, rewinds to
the last checkpoint and replays (docs/architecture.md §2, §4). Since a replay from a
checkpoint is deterministic, the rows it writes again are the rows that were lost.

The loop lives with the host code, not in the engine, because the event simulation runs on
a host (in process or on a Ray actor) and uses it there.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from flsim.hosts.counters import Counters
from flsim.hosts.frozen_heap import frozen_heap
from flsim.hosts.sinks import Progress, RowSink

log = logging.getLogger("flsim")


@dataclass(frozen=True)
class Step:
    """A point a driver has reached: ``done`` steps so far, and ``at``, what a row there describes
    (a round's replies, or an evaluation time).

    ``may_checkpoint`` is false for the points an event run evaluates after its loop has
    stopped: a checkpoint there would resume into the loop past its stopping test.
    """

    done: int
    at: Any
    may_checkpoint: bool = True


@dataclass(frozen=True)
class Cadence:
    """Which steps get a row and a checkpoint, counted in steps done.

    Rounds: a row every ``eval.every`` rounds and after the last, a checkpoint every
    ``checkpoint.every`` rounds. Event runs step only at evaluation points (their
    :class:`TimeGrid`), so every step is a row and ``checkpoint.every`` counts rows.
    """

    total: int
    rows_every: int = 1
    checkpoint_every: int = 0

    def row_due(self, done: int) -> bool:
        return done % self.rows_every == 0 or done == self.total

    def checkpoint_due(self, done: int) -> bool:
        return self.checkpoint_every > 0 and done % self.checkpoint_every == 0


class TimeGrid:
    """Evaluation points k·every (k = index, index + 1, ...) in virtual time, none past ``horizon``.

    Each point is computed as ``index * every`` rather than accumulated, so a resumed run
    (which restores ``index``) evaluates at bit-identical times.
    """

    def __init__(self, every: float, horizon: float | None, index: int = 1) -> None:
        self.every = every
        self.horizon = horizon
        self.index = index

    @property
    def next_time(self) -> float:
        return self.index * self.every

    def due(self, limit: float, inclusive: bool = True) -> Iterator[float]:
        """The points ≤ ``limit`` (< ``limit`` if not inclusive) not yet passed, each consumed."""
        while True:
            t = self.index * self.every
            if t > limit or (t == limit and not inclusive) or (self.horizon is not None and t > self.horizon):
                return
            self.index += 1
            yield t


@dataclass(frozen=True)
class Recovery:
    """How a driver survives a lost worker: the error that means one, how many times to
    recover, how to replace the worker, and the error to raise past the limit (given the
    round of the checkpoint a resume would start from)."""

    lost: type[BaseException]
    limit: int
    replace_worker: Callable[[], None]
    give_up: Callable[[BaseException, int], BaseException]


class LoopDriver(Protocol):
    """The hooks a driver gives the run loop."""

    @property
    def counters(self) -> Counters: ...

    def first_point(self) -> Any:
        """Prepare a run (or its continuation) and return what a row at step 0 describes."""

    def steps(self) -> Iterator[Step]:
        """Advance from the current state to the end, yielding at every point of the cadence."""

    def metrics_row(self, at: Any) -> dict[str, Any]: ...

    def checkpoint_state(self) -> dict[str, Any]: ...

    def restore(self, state: dict[str, Any]) -> None: ...


class RunLoop:
    """Runs a :class:`LoopDriver` to its end; see the module docstring."""

    def __init__(
        self,
        driver: LoopDriver,
        cadence: Cadence,
        writer: RowSink,
        progress: Progress,
        recovery: Recovery | None = None,
    ) -> None:
        self.driver = driver
        self.cadence = cadence
        self.writer = writer
        self.progress = progress
        self.recovery = recovery
        #: Lost workers recovered from so far (reported in ``summary.json``).
        self.recoveries = 0
        self._rewind: tuple[int, dict[str, Any]] = (0, {})
        self._wall_start = 0.0

    def run(self) -> dict[str, Any]:
        """Run (or continue) to the end; returns the last row written (``{}`` if none). The
        heap as it stands is kept out of the collector's full passes meanwhile (see
        :mod:`flsim.hosts.frozen_heap`)."""
        with frozen_heap():
            return self._run()

    def _run(self) -> dict[str, Any]:
        driver = self.driver
        self._wall_start = time.perf_counter() - driver.counters.wall_time
        last_row: dict[str, Any] = {}
        first = driver.first_point()
        if driver.counters.round == 0:
            last_row = driver.metrics_row(first)
            self.writer.append_metrics(last_row)
        if self.recovery is not None:
            self._rewind = (driver.counters.round, driver.checkpoint_state())
        self.progress.start(self.cadence.total, driver.counters.round)
        lost = self.recovery.lost if self.recovery is not None else ()
        steps = driver.steps()
        while True:
            try:  # only advancing is recovered from: rows and checkpoints fail as they are
                step = next(steps, None)
            except lost as exc:
                self._recover(exc)
                steps = driver.steps()
                continue
            if step is None:
                break
            last_row = self._record(step) or last_row
            self.progress.advance(step.done, last_row)
        driver.counters.wall_time = time.perf_counter() - self._wall_start
        self.progress.stop()
        return last_row

    def _record(self, step: Step) -> dict[str, Any] | None:
        """The row and the checkpoint due at ``step``; returns the row, if one was written."""
        driver = self.driver
        driver.counters.wall_time = time.perf_counter() - self._wall_start
        row = None
        if self.cadence.row_due(step.done):
            row = driver.metrics_row(step.at)
            self.writer.append_metrics(row)
        if step.may_checkpoint and self.cadence.checkpoint_due(step.done):
            state = driver.checkpoint_state()
            if self.recovery is not None:
                self._rewind = (driver.counters.round, state)
            self.writer.save_checkpoint(state)
        return row

    def _recover(self, exc: BaseException) -> None:
        """Rewind to the last checkpoint (kept in memory as well as on disk) after a lost worker."""
        assert self.recovery is not None
        rewind_round, state = self._rewind
        self.recoveries += 1
        if self.recoveries > self.recovery.limit:
            raise self.recovery.give_up(exc, rewind_round) from exc
        log.warning("%s; rewinding to round %d", exc, rewind_round)
        self.recovery.replace_worker()
        self.driver.restore(state)
        self.writer.truncate_metrics(self.driver.counters.round)
