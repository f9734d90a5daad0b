"""Parallel event runs: parts balanced by the work drawn for the first stretch.

The draws are checked against the sequential engine (the same events, node by node, from
the start and from a checkpoint), the balanced partition against the rate-based one (its
busiest part never carries more drawn work, and stays within a stated bound where the
rate-based one does not), and the parallel run with it against the sequential run, bit for
bit.
"""

from __future__ import annotations

import numpy as np
import pytest

from flsim.hosts.event_first_stretch import first_stretch_work
from flsim.hosts.event_host import EventSimulation
from flsim.hosts.event_parallel import InProcessParts, ParallelEventSimulation, plan_partition, run_graph
from flsim.hosts.event_partition import (
    COMPUTE_WEIGHT,
    DrawnWork,
    balance_parts,
    part_work,
    partition_nodes,
    schedule_length,
)
from flsim.hosts.sinks import RowCollector, Silent
from flsim.scenario import load_scenario
from flsim.tasks import build_task
from tests.builders import make_ridge

GRAPHS = {
    "torus": {"kind": "torus", "params": {"rows": 4, "cols": 6}},
    "ring": {"kind": "ring"},
    "geometric": {"kind": "geometric", "params": {"radius": 0.4}},
}


def _scenario(graph: str, seed: int = 0, every: float = 3.0, nodes: int = 24, **updates):
    raw = make_ridge(
        {"name": "async_gossip_sgd", "batch_size": 4},
        topology=GRAPHS[graph],
        eval={"every_time": every},
        budget={"time": 2 * every},
        seed=seed,
        **updates,
    )
    raw["task"]["num_clients"] = nodes
    return load_scenario(raw)


def _simulation(scenario, sink=None) -> EventSimulation:
    task = build_task(scenario.task, scenario.seed)
    return EventSimulation(scenario, task, sink or RowCollector(), Silent())


def _record(simulation: EventSimulation, until: float, since: float = 0.0) -> DrawnWork:
    """Run ``simulation`` and count the events the sequential engine applies in (since, until]."""
    algorithm = simulation.algorithm
    stream, computes, edges = [], [0] * simulation.task.num_clients, {}
    on_compute, on_edge = algorithm.on_compute, algorithm.on_edge

    def compute(node, t):
        if since < t <= until:
            stream.append((t, node, -1))
            computes[node] += 1
        on_compute(node, t)

    def edge(i, j, t):
        if since < t <= until:
            stream.append((t, i, j))
            edges[(min(i, j), max(i, j))] = edges.get((min(i, j), max(i, j)), 0) + 1
        on_edge(i, j, t)

    algorithm.on_compute, algorithm.on_edge = compute, edge
    simulation.run()
    return DrawnWork(stream, computes, edges)


def test_the_first_stretch_is_drawn_exactly_as_the_sequential_engine_applies_it():
    scenario = _scenario("geometric", seed=3)
    drawn = first_stretch_work(_simulation(scenario))
    assert drawn.events > 24 * 4
    assert drawn == _record(_simulation(scenario), until=3.0)


def test_a_resumed_run_draws_its_first_stretch_from_the_checkpoint():
    scenario = _scenario("torus", seed=1, checkpoint={"every": 1})
    saved: list[dict] = []

    class Keeper(RowCollector):
        def save_checkpoint(self, state):
            saved.append(state)

    reference = _simulation(scenario, Keeper())
    applied = _record(reference, since=3.0, until=6.0)
    checkpoint = next(state for state in saved if state["rows"][-1]["virtual_time"] == 3.0)
    fresh = _simulation(scenario)
    assert first_stretch_work(fresh, checkpoint) == applied
    assert first_stretch_work(fresh) != applied  # the checkpoint, not the start, decided


CASES = [(graph, parts, seed) for graph in GRAPHS for parts in (2, 3) for seed in range(3)]


def _both(scenario, parts: int) -> tuple[DrawnWork, list[int], list[int]]:
    simulation = _simulation(scenario)
    edges, rates = run_graph(simulation)
    work = first_stretch_work(simulation)
    n = simulation.task.num_clients
    return work, balance_parts(n, edges, rates, parts, work), partition_nodes(n, edges, rates, parts)


def _node_work(work: DrawnWork) -> list[float]:
    """Each node's drawn work (its compute events, and every edge event it takes part in)."""
    loads = [COMPUTE_WEIGHT * count for count in work.computes]
    for (i, j), count in work.edges.items():
        loads[i] += count
        loads[j] += count
    return loads


def test_balanced_parts_are_never_worse_than_rate_parts_and_stay_within_bound():
    """On every case the balanced partition's busiest part carries no more drawn work, and
    its modelled schedule is no longer, than the rate-based partition's; the busiest part
    exceeds an even split by less than 1.5 average nodes' work (the rate-based partition
    breaks that bound), and some cases get a strictly shorter schedule."""
    rate_over_bound = shorter = 0
    for graph, parts, seed in CASES:
        work, balanced, rates_only = _both(_scenario(graph, seed), parts)
        loads, rate_loads = part_work(work, balanced, parts), part_work(work, rates_only, parts)
        node = 1.5 * float(np.mean(_node_work(work)))
        assert max(loads) <= max(rate_loads), (graph, parts, seed)
        length, rate_length = schedule_length(work, balanced, parts), schedule_length(work, rates_only, parts)
        assert length <= rate_length, (graph, parts, seed)
        assert max(loads) - sum(loads) / parts < node, (graph, parts, seed, loads)
        rate_over_bound += max(rate_loads) - sum(rate_loads) / parts >= node
        shorter += length < rate_length
        assert sorted(set(balanced)) == list(range(parts))
    assert rate_over_bound >= 1 and shorter >= 3, (rate_over_bound, shorter)


def test_the_balanced_partition_is_deterministic():
    scenario = _scenario("geometric", seed=2)
    first = plan_partition(_simulation(scenario), 3)
    assert first == plan_partition(_simulation(scenario), 3)
    owner, facts = first
    assert facts["balanced_by"] == "drawn work"
    assert facts["part_sizes"] == [owner.count(p) for p in range(3)]
    assert sum(facts["drawn_work_shares"]) == pytest.approx(1.0)
    assert 0 < facts["expected_cross_fraction"] < 1


def test_a_tiny_first_stretch_falls_back_to_the_rate_partition():
    scenario = _scenario("torus", every=0.05)
    simulation = _simulation(scenario)
    owner, facts = plan_partition(simulation, 2)
    edges, rates = run_graph(simulation)
    assert facts["balanced_by"] == "rates" and facts["first_stretch_events"] < 4 * 24
    assert owner == partition_nodes(24, edges, rates, 2)


def test_the_parallel_run_on_balanced_parts_is_bit_identical():
    scenario = _scenario("ring", seed=1)
    task = build_task(scenario.task, scenario.seed)
    sequential = EventSimulation(scenario, task, RowCollector(), Silent())
    sequential.run()
    owner, _ = plan_partition(_simulation(scenario), 3)
    _, _, rates_only = _both(scenario, 3)
    assert owner != rates_only, "the case must exercise a partition the rates alone would not give"
    parallel = ParallelEventSimulation(
        scenario, task, RowCollector(), Silent(), InProcessParts(scenario, task, owner, 3), owner
    )
    parallel.run()

    def rows(simulation):
        return [{k: v for k, v in row.items() if k != "wall_time"} for row in simulation.writer.rows]

    assert rows(parallel) == rows(sequential)
    final = parallel.checkpoint_state()["algorithm"]
    for name, value in sequential.algorithm.state_dict().items():
        np.testing.assert_array_equal(final[name], value, err_msg=name)


def test_a_synchronous_run_keeps_the_rate_partition():
    """ADOM+ steps every node at once: node counts balance it, nothing is drawn."""
    raw = make_ridge("adom_plus")
    raw["task"]["num_clients"] = 9
    simulation = _simulation(load_scenario(raw))
    assert simulation.algorithm.synchronous
    owner, facts = plan_partition(simulation, 2)
    edges, rates = run_graph(simulation)
    assert "balanced_by" not in facts and owner == partition_nodes(9, edges, rates, 2)


def test_a_long_first_stretch_is_drawn_only_to_its_first_events_a_node(monkeypatch):
    """A long stretch of cheap events is sampled by its beginning: at most
    ``MAX_EVENTS_PER_NODE`` events a node, exactly the first events of the whole draw."""
    from flsim.hosts import event_first_stretch

    simulation = _simulation(_scenario("ring", every=40.0))
    whole = first_stretch_work(simulation)
    cap = len(whole.stream) // (3 * simulation.task.num_clients)
    assert cap >= 1
    monkeypatch.setattr(event_first_stretch, "MAX_EVENTS_PER_NODE", cap)
    head = first_stretch_work(simulation)
    assert len(head.stream) == cap * simulation.task.num_clients
    assert head.stream == whole.stream[: len(head.stream)]
    assert sum(head.computes) == sum(1 for _, _, j in head.stream if j < 0)


def test_deciding_whether_to_run_parts_draws_nothing(monkeypatch):
    """``auto`` decides on the rate-based cut; the first stretch is drawn only for a run that
    will have parts (``balance=False`` never calls the draw)."""
    from flsim.hosts import event_parallel

    simulation = _simulation(_scenario("torus"))
    monkeypatch.setattr(event_parallel, "first_stretch_work", lambda *a: pytest.fail("drew the stretch"))
    owner, facts = plan_partition(simulation, 2, balance=False)
    edges, rates = run_graph(simulation)
    assert owner == partition_nodes(simulation.task.num_clients, edges, rates, 2)
    assert "balanced_by" not in facts and facts["parts"] == 2
