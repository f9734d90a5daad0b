"""The round loop shared by the synchronous, buffered and gossip drivers.

A driver provides ``run_round(t)``, ``metrics_row(replies)``, ``checkpoint_state()``,
``restore(state)``, ``initialize()`` and ``counters``; this loop evaluates, checkpoints and
recovers the same way for all of them.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from flsim.backends.base import WorkerLost

log = logging.getLogger("flsim")


class RoundLoop:
    counters: Any

    def __init__(self, scenario: Any, task: Any, backend: Any, writer: Any, progress: Any) -> None:
        self.scenario = scenario
        self.task = task
        self.backend = backend
        self.writer = writer
        self.progress = progress
        #: Lost workers recovered from so far in this process (reported in ``summary.json``).
        self.recoveries = 0

    def initialize(self) -> None:
        """A phase before round 0 (FedAMD's table); nothing by default."""

    def summary_facts(self) -> dict[str, Any]:
        """What this driver adds to ``summary.json`` (the gossip driver: its topology)."""
        return {}

    def run_round(self, round_index: int) -> Any:
        raise NotImplementedError

    def metrics_row(self, replies: Any) -> dict[str, Any]:
        raise NotImplementedError

    def checkpoint_state(self) -> dict[str, Any]:
        raise NotImplementedError

    def restore(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def _give_up_message(self, exc: WorkerLost, rewind_round: int) -> str:
        """The rewind point is the checkpoint on disk whenever one exists (saved or resumed from)."""
        sc = self.scenario
        where = (
            f"continue it from round {rewind_round} with `flsim run --resume {self.writer.run_dir}`"
            if self.writer.has_checkpoint()
            else "no checkpoint was written (set checkpoint.every to make runs resumable)"
        )
        return f"{exc}; gave up after backend.max_recoveries={sc.backend.max_recoveries} recoveries; {where}"

    def run(self) -> dict[str, Any]:
        """Run (or continue) to ``scenario.rounds``; returns the last metrics row.

        If the backend loses a worker, the run rewinds to its last checkpoint (kept in
        memory as well as on disk) and replays from there. Determinism makes the replay
        produce exactly the rounds that were lost, so the final metrics are unchanged.
        """
        sc = self.scenario
        wall_start = time.perf_counter() - self.counters.wall_time
        last_row: dict[str, Any] = {}
        self.initialize()
        if self.counters.round == 0:
            last_row = self.metrics_row([])
            self.writer.append_metrics(last_row)
        rewind_point = self.checkpoint_state()
        self.progress.start(sc.rounds, self.counters.round)
        while self.counters.round < sc.rounds:
            round_index = self.counters.round
            try:
                replies = self.run_round(round_index)
            except WorkerLost as exc:
                self.recoveries += 1
                if self.recoveries > sc.backend.max_recoveries:
                    raise WorkerLost(self._give_up_message(exc, rewind_point["counters"]["round"])) from exc
                log.warning("%s; rewinding to round %d", exc, rewind_point["counters"]["round"])
                self.backend.recover()
                self.restore(rewind_point)
                self.writer.truncate_metrics(self.counters.round)
                continue
            self.counters.wall_time = time.perf_counter() - wall_start
            done = round_index + 1
            if done % sc.eval.every == 0 or done == sc.rounds:
                last_row = self.metrics_row(replies)
                self.writer.append_metrics(last_row)
            if sc.checkpoint.every and done % sc.checkpoint.every == 0:
                rewind_point = self.checkpoint_state()
                self.writer.save_checkpoint(rewind_point)
            self.progress.advance(done, last_row)
        self.progress.stop()
        return last_row or self.writer.read_metrics()[-1]
