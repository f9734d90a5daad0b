"""The buffered asynchronous driver (FedBuff, docs/algorithms.md B6) on the engine's event heap.

Clients start as soon as they are free: whenever fewer than ``max_concurrency`` clients are
in flight, the server draws idle clients uniformly (stream ``("fedbuff.dispatch", k)`` for
the k-th dispatch) and sends them the *current* model version. Clients that start at the
same virtual moment form one batch of independent work for ``backend.run_clients``, which
computes their updates right away (a client's update depends only on the version it
received, its data and its own ``("client", id, k)`` stream), so the arrival time
``start + latency(down) + compute(steps) + latency(up)`` is known and the reply waits on the
heap. Arrivals pop in ``(virtual_time, sequence)`` order; once ``buffer_size`` replies are
buffered the server applies them (one server update = one "round" for ``rounds``, eval and
checkpoints) and the freed clients are replaced.

Staleness τ of a reply = server updates between the version it trained from and the update
that applies it; it is stored in the reply's ``extras["staleness"]`` (the algorithm weighs
it) and metrics rows report the mean and max over the updates since the previous row.

Accounting: ``bytes_down`` and one event per dispatched client at dispatch; ``bytes_up``,
``grad_evals`` and one event per reply at its arrival. Work still in flight when the run
stops is not charged.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from flsim.algorithms.base import Reply
from flsim.backends.base import Backend
from flsim.config.schema import Scenario
from flsim.engine.events import EventQueue
from flsim.engine.simulation import RoundSimulation
from flsim.hosts.sinks import Progress, Writer
from flsim.rng import numpy_rng
from flsim.tasks.base import Task


@dataclass(frozen=True)
class Job:
    """One client's update in flight or buffered: who, from which version, started when."""

    client: int
    version: int
    dispatch: int
    start: float
    reply: Reply


def _copy_reply(reply: Reply) -> Reply:
    # Tensors are never mutated in place; the extras dict is the only mutable part.
    return dataclasses.replace(reply, extras=dict(reply.extras))


def _job_to_plain(job: Job, reply: Reply) -> dict[str, Any]:
    """A job as tensors and plain containers: checkpoints load with ``weights_only=True``."""
    fields = {f.name: getattr(job, f.name) for f in dataclasses.fields(job)}
    copied = _copy_reply(reply)
    fields["reply"] = {f.name: getattr(copied, f.name) for f in dataclasses.fields(copied)}
    return fields


def _job_from_plain(plain: dict[str, Any]) -> Job:
    return Job(**{**plain, "reply": Reply(**plain["reply"])})


class BufferedSimulation(RoundSimulation):
    """Same public surface as :class:`RoundSimulation`; ``run_round`` is one server update."""

    def __init__(
        self,
        scenario: Scenario,
        task: Task,
        backend: Backend,
        writer: Writer,
        progress: Progress,
    ) -> None:
        super().__init__(scenario, task, backend, writer, progress)
        config = self.algorithm.config
        self.buffer_size: int = config.buffer_size  # type: ignore[attr-defined]
        self.concurrency: int = getattr(self.algorithm, "concurrency", task.num_clients)
        self.queue = EventQueue()
        self.buffer: list[Job] = []
        self.in_flight: dict[int, int] = {}  # client -> version it trains from
        self.dispatches = 0
        self.peak_in_flight = 0
        self._staleness: list[float] = []  # of the updates since the last metrics row

    # -- dispatch and arrival ---------------------------------------------------------------
    def _dispatch(self) -> None:
        """Fill the free slots with idle clients, all starting now from the current model."""
        free = self.concurrency - len(self.in_flight)
        idle = [c for c in range(self.task.num_clients) if c not in self.in_flight]
        count = min(free, len(idle))
        if count <= 0:
            return
        rng = numpy_rng(self.scenario.seed, "fedbuff.dispatch", 0, self.dispatches)
        clients = sorted(int(c) for c in rng.choice(idle, size=count, replace=False))
        version = self.counters.round
        message, bytes_down = self.server_role.broadcast(version, clients)
        replies = self.backend.run_clients(message, clients, version, stream=self.dispatches)
        now = self.counters.virtual_time
        for reply in replies:
            client = reply.client
            arrival = (
                now
                + self.system.latency(client, bytes_down[client])
                + self.system.compute_time(client, reply.compute_units, self.dispatches)
                + self.system.latency(client, reply.bytes_up)
            )
            self.queue.push(arrival, "reply", client, Job(client, version, self.dispatches, now, reply))
            self.in_flight[client] = version
        self.counters.bytes_down += sum(bytes_down.values())
        self.counters.events += len(clients)
        self.dispatches += 1
        self.peak_in_flight = max(self.peak_in_flight, len(self.in_flight))

    def _apply_buffer(self) -> list[Reply]:
        version = self.counters.round
        jobs = sorted(self.buffer, key=lambda job: (job.client, job.dispatch))
        self.buffer = []
        replies = []
        for job in jobs:
            staleness = float(version - job.version)
            extras = {**job.reply.extras, "staleness": staleness}
            replies.append(dataclasses.replace(job.reply, extras=extras))
            self._staleness.append(staleness)
        self.server_role.aggregate(replies, version)
        self.counters.round = version + 1
        return replies

    def run_round(self, round_index: int) -> list[Reply]:
        """Advance virtual time until the next server update; returns the replies it applied."""
        self.initialize()
        if not self.in_flight:
            self._dispatch()
        while True:
            event = self.queue.pop()
            self.counters.virtual_time = event.time
            job: Job = event.payload
            del self.in_flight[job.client]
            self.buffer.append(job)
            self.counters.bytes_up += job.reply.bytes_up
            self.counters.grad_evals += job.reply.grad_evals
            self.counters.events += 1
            if len(self.buffer) >= self.buffer_size:
                replies = self._apply_buffer()
                self._dispatch()
                return replies
            # Clients freed at the same moment start together, as one batch.
            if not (self.queue and self.queue.peek().time == event.time):
                self._dispatch()

    # -- metrics, checkpoints ---------------------------------------------------------------
    def metrics_row(self, replies: list[Reply]) -> dict[str, Any]:
        row = super().metrics_row(replies)
        if self._staleness:
            row["staleness"] = sum(self._staleness) / len(self._staleness)
            row["staleness_max"] = max(self._staleness)
            self._staleness = []
        return row

    def checkpoint_state(self) -> dict[str, Any]:
        state = super().checkpoint_state()
        pending = self.queue.pending()
        # Reply payloads may be object references (Ray); a checkpoint holds the tensors.
        materialize = self.backend.materialize
        pending_replies = materialize([event.payload.reply for event in pending])
        buffer_replies = materialize([job.reply for job in self.buffer])
        state["buffered"] = {
            "pending": [
                (event.time, _job_to_plain(event.payload, reply))
                for event, reply in zip(pending, pending_replies, strict=True)
            ],
            "buffer": [
                _job_to_plain(job, reply) for job, reply in zip(self.buffer, buffer_replies, strict=True)
            ],
            "in_flight": dict(self.in_flight),
            "dispatches": self.dispatches,
            "peak_in_flight": self.peak_in_flight,
            "staleness": list(self._staleness),
        }
        return state

    def restore(self, state: dict[str, Any]) -> None:
        super().restore(state)
        saved = state["buffered"]
        self.queue = EventQueue()
        for time, plain in saved["pending"]:  # re-pushed in pop order: ties keep their order
            job = _job_from_plain(plain)
            self.queue.push(time, "reply", job.client, job)
        self.buffer = [_job_from_plain(plain) for plain in saved["buffer"]]
        self.in_flight = dict(saved["in_flight"])
        self.dispatches = saved["dispatches"]
        self.peak_in_flight = saved["peak_in_flight"]
        self._staleness = list(saved["staleness"])
