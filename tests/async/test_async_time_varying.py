"""Time-varying graphs for the event algorithms: a fixed cycle, switched every 1/χ₁ time
units as in the official DADAO code, with per-graph rate distributions (docs/algorithms.md A1)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import flsim
from flsim.config.errors import ConfigError
from flsim.hosts.event_host import EventSimulation
from flsim.hosts.sinks import RowCollector
from flsim.progress import ProgressReporter
from flsim.scenario import load_scenario
from flsim.tasks import build_task

CYCLE = [{"kind": "star"}, {"kind": "path"}]


def _simulation(raw):
    scenario = load_scenario(raw)
    task = build_task(scenario.task, scenario.seed)
    return EventSimulation(scenario, task, RowCollector(), ProgressReporter("t", "off"))  # type: ignore[arg-type]


def _cycle(ridge, algorithm="dadao", **topology):
    return ridge(algorithm, topology={"time_varying": "cycle", "cycle": CYCLE, **topology})


def test_default_period_is_one_over_the_worst_chi1_of_the_probability_laplacians(ridge):
    simulation = _simulation(_cycle(ridge))
    # χ₁(L/|E|) = |E| / λ₂(L): star of 6: 5/1; path of 6: 5/(2 − 2cos(π/6)).
    chi_path = 5 / (2 - 2 * math.cos(math.pi / 6))
    assert simulation.switch_every == pytest.approx(1 / chi_path, rel=1e-9)
    custom = _simulation(_cycle(ridge, "dadao") | {"algorithm": {"name": "dadao", "switch_every": 0.5}})
    assert custom.switch_every == 0.5


def test_the_cycle_shares_one_total_rate_that_meets_the_rate_condition(ridge):
    simulation = _simulation(_cycle(ridge))
    star, path = simulation.graphs
    assert star.total_rate == pytest.approx(path.total_rate)
    # (A1) on the worst case over time, as the code's lamb_mix = √(2 χ₁* χ₂*).
    assert max(star.chi1, path.chi1) * max(star.chi2, path.chi2) == pytest.approx(0.5)
    assert np.allclose(star.rates, star.rates[0]) and np.allclose(path.rates, path.rates[0])
    assert simulation.algorithm.chi1 == max(star.chi1, path.chi1)


def test_every_communication_uses_the_graph_in_force_at_its_time(ridge):
    simulation = _simulation(_cycle(ridge) | {"budget": {"time": 30.0}})
    period = simulation.switch_every
    edge_sets = [set(g.edges) for g in simulation.graphs]
    seen: list[tuple[int, int, float]] = []
    original = simulation.algorithm.on_edge

    def spy(i, j, t):
        seen.append((i, j, t))
        original(i, j, t)

    simulation.algorithm.on_edge = spy  # type: ignore[method-assign]
    simulation.run()
    assert len(seen) > 200
    used = [set(), set()]
    for i, j, t in seen:
        index = int(t // period) % 2
        assert (i, j) in edge_sets[index], (i, j, t)
        used[index].add((i, j))
    # Both graphs are used, each with edges the other one lacks.
    assert used[0] - edge_sets[1] and used[1] - edge_sets[0]
    for row in simulation.writer.rows:  # type: ignore[attr-defined]
        assert row["graph_index"] == int(row["virtual_time"] // period) % 2 or row["virtual_time"] == 30.0


def test_communication_count_follows_the_shared_total_rate(tmp_path, ridge):
    raw = _cycle(ridge) | {"budget": {"time": 300.0}, "eval": {"every_time": 300.0}}
    simulation = _simulation(raw)
    result = flsim.run(raw, run_dir=tmp_path / "run")
    expected = simulation.graphs[0].total_rate * 300.0
    assert abs(result.final["communications"] - expected) < 3 * math.sqrt(expected)
    assert abs(result.final["grad_evals"] - 6 * 300.0) < 3 * math.sqrt(6 * 300.0)


def test_dadao_converges_on_a_cycle_of_graphs(tmp_path, ridge, rows):
    raw = _cycle(ridge) | {"budget": {"time": 400.0}, "eval": {"every_time": 50.0}}
    data = rows(flsim.run(raw, run_dir=tmp_path / "run").run_dir)
    errors = np.array([row["mean_sq_dist_to_opt"] for row in data[1:]])
    assert errors[-1] < 1e-9
    assert np.polyfit([row["virtual_time"] for row in data[1:]], np.log(errors), 1)[0] < -0.03


def test_other_time_varying_modes_are_refused_for_event_algorithms(ridge):
    raw = ridge("dadao", topology={"kind": "ring", "time_varying": "random_each_round"})
    with pytest.raises(ConfigError, match="time_varying"):
        load_scenario(raw)
