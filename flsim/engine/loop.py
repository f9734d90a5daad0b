"""The round drivers' side of the shared run loop (:mod:`flsim.hosts.run_loop`).

A round driver (synchronous, buffered, gossip) provides ``run_round(t)``,
``metrics_row(replies)``, ``checkpoint_state()``, ``restore(state)``, ``initialize()`` and
``counters``; :class:`RoundLoop` turns them into the run loop's hooks (one step per round)
and tells the loop how to survive a lost worker: replace it through the backend and replay
from the last checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from flsim.backends.base import WorkerLost
from flsim.hosts.run_loop import Cadence, Recovery, RunLoop, Step


class RoundLoop:
    """Base of the round drivers: one run-loop step per round, recovery through the backend."""

    counters: Any

    def __init__(self, scenario: Any, task: Any, backend: Any, writer: Any, progress: Any) -> None:
        self.scenario = scenario
        self.task = task
        self.backend = backend
        self.writer = writer
        self.progress = progress
        cadence = Cadence(scenario.rounds, scenario.eval.every, scenario.checkpoint.every)
        recovery = Recovery(WorkerLost, scenario.backend.max_recoveries, self._replace_worker, self._give_up)
        self.loop = RunLoop(self, cadence, writer, progress, recovery)

    @property
    def recoveries(self) -> int:
        """Lost workers recovered from so far in this process (reported in ``summary.json``)."""
        return self.loop.recoveries

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

    # -- the run loop's hooks ---------------------------------------------------------------
    def first_point(self) -> list[Any]:
        """Run the initial phase; round 0's row has no replies."""
        self.initialize()
        return []

    def steps(self) -> Iterator[Step]:
        """One step per round, from the current round to ``scenario.rounds``."""
        while self.counters.round < self.scenario.rounds:
            round_index = self.counters.round
            replies = self.run_round(round_index)
            yield Step(round_index + 1, replies)

    def _replace_worker(self) -> None:
        self.backend.recover()

    def _give_up(self, exc: BaseException, rewind_round: int) -> WorkerLost:
        """The rewind point is the checkpoint on disk whenever one exists (saved or resumed from)."""
        sc = self.scenario
        where = (
            f"continue it from round {rewind_round} with `flsim run --resume {self.writer.run_dir}`"
            if self.writer.has_checkpoint()
            else "no checkpoint was written (set checkpoint.every to make runs resumable)"
        )
        return WorkerLost(
            f"{exc}; gave up after backend.max_recoveries={sc.backend.max_recoveries} recoveries; {where}"
        )

    def run(self) -> dict[str, Any]:
        """Run (or continue) to ``scenario.rounds``; returns the last metrics row.

        If the backend loses a worker, the run rewinds to its last checkpoint (kept in
        memory as well as on disk) and replays from there. Determinism makes the replay
        produce exactly the rounds that were lost, so the final metrics are unchanged.
        """
        return self.loop.run() or self.writer.read_metrics()[-1]
