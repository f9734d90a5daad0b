"""One call per part per stretch (flsim/hosts/event_stretch.py), without Ray.

The stretch plan is run symbolically under adversarial interleavings that respect only the
shared-memory waits: every event must see its sequential inputs, and no mailbox slot may be
overwritten before every reader of its content has published that it read it. Then real
parts run whole stretches on threads, synchronised only by the control file, and must
reproduce the sequential engine bit for bit; a failing part stops its partners at once.
"""

from __future__ import annotations

import threading
import time

import networkx as nx
import pytest

from flsim.hosts import event_mailbox
from flsim.hosts.event_mailbox import SlotPlanner, create_mailboxes, remove_mailboxes
from flsim.hosts.event_parallel import InProcessParts
from flsim.hosts.event_partition import LevelPlan, partition_nodes, plan_levels
from flsim.hosts.event_stretch import (
    READ,
    WRITTEN,
    Control,
    StretchAborted,
    StretchStep,
    StretchTimeout,
    create_control,
    plan_stretch,
)
from flsim.rng import numpy_rng
from tests.events.test_event_partition import (
    GRAPHS,
    _edges,
    _random_events,
    _rows,
    _scenario,
    sequential_and_parts,
)


def _actions(part: int, steps: list[StretchStep]):
    """A part's stretch as atomic actions, each (condition or None, effect name, step)."""
    for step in steps:
        for partner, value in step.after:
            yield (WRITTEN, partner, value), None, step
        yield None, "import", step
        for reader, value in step.free:
            yield (READ, reader, value), None, step
        yield None, "export", step


class _Symbolic:
    """Parts whose node states are tuples of applied events, a mailbox of such tuples, and the
    counters, run one enabled action at a time in a random order."""

    def __init__(self, steps: list[list[StretchStep]], owner: list[int], replicas: list[dict]) -> None:
        self.owner, self.parts, self.replicas = owner, len(steps), replicas
        self.counters = {(kind, p): 0 for kind in (WRITTEN, READ) for p in range(self.parts)}
        self.mailbox: dict[tuple[int, int], tuple] = {}
        self.readers: dict[tuple[int, int], set[tuple[int, int]]] = {}
        self.imported: set[tuple[int, int]] = set()
        self.seen: dict[tuple, tuple] = {}
        self.reads: dict[tuple, set[int]] = {}  # (address, level) -> the parts that read it then
        for p, part in enumerate(steps):
            for step in part:
                for address in step.sources.values():
                    self.reads.setdefault((address, step.level), set()).add(p)

    def apply(self, replica: dict, event: tuple) -> None:
        _, i, j = event
        nodes = (i,) if j < 0 else (i, j)
        inputs = tuple(replica[v] for v in nodes)
        assert self.seen.setdefault(event, inputs) == inputs
        for v in nodes:
            replica[v] += (event,)

    def effect(self, part: int, name: str, step: StretchStep) -> None:
        replica = self.replicas[part]
        if name == "import":
            for event in step.call.imports:
                remote = event[2] if self.owner[event[1]] == part else event[1]
                node, state = self.mailbox[step.sources[remote]]
                assert node == remote
                replica[remote] = state
                self.apply(replica, event)
            self.imported.add((part, step.level))
            self.counters[READ, part] = step.level + 1
            for event in step.call.events:
                self.apply(replica, event)
            return
        for node, slot in zip(step.call.exports, step.call.slots, strict=True):
            address = (part, slot)
            pending = self.readers.get(address, set()) - self.imported
            assert not pending, f"slot {address} overwritten before {pending} read it"
            self.mailbox[address] = (node, replica[node])
            self.readers[address] = {
                (q, step.level + 1) for q in self.reads.get((address, step.level + 1), ())
            }
        self.counters[WRITTEN, part] = step.level + 1
        for event in step.later:
            self.apply(replica, event)

    def run(self, steps: list[list[StretchStep]], seed: int) -> dict[int, tuple]:
        rng = numpy_rng(seed, "test.stretch")
        queues = [list(_actions(p, part)) for p, part in enumerate(steps)]
        order = [int(p) for p in rng.permutation(len(steps))]
        while any(queues):
            ready = [p for p, q in enumerate(queues) if q and self._enabled(q[0][0])]
            assert ready, "deadlock: every remaining part waits"
            # Mostly the first ready part of a seeded order: one part races as far ahead as
            # the waits allow, the order in which a missing wait would show.
            first = min(ready, key=order.index)
            part = first if rng.random() < 0.8 else ready[int(rng.integers(len(ready)))]
            _, name, step = queues[part].pop(0)
            if name is not None:
                self.effect(part, name, step)
        return {v: self.replicas[self.owner[v]][v] for v in range(len(self.owner))}

    def _enabled(self, condition) -> bool:
        return condition is None or self.counters[condition[0], condition[1]] >= condition[2]


@pytest.mark.parametrize("parts", [2, 3])
def test_stretch_waits_let_no_slot_be_overwritten_before_its_readers_published(parts):
    """With as few slots as a stretch accepts, in random orders that respect only the counters,
    every event sees its sequential inputs and every slot's readers publish before it is reused."""
    graph = nx.convert_node_labels_to_integers(nx.grid_2d_graph(3, 4))
    edges, n = _edges(graph), graph.number_of_nodes()
    owner = partition_nodes(n, edges, [1.0] * len(edges), parts)
    events = _random_events(400, n, edges)
    sequential, expected = {v: () for v in range(n)}, {}
    for event in events:
        nodes = (event[1],) if event[2] < 0 else event[1:]
        expected[event] = tuple(sequential[v] for v in nodes)
        for v in nodes:
            sequential[v] += (event,)
    halves = (plan_levels(events[:250], owner, parts), plan_levels(events[250:], owner, parts))
    widest = max(len(c.exports) for plan in halves for calls in plan.calls for c in calls)
    planner, base, free = SlotPlanner(parts, 2 * widest), 7, 0
    replicas = [{v: () for v in range(n)} for _ in range(parts)]
    for plan in halves:  # two stretches: levels numbered on from the first one's
        steps = plan_stretch(plan, planner, base)
        assert all(base <= s.level < base + len(plan.calls) for part in steps for s in part)
        base += len(plan.calls)
        free += sum(len(s.free) for part in steps for s in part)
        for seed in range(12):
            run = _Symbolic(steps, owner, [dict(r) for r in replicas])
            final = run.run(steps, seed)
            assert all(inputs == expected[event] for event, inputs in run.seen.items())
        replicas = run.replicas
        planner.settled()
    assert final == sequential
    assert free > 0  # slots were reused, so the waits before exports were needed


class ThreadedParts(InProcessParts):
    """Each part on a thread for a whole stretch, synchronised only by the control file, as the
    Ray actors are on one machine; ``broken`` corrupts one part's step to make it fail."""

    broken: tuple[int, int] | None = None

    def __init__(self, scenario, task, owner, parts) -> None:
        super().__init__(scenario, task, owner, parts)
        layout = self.parts[0].slot_layout()
        self.paths = create_mailboxes(parts, layout)
        self.control_path = create_control(parts)
        assert self.paths is not None and self.control_path is not None
        for p, part in enumerate(self.parts):
            part.attach(p, self.paths, layout, self.control_path)
        self.control = Control(self.control_path, 60.0)
        remove_mailboxes([*self.paths, self.control_path])
        self.planner, self.base, self.stretches = SlotPlanner(parts, layout.slots()), 0, 0
        self.ended: dict[int, float] = {}

    def run_levels(self, plan: LevelPlan) -> None:
        steps = plan_stretch(plan, self.planner, self.base)
        self.base += len(plan.calls)
        if self.broken is not None and self.stretches == self.broken[0]:
            victim = steps[self.broken[1]][len(steps[self.broken[1]]) // 2]
            victim.later = [(0.0, 10**6, -1)]  # a node that does not exist: the part raises
        self.stretches += 1
        errors: list[BaseException] = []

        def work(p: int) -> None:
            try:
                self.parts[p].stretch(steps[p])
            except Exception as exc:
                errors.append(exc)
                self.control.abort()  # what the driver does when a call fails
            finally:
                self.ended[p] = time.perf_counter()

        threads = [threading.Thread(target=work, args=(p,)) for p in range(len(self.parts))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.planner.settled()
        if errors:
            raise errors[0]


def _threaded(scenario, parts: int, executor_class=ThreadedParts):
    return sequential_and_parts(scenario, parts, executor_class)


@pytest.mark.parametrize(
    ("algorithm", "graph", "parts"),
    [("dadao", "ring", 2), ("async_gossip_sgd", "grid", 3), ("dadao", "geometric", 3)],
)
def test_parts_on_threads_running_whole_stretches_match_the_sequential_engine(
    tmp_path, monkeypatch, algorithm, graph, parts
):
    monkeypatch.setattr(event_mailbox, "SHM", tmp_path)
    sequential, parallel, executor = _threaded(_scenario(algorithm, GRAPHS[graph], "uniform"), parts)
    parallel.run()
    assert _rows(parallel) == _rows(sequential) and executor.stretches > 1
    assert all(executor.control.value(WRITTEN, p) > 0 for p in range(parts))
    assert not list(tmp_path.iterdir())  # every file unlinked once mapped


def test_a_part_that_fails_mid_stretch_stops_its_partners_at_once(tmp_path, monkeypatch):
    monkeypatch.setattr(event_mailbox, "SHM", tmp_path)
    _, parallel, executor = _threaded(_scenario("dadao", GRAPHS["ring"], "uniform"), 2)
    executor.broken = (1, 1)  # the second stretch, part 1, halfway
    with pytest.raises(IndexError):
        parallel.run()
    assert executor.parts[1].failure is not None and "IndexError" in executor.parts[1].failure
    # The partner stopped (aborted or done) within moments of the failure, not after 60 s.
    assert abs(executor.ended[0] - executor.ended[1]) < 5.0
    with pytest.raises(RuntimeError, match="an earlier call"):  # the failure is latched
        executor.parts[1].models(0.0)


def test_a_wait_ends_at_the_abort_flag_or_the_timeout(tmp_path, monkeypatch):
    monkeypatch.setattr(event_mailbox, "SHM", tmp_path)
    path = create_control(2)
    assert path is not None
    waiter, driver = Control(path, 60.0), Control(path, 60.0)
    driver.publish(WRITTEN, 1, 3)
    waiter.wait(WRITTEN, [(1, 3)])  # already published: no wait
    timer = threading.Timer(0.1, driver.abort)
    timer.start()
    start = time.perf_counter()
    with pytest.raises(StretchAborted):
        waiter.wait(WRITTEN, [(1, 4)])
    assert 0.09 < time.perf_counter() - start < 2.0
    impatient = Control(path, 0.05)
    impatient.counters[0] = 0
    with pytest.raises(
        StretchTimeout, match=r"part 1 did not publish its imports of level 0.*timeout_s=0\.05"
    ):
        impatient.wait(READ, [(1, 1)])
    remove_mailboxes([path])
