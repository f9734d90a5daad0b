"""Parallel event runs without Ray: the partition, the level plan, and bit-identity in process.

The level plan is checked symbolically: every node's state is the tuple of events applied
to it, parts exchange those tuples exactly as the executors exchange node states, and each
event must see the same inputs as in the sequential order. The in-process executor then
runs the real algorithms and must reproduce the sequential engine's rows bit for bit.
"""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from flsim.hosts.event_host import EventSimulation
from flsim.hosts.event_parallel import InProcessParts, ParallelEventSimulation, plan_partition
from flsim.hosts.event_partition import (
    LevelPlan,
    cross_fraction,
    cut_edges,
    partition_nodes,
    plan_levels,
)
from flsim.hosts.sinks import RowCollector, Silent
from flsim.rng import numpy_rng
from flsim.scenario import load_scenario
from flsim.tasks import build_task
from tests.builders import make_ridge


def _edges(graph: nx.Graph) -> list[tuple[int, int]]:
    return [(int(i), int(j)) for i, j in graph.edges]


@pytest.mark.parametrize(
    ("graph", "parts", "best_cut"),
    [
        (nx.cycle_graph(12), 2, 2),
        (nx.cycle_graph(12), 3, 3),
        (nx.convert_node_labels_to_integers(nx.grid_2d_graph(4, 8, periodic=True)), 2, 8),
    ],
    ids=["ring-2", "ring-3", "torus4x8-2"],
)
def test_partition_is_balanced_and_finds_the_minimum_cut(graph, parts, best_cut):
    edges = _edges(graph)
    owner = partition_nodes(graph.number_of_nodes(), edges, [1.0] * len(edges), parts)
    sizes = [owner.count(p) for p in range(parts)]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == graph.number_of_nodes()
    assert len(cut_edges(edges, owner)) == best_cut
    assert owner == partition_nodes(graph.number_of_nodes(), edges, [1.0] * len(edges), parts)


def test_partition_weighs_edges_by_rate():
    """Two triangles joined by two bridges: the fast bridge stays inside a part."""
    edges = [(0, 1), (1, 2), (0, 2), (3, 4), (4, 5), (3, 5), (2, 3), (0, 5)]
    rates = [1.0] * 6 + [50.0, 1.0]
    owner = partition_nodes(6, edges, rates, 2)
    assert owner.count(0) == 3
    cut = cut_edges(edges, owner)
    expected = sum(rates[k] for k in cut) / (6.0 + sum(rates))
    assert cross_fraction(edges, rates, owner, 6.0) == pytest.approx(expected)
    # The triangles split as they are would cut 51; {1, 2, 3} | {0, 4, 5} cuts four slow edges.
    assert 6 not in cut and sum(rates[k] for k in cut) == 4.0


def _random_events(count: int, num_nodes: int, edges: list[tuple[int, int]]) -> list[tuple[float, int, int]]:
    rng = numpy_rng(0, "test.events")
    out = []
    for k in range(count):
        if rng.random() < 0.4:
            out.append((float(k), int(rng.integers(num_nodes)), -1))
        else:
            i, j = edges[int(rng.integers(len(edges)))]
            out.append((float(k), i, j))
    return out


def _execute_symbolically(plan: LevelPlan, owner: list[int], parts: int, num_nodes: int) -> dict:
    """Run the plan on node 'states' that are tuples of applied events; record each event's inputs."""
    replicas = [{v: () for v in range(num_nodes)} for _ in range(parts)]
    seen: dict[tuple, tuple] = {}

    def apply(replica, event):
        _, i, j = event
        nodes = (i,) if j < 0 else (i, j)
        inputs = tuple(replica[v] for v in nodes)
        assert seen.setdefault(event, inputs) == inputs  # both sides of a cross event agree
        for v in nodes:
            replica[v] = replica[v] + (event,)

    outputs: list[dict] = [{} for _ in range(parts)]
    for calls, senders in zip(plan.calls, plan.senders, strict=True):
        previous, outputs = outputs, [{} for _ in range(parts)]
        for p, call in enumerate(calls):
            if not call:
                continue
            received = {}
            for q in senders[p]:
                received.update(previous[q])
            for event in call.imports:
                _, i, j = event
                remote = j if owner[i] == p else i
                replicas[p][remote] = received[remote]
                apply(replicas[p], event)
            for event in call.events:
                apply(replicas[p], event)
            outputs[p] = {v: replicas[p][v] for v in call.exports}
        for p, call in enumerate(calls):  # the events no export depends on, after the exports
            for event in call.later:
                apply(replicas[p], event)
    return {"inputs": seen, "final": {v: replicas[owner[v]][v] for v in range(num_nodes)}}


@pytest.mark.parametrize("parts", [2, 3])
def test_level_plan_gives_every_event_its_sequential_inputs(parts):
    graph = nx.convert_node_labels_to_integers(nx.grid_2d_graph(3, 4))
    edges, n = _edges(graph), graph.number_of_nodes()
    owner = partition_nodes(n, edges, [1.0] * len(edges), parts)
    events = _random_events(600, n, edges)
    plan = plan_levels(events, owner, parts)

    sequential = {v: () for v in range(n)}
    expected_inputs = {}
    for event in events:
        _, i, j = event
        nodes = (i,) if j < 0 else (i, j)
        expected_inputs[event] = tuple(sequential[v] for v in nodes)
        for v in nodes:
            sequential[v] = sequential[v] + (event,)

    result = _execute_symbolically(plan, owner, parts, n)
    assert result["final"] == sequential
    assert {e: result["inputs"][e] for e in events} == expected_inputs
    crossing = sum(1 for _, i, j in events if j >= 0 and owner[i] != owner[j])
    assert plan.cross_events == crossing
    assert 1 < len(plan.calls) <= crossing + 1  # levels: more than one, at most one per cross event
    applied = sorted(e for level in plan.calls for call in level for e in call.events + call.later)
    imported = sorted(e for level in plan.calls for call in level for e in call.imports)
    assert len(applied) == len(events) - crossing and len(imported) == 2 * crossing


def _scenario(algorithm: str, topology: dict, rates: str, **updates):
    params = {"name": algorithm, **({"batch_size": 4} if algorithm == "async_gossip_sgd" else {})}
    raw = make_ridge(params, topology={**topology, "rates": rates}, **updates)
    raw["task"]["num_clients"] = 9
    return load_scenario(raw)


def sequential_and_parts(scenario, parts: int, executor_class=InProcessParts):
    """The sequential run (done), and a parallel simulation of ``parts`` parts on an
    ``executor_class`` executor (not run yet), with that executor."""
    task = build_task(scenario.task, scenario.seed)
    sequential = EventSimulation(scenario, task, RowCollector(), Silent())
    sequential.run()
    owner, _ = plan_partition(sequential, parts)
    executor = executor_class(scenario, task, owner, parts)
    parallel = ParallelEventSimulation(scenario, task, RowCollector(), Silent(), executor, owner)
    return sequential, parallel, executor


def _sequential_and_parallel(scenario, parts: int):
    sequential, parallel, _ = sequential_and_parts(scenario, parts)
    parallel.run()
    return sequential, parallel


def _rows(simulation):
    return [{k: v for k, v in row.items() if k != "wall_time"} for row in simulation.writer.rows]


GRAPHS = {
    "ring": {"kind": "ring"},
    "grid": {"kind": "grid", "params": {"rows": 3, "cols": 3}},
    "geometric": {"kind": "geometric", "params": {"radius": 0.6}},
}


@pytest.mark.parametrize("parts", [2, 3])
@pytest.mark.parametrize("rates", ["uniform", pytest.param("sdp", marks=pytest.mark.slow)])
@pytest.mark.parametrize("graph", sorted(GRAPHS))
@pytest.mark.parametrize("algorithm", ["dadao", "async_gossip_sgd", "adom_plus"])
def test_parallel_parts_reproduce_the_sequential_engine_bit_for_bit(algorithm, graph, rates, parts):
    sequential, parallel = _sequential_and_parallel(_scenario(algorithm, GRAPHS[graph], rates), parts)
    assert _rows(parallel) == _rows(sequential)
    final_parallel = parallel.checkpoint_state()["algorithm"]
    for name, value in sequential.algorithm.state_dict().items():
        np.testing.assert_array_equal(final_parallel[name], value, err_msg=name)
    if not sequential.algorithm.synchronous:
        assert 0 < parallel.stats.cross_events < parallel.stats.events


def test_a_sequential_checkpoint_resumes_in_parallel_to_the_same_rows():
    """Checkpoints are the sequential engine's: a parallel run continues a sequential one."""
    scenario = _scenario("dadao", GRAPHS["ring"], "uniform", checkpoint={"every": 1})
    task = build_task(scenario.task, scenario.seed)
    saved: list[dict] = []

    class Keeper(RowCollector):
        def save_checkpoint(self, state):
            saved.append(state)

    reference = EventSimulation(scenario, task, Keeper(), Silent())
    reference.run()
    assert saved, "no checkpoint was taken"
    owner, _ = plan_partition(reference, 2)
    resumed = ParallelEventSimulation(
        scenario, task, RowCollector(), Silent(), InProcessParts(scenario, task, owner, 2), owner
    )
    resumed.restore(saved[0])
    resumed.run()
    assert _rows(resumed) == _rows(reference)


@pytest.mark.parametrize("algorithm", ["dadao", "adom_plus"])
def test_a_cycle_of_graphs_runs_in_parallel_bit_for_bit(algorithm):
    """Graph switches discard a draw and change the edge clocks; the parts see the same stream."""
    topology = {"time_varying": "cycle", "cycle": [{"kind": "star"}, {"kind": "path"}]}
    raw = make_ridge(algorithm, topology=topology)
    sequential, parallel = _sequential_and_parallel(load_scenario(raw), 2)
    assert sequential.switch_every is not None or sequential.algorithm.synchronous
    assert _rows(parallel) == _rows(sequential)


def test_an_unknown_event_parallelism_is_a_config_error():
    from flsim.config.errors import ConfigError, ConfigErrors

    raw = make_ridge("dadao", backend={"kind": "ray", "event_parallelism": "sometimes"})
    with pytest.raises((ConfigError, ConfigErrors), match=r"backend\.event_parallelism"):
        load_scenario(raw)


@pytest.mark.parametrize(
    ("algorithm", "backend", "reason"),
    [
        ("dadao", {"kind": "local", "event_parallelism": "on"}, "backend.kind: ray"),
        ("fedavg", {"kind": "ray", "event_parallelism": "on"}, "event-driven"),
    ],
)
def test_event_parallelism_on_where_it_would_be_ignored_is_refused(algorithm, backend, reason):
    from flsim.config.errors import ConfigError, ConfigErrors

    raw = make_ridge("dadao", backend=backend)
    if algorithm != "dadao":
        raw = {**raw, "algorithm": {"name": algorithm, "lr": 0.1}}
        raw.pop("topology", None)
        raw.pop("budget", None)
    with pytest.raises((ConfigError, ConfigErrors), match=rf"backend\.event_parallelism.*{reason}"):
        load_scenario(raw)


def test_event_parallelism_auto_and_off_are_valid_on_any_backend():
    for setting in ("auto", "off"):
        assert (
            load_scenario(make_ridge("dadao", backend={"event_parallelism": setting})).backend.kind == "local"
        )


class _Ref:
    """A submitted call of the fake pool below: what it needs, and (once run) its result."""

    def __init__(self, part: int, method: str, args: tuple) -> None:
        self.part, self.method, self.args, self.result, self.done = part, method, args, None, False


class _FakePool:
    """Records the calls ``RayPartExecutor`` submits, for an adversarial scheduler to run."""

    def __init__(self, owned: list[list[int]]) -> None:
        self.owned, self.submitted = owned, []

    def call(self, part: int, method: str, *args):
        ref = _Ref(part, method, args)
        self.submitted.append(ref)
        return ref

    def wait(self, refs) -> None:
        return None


def _run_adversarially(submitted: list[_Ref], owner: list[int], n: int, seed: int) -> dict:
    """Run the calls in a random order that Ray could choose: each part's calls in order, a call
    once its argument calls have run. Node states are tuples of applied events; mailbox slots
    hold what was written last, so a slot overwritten before its reader ran is caught."""
    rng = numpy_rng(seed, "test.schedule")
    parts = max(owner) + 1
    replicas = [{v: () for v in range(n)} for _ in range(parts)]
    mailbox: dict[tuple[int, int], tuple] = {}
    seen: dict[tuple, tuple] = {}
    queues = [[ref for ref in submitted if ref.part == p] for p in range(parts)]

    def apply(replica, event):
        _, i, j = event
        nodes = (i,) if j < 0 else (i, j)
        assert seen.setdefault(event, tuple(replica[v] for v in nodes)) == tuple(replica[v] for v in nodes)
        for v in nodes:
            replica[v] += (event,)

    while any(queues):
        ready = [q for q in queues if q and all(a.done for a in q[0].args if isinstance(a, _Ref))]
        ref = ready[int(rng.integers(len(ready)))].pop(0)
        call, replica = ref.args[0], replicas[ref.part]
        incoming = [a.result for a in ref.args[1 : len(ref.args) - call.fences]]
        received = {node: address for states in incoming for node, address in states.items()}
        for event in call.imports:
            remote = event[2] if owner[event[1]] == ref.part else event[1]
            node, state = mailbox[received[remote]]
            assert node == remote
            replica[remote] = state
            apply(replica, event)
        for event in call.events:
            apply(replica, event)
        for node, slot in zip(call.exports, call.slots, strict=True):
            mailbox[(ref.part, slot)] = (node, replica[node])
        ref.result = {node: (ref.part, slot) for node, slot in zip(call.exports, call.slots, strict=True)}
        ref.done = True
    return {"inputs": seen, "final": {v: replicas[owner[v]][v] for v in range(n)}}


@pytest.mark.parametrize("parts", [2, 3])
def test_mailbox_slots_are_never_overwritten_before_their_reader_ran(parts):
    """The Ray executor's submissions, with as few mailbox slots as it accepts, run in random
    orders that respect only the calls' arguments: every event still sees its sequential inputs."""
    from flsim.backends.ray_parallel_events import RayPartExecutor
    from flsim.hosts.event_mailbox import SlotPlanner

    graph = nx.convert_node_labels_to_integers(nx.grid_2d_graph(3, 4))
    edges, n = _edges(graph), graph.number_of_nodes()
    owner = partition_nodes(n, edges, [1.0] * len(edges), parts)
    events = _random_events(400, n, edges)
    plan = plan_levels(events, owner, parts)
    widest = max(len(call.exports) for calls in plan.calls for call in calls)
    sequential = {v: () for v in range(n)}
    for _, i, j in events:
        for v in (i,) if j < 0 else (i, j):
            sequential[v] += ((_, i, j),)
    fences = 0
    for seed in range(4):
        pool = _FakePool([[v for v in range(n) if owner[v] == p] for p in range(parts)])
        executor = RayPartExecutor(pool)  # type: ignore[arg-type]
        executor.planner = SlotPlanner(parts, 2 * widest)
        executor.run_levels(plan)
        fences += sum(ref.args[0].fences for ref in pool.submitted)
        result = _run_adversarially(pool.submitted, owner, n, seed)
        assert result["final"] == sequential
    assert fences > 0  # slots were reused, so the fences were needed


def test_a_mailbox_hands_rows_over_bit_for_bit(tmp_path, monkeypatch):
    """Two parts' mappings of the same files: what one writes, the other reads, every bit
    (signed zeros, NaN payloads, subnormals), in float64 and float32 fields."""
    from flsim.hosts import event_mailbox
    from flsim.hosts.event_mailbox import Mailboxes, SlotLayout, create_mailboxes

    monkeypatch.setattr(event_mailbox, "SHM", tmp_path)
    rng = numpy_rng(0, "test.mailbox")
    special = np.array([-0.0, np.nan, 5e-324, np.inf, -np.inf])
    rows = {
        "models": np.concatenate([rng.standard_normal(101), special]),
        "clock": rng.standard_normal((3, 7)).astype(np.float32),
    }
    layout = SlotLayout.of(rows)
    paths = create_mailboxes(2, layout)
    assert paths is not None and len(set(paths)) == 2
    writer, reader = Mailboxes(0, paths, layout), Mailboxes(1, paths, layout)
    address = writer.write(layout.slots() - 1, rows)
    writer.write(0, {name: np.zeros_like(row) for name, row in rows.items()})  # another slot
    received = reader.read(address)
    for name, row in rows.items():
        assert received[name].dtype == row.dtype and received[name].shape == row.shape
        assert received[name].tobytes() == row.tobytes(), name
    writer.close(), reader.close()
    event_mailbox.remove_mailboxes(paths)
    assert not list(tmp_path.iterdir())


def test_the_first_row_needs_no_gather_and_matches_the_sequential_one():
    """Before the parts have applied anything they hold the driver's initial state, so the row
    at t = 0 comes from the driver's copy: one gather fewer, the same bits."""

    class Counting(InProcessParts):
        gathers = 0

        def models(self, t):
            Counting.gathers += 1
            return super().models(t)

    scenario = _scenario("async_gossip_sgd", GRAPHS["ring"], "uniform")
    task = build_task(scenario.task, scenario.seed)
    sequential = EventSimulation(scenario, task, RowCollector(), Silent())
    sequential.run()
    owner, _ = plan_partition(sequential, 2)
    executor = Counting(scenario, task, owner, 2)
    parallel = ParallelEventSimulation(scenario, task, RowCollector(), Silent(), executor, owner)
    parallel.run()
    assert _rows(parallel) == _rows(sequential) and len(_rows(parallel)) > 2
    assert parallel.writer.rows[0]["virtual_time"] == 0.0
    assert Counting.gathers == len(_rows(parallel)) - 1


def test_no_mailboxes_where_shared_memory_has_no_room(tmp_path, monkeypatch):
    """A full /dev/shm refuses the reservation: no mailbox (the object store instead), no file left."""
    import errno
    import os

    from flsim.hosts import event_mailbox
    from flsim.hosts.event_mailbox import SlotLayout, create_mailboxes

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(event_mailbox, "SHM", tmp_path)
    layout = SlotLayout.of({"models": np.zeros(1000)})
    paths = create_mailboxes(2, layout)
    assert paths is not None and all(os.path.getsize(p) == layout.nbytes * layout.slots() for p in paths)
    event_mailbox.remove_mailboxes(paths)
    monkeypatch.setattr(os, "posix_fallocate", full)
    assert create_mailboxes(2, layout) is None
    assert not list(tmp_path.iterdir())


def test_gathered_models_reuse_one_read_only_buffer():
    """A parallel row gathers the parts' rows into the same buffer every time (no fresh N × d
    array a row), equal to the sequential engine's models, and not writable (the rows of
    every evaluation time are compared bit for bit by the test above)."""
    scenario = _scenario("async_gossip_sgd", GRAPHS["ring"], "uniform")
    sequential, parallel, _ = sequential_and_parts(scenario, 2)
    parallel.run()
    first = parallel.algorithm.models_at(parallel.t)
    second = parallel.algorithm.models_at(parallel.t)
    assert np.shares_memory(first, second)
    assert np.array_equal(second, sequential.algorithm.models_at(sequential.t))
    with pytest.raises(ValueError, match="read-only"):
        first[0, 0] = 1.0
