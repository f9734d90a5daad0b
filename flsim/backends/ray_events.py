"""An event-driven run on a Ray coordinator actor, streamed back to the driver as it goes.

The event sequence is sequential by nature (each event may read what the previous one
wrote), so the whole :class:`~flsim.hosts.event_host.EventSimulation` runs in one place:
a thread of the coordinator actor (:class:`StreamedEventRun`). What a local run would write
(metrics rows, checkpoints) is queued there instead, and the driver drains the queue with
short polls (:func:`run_streamed`). So, on Ray as locally:

* ``metrics.jsonl`` and the progress bar advance while the run goes, not at its end;
* checkpoints reach the run directory, and ``flsim run --resume`` continues from them;
* no single remote wait lasts longer than one poll, so ``backend.timeout_s`` bounds the
  time to notice a lost or hung actor rather than the length of the run;
* if the coordinator dies, a new one continues from the last checkpoint (the rows written
  since are rewritten from it), up to ``backend.max_recoveries`` times. Determinism makes
  the final metrics equal to an undisturbed run's.
"""

from __future__ import annotations

import copy
import logging
import queue
import threading
import traceback
from typing import TYPE_CHECKING, Any

from flsim.backends.base import WorkerLost
from flsim.config.schema import Scenario
from flsim.hosts.sinks import Progress, Silent, Writer

if TYPE_CHECKING:
    from flsim.backends.ray_backend import RayCoordinator
    from flsim.tasks.base import Task

log = logging.getLogger("flsim")

#: Longest a poll waits for output before answering (also capped at half the timeout).
POLL_SECONDS = 2.0


class StreamedEventRun:
    """Runs an event simulation on a background thread; its writes queue up for :meth:`poll`.

    It is the simulation's writer: ``append_metrics``, ``save_checkpoint`` and
    ``truncate_metrics`` put ``(kind, value)`` items on the queue. A checkpoint is copied
    when it is taken, because the simulation keeps mutating its arrays after that.
    """

    def __init__(self, scenario_data: dict[str, Any], checkpoint: dict[str, Any] | None) -> None:
        self.outputs: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.thread = threading.Thread(target=self._run, args=(scenario_data, checkpoint), daemon=True)
        self.thread.start()

    def append_metrics(self, row: dict[str, Any]) -> None:
        self.outputs.put(("row", dict(row)))

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        self.outputs.put(("checkpoint", copy.deepcopy(state)))

    def truncate_metrics(self, last_round: int) -> None:
        self.outputs.put(("truncate", last_round))

    def _run(self, scenario_data: dict[str, Any], checkpoint: dict[str, Any] | None) -> None:
        from flsim.backends.actor_scenario import scenario_from_data
        from flsim.hosts.client_host import configure_torch
        from flsim.hosts.event_host import EventSimulation
        from flsim.tasks import build_task

        try:
            scenario = scenario_from_data(scenario_data)  # registers sections, loads plugins
            configure_torch(scenario.backend.torch_threads)
            task = build_task(scenario.task, scenario.seed)
            simulation = EventSimulation(scenario, task, self, Silent())
            if checkpoint is not None:
                simulation.restore(checkpoint)
            simulation.run()
        except BaseException:  # reported to the driver, which raises it there
            self.outputs.put(("error", traceback.format_exc()))
        finally:
            self.outputs.put(("done", None))

    def poll(self, wait: float) -> list[tuple[str, Any]]:
        """Everything queued so far, waiting up to ``wait`` seconds for the first item."""
        try:
            items = [self.outputs.get(timeout=wait)]
        except queue.Empty:
            return []
        while True:
            try:
                items.append(self.outputs.get_nowait())
            except queue.Empty:
                return items


def run_streamed(
    coordinator: RayCoordinator,
    scenario: Scenario,
    writer: Writer,
    progress: Progress,
    checkpoint: dict[str, Any] | None,
) -> tuple[dict[str, Any], int]:
    """Drive a :class:`StreamedEventRun` on ``coordinator``; returns (last row, recoveries)."""
    from flsim.hosts.event_host import expected_rows

    wait = min(POLL_SECONDS, scenario.backend.timeout_s / 2)
    recoveries = 0
    last_row: dict[str, Any] = {}
    progress.start(expected_rows(scenario), 0 if checkpoint is None else checkpoint["counters"]["round"])
    while True:
        try:
            coordinator.start_run(checkpoint)
            while True:
                for kind, value in coordinator.poll(wait):
                    if kind == "row":
                        writer.append_metrics(value)
                        progress.advance(value["round"], value)
                        last_row = value
                    elif kind == "truncate":
                        writer.truncate_metrics(value)
                    elif kind == "checkpoint":
                        checkpoint = value
                        writer.save_checkpoint(value)
                    elif kind == "error":
                        raise RuntimeError(f"the event simulation failed on its coordinator actor:\n{value}")
                    elif kind == "done":
                        progress.stop()
                        return last_row, recoveries
        except WorkerLost as exc:
            recoveries += 1
            if recoveries > scenario.backend.max_recoveries:
                raise
            start = "the start" if checkpoint is None else f"virtual time {checkpoint['loop']['t']:g}"
            log.warning("%s; continuing on a new coordinator from %s", exc, start)
            coordinator.recover()
            writer.truncate_metrics(-1)  # the new run writes every row again (restored or anew)


class RayEventCoordinator:
    """An event-driven run on one Ray actor, streamed back: the Ray :class:`EventCoordinator`.

    The task is rebuilt on the actor from the scenario, so ``task`` is not shipped.
    """

    def __init__(self, scenario: Scenario, task: Task, writer: Writer, progress: Progress) -> None:
        del task  # rebuilt on the actor
        self.scenario, self.writer, self.progress = scenario, writer, progress

    def run(self, checkpoint: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
        from flsim.backends.ray_backend import RayCoordinator

        coordinator = RayCoordinator(self.scenario)
        coordinator.start()
        try:
            final, recoveries = run_streamed(
                coordinator, self.scenario, self.writer, self.progress, checkpoint
            )
            return final, {"placement": coordinator.describe(), "recoveries": recoveries}
        finally:
            coordinator.shutdown()
