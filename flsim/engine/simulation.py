"""The round-based driver: server, clients and the virtual clock on one event heap.

Per round t (docs/architecture.md §3): the driver samples S_t and the server role broadcasts at
virtual time T. The backend runs the clients' updates as one batch of independent work.
Each reply is then scheduled on the heap at T + latency(down) + compute(steps) +
latency(up) and popped in (time, sequence) order; the synchronous server aggregates once
every reply has arrived. The driver only schedules and accounts: the server state lives
in the backend's server role (:mod:`flsim.hosts.server`), in process or on a Ray actor.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from flsim.algorithms.base import Reply, RoundAlgorithm, Tensors
from flsim.backends.base import Backend
from flsim.config.schema import Scenario
from flsim.engine.client_selection import ClientSelector
from flsim.engine.events import EventQueue
from flsim.engine.loop import RoundLoop
from flsim.engine.system import SystemModel
from flsim.hosts.client_host import build_algorithm
from flsim.hosts.counters import Counters
from flsim.hosts.server import ServerRole
from flsim.hosts.sinks import Progress, Writer
from flsim.tasks.base import Task

#: The round index clients see during an algorithm's initial phase (before round 0).
INIT_ROUND = -1


class RoundSimulation(RoundLoop):
    """Schedules rounds; the server state lives in the backend's server role, not here."""

    def __init__(
        self,
        scenario: Scenario,
        task: Task,
        backend: Backend,
        writer: Writer,
        progress: Progress,
    ) -> None:
        super().__init__(scenario, task, backend, writer, progress)
        #: The driver's own instance, for hyperparameters only; the server's state is held by
        #: ``server_role`` (in process, or on a Ray actor).
        self.algorithm: RoundAlgorithm = build_algorithm(scenario, task)
        self.server_role: ServerRole = backend.server_role()
        self.system = SystemModel(scenario.system, scenario.seed, task.num_clients)
        self.counters = Counters()
        #: Each round's participants and, for temperature sampling, their weights.
        self.selector = ClientSelector(scenario, task)
        #: Whether the algorithm's initial phase (see :meth:`initialize`) has run.
        self.initialized = False

    @property
    def server(self) -> Tensors:
        """The server state (fetched from the server actor on Ray): for tests and inspection."""
        return self.server_role.export_state()["server"]

    # -- one round ------------------------------------------------------------------------
    def _participants(self, round_index: int) -> list[int]:
        return self.selector.select(round_index).clients

    def _deliver(self, replies: list[Reply], bytes_down: dict[int, int], round_index: int) -> list[Reply]:
        """Schedule each reply at its arrival time and pop them in virtual-time order."""
        start = self.counters.virtual_time
        queue = EventQueue()
        self.system.prefetch([reply.client for reply in replies])
        for reply in replies:
            arrival = (
                start
                + self.system.latency(reply.client, bytes_down[reply.client])
                + self.system.compute_time(reply.client, reply.compute_units, round_index)
                + self.system.latency(reply.client, reply.bytes_up)
            )
            queue.push(arrival, "reply", reply.client, reply)
        arrived = []
        while queue:
            event = queue.pop()
            self.counters.virtual_time = event.time
            arrived.append(event.payload)
        self.counters.events += 2 * len(arrived)  # one download and one upload message each
        return sorted(arrived, key=lambda r: r.client)

    def _exchange(
        self, message: Any, clients: list[int], round_index: int, bytes_down: dict[int, int]
    ) -> list[Reply]:
        """Send ``message`` to ``clients``, run them, deliver and account for their replies."""
        replies = self.backend.run_clients(message, clients, round_index)
        replies = self._deliver(replies, bytes_down, round_index)
        self.counters.bytes_down += sum(bytes_down.values())
        self.counters.bytes_up += sum(r.bytes_up for r in replies)
        self.counters.grad_evals += sum(r.grad_evals for r in replies)
        return replies

    def initialize(self) -> None:
        """The algorithm's optional "every client computes once" phase before round 0.

        FedAMD fills its table of client gradients at x^0 this way (docs/algorithms.md M); its
        gradient evaluations, bytes, events and virtual time are charged like a round's, so
        they show in the round-0 metrics row. Clients run it as round ``INIT_ROUND`` (-1).
        """
        if self.initialized:
            return
        clients = list(range(self.task.num_clients))
        message, bytes_down = self.server_role.init_phase(clients)
        if message is not None:
            replies = self._exchange(message, clients, INIT_ROUND, bytes_down)
            self.server_role.finish_init_phase(replies)
        self.initialized = True

    def run_round(self, round_index: int) -> list[Reply]:
        self.initialize()
        selection = self.selector.select(round_index)
        message, bytes_down = self.server_role.broadcast(round_index, selection.clients)
        replies = self._exchange(message, selection.clients, round_index, bytes_down)
        self.server_role.aggregate(selection.weigh(replies), round_index)
        self.counters.round = round_index + 1
        return replies

    # -- metrics, checkpoints ---------------------------------------------------------------
    def metrics_row(self, replies: list[Reply]) -> dict[str, Any]:
        row: dict[str, Any] = asdict(self.counters)
        row.update(self.server_role.evaluate(self.scenario.eval.train_loss))
        extras: dict[str, list[float]] = {}
        for reply in replies:
            for key, value in reply.extras.items():
                extras.setdefault(key, []).append(value)
        row.update({key: sum(values) / len(values) for key, values in sorted(extras.items())})
        return row

    def checkpoint_state(self) -> dict[str, Any]:
        return {
            "counters": asdict(self.counters),
            **self.server_role.export_state(),  # "server" and "downlink"
            "clients": self.backend.get_states(),
            "initialized": self.initialized,
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.counters = Counters(**state["counters"])
        self.server_role.import_state(state)
        self.backend.put_states(state["clients"])
        self.initialized = state.get("initialized", True)
