"""DADAO (docs/algorithms.md A): exact flow, invariants, fixed point, linear convergence, clocks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.linalg

import flsim
from flsim.algorithms.dadao import DADAO
from flsim.algorithms.dadao_ode import DadaoConstants, DadaoFlow
from flsim.hosts.client_host import initial_model
from flsim.rng import Streams
from flsim.scenario import load_scenario
from flsim.tasks import build_task
from flsim.topology import build_graph, uniform_edge_rates
from tests.builders import make_ridge


def _algorithm(raw):
    scenario = load_scenario(raw)
    task = build_task(scenario.task, scenario.seed)
    rates = uniform_edge_rates(build_graph("ring", {}, task.num_clients, 0))
    config = DADAO.Config.model_validate(scenario.algorithm)
    return DADAO(
        config, task, rates.edges, rates.chi1, Streams(scenario.seed), initial_model(scenario, task)
    ), task


@pytest.mark.parametrize(("mu", "smoothness"), [(1.0, 1.0), (0.01, 10.0)])
def test_flow_is_the_matrix_exponential(mu, smoothness):
    constants = DadaoConstants.from_problem(smoothness, mu, chi1=3.0)
    matrix = constants.ode_matrix()
    flow = DadaoFlow(matrix)
    for t in (0.0, 1e-7, 0.4, 7.0):
        np.testing.assert_allclose(flow(t), scipy.linalg.expm(matrix * t), rtol=1e-9, atol=1e-12)


def test_dual_variables_sum_to_zero_after_any_events():
    algorithm, _ = _algorithm(make_ridge())
    rng = np.random.default_rng(0)
    t = 0.0
    for _ in range(400):
        t += rng.exponential(0.1)
        if rng.random() < 0.4:
            algorithm.on_compute(int(rng.integers(6)), t)
        else:
            i, j = algorithm.edges[int(rng.integers(len(algorithm.edges)))]
            algorithm.on_edge(i, j, t)
    states = algorithm.states_at(t + 1.0)
    assert np.abs(states[:, 4, :].sum(axis=0)).max() < 1e-12  # Σ z_i
    assert np.abs(states[:, 5, :].sum(axis=0)).max() < 1e-12  # Σ z̃_i


def test_the_optimum_is_a_fixed_point_of_the_flow_and_both_jumps():
    algorithm, task = _algorithm(make_ridge())
    x_star = task.optimum.numpy()
    nu = algorithm.constants.nu
    for node in range(task.num_clients):
        shard = task.clients[node]
        grad = (shard.x.T @ (shard.x @ task.optimum - shard.y) / len(shard)).numpy() + 1.0 * x_star
        algorithm.state[node] = np.stack(
            [x_star, x_star, grad - nu * x_star, grad - nu * x_star, -grad, -grad]
        )
    reference = algorithm.state.copy()
    algorithm.on_compute(2, 3.0)
    algorithm.on_edge(*algorithm.edges[0], 5.0)
    np.testing.assert_allclose(algorithm.states_at(9.0), reference, atol=1e-10)


def test_dadao_converges_linearly_to_the_exact_optimum(tmp_path):
    raw = make_ridge(budget={"time": 420.0}, eval={"every_time": 60.0})
    result = flsim.run(raw, run_dir=tmp_path / "run")
    rows = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    errors = np.array([row["mean_sq_dist_to_opt"] for row in rows[1:]])
    times = np.array([row["virtual_time"] for row in rows[1:]])
    assert errors[-1] < 1e-10
    slope = np.polyfit(times, np.log(errors), 1)[0]
    assert slope < -0.03  # log-linear decay


def test_event_counts_follow_the_clock_rates(tmp_path):
    raw = make_ridge(budget={"time": 400.0}, eval={"every_time": 400.0})
    result = flsim.run(raw, run_dir=tmp_path / "run")
    t, n = 400.0, 6
    rates = uniform_edge_rates(build_graph("ring", {}, n, 0))
    for observed, rate in (
        (result.final["grad_evals"], n),
        (result.final["communications"], rates.total_rate),
    ):
        expected = rate * t
        assert abs(observed - expected) < 3 * np.sqrt(expected)


def test_same_seed_same_trajectory_other_seed_other_events(tmp_path):
    a = flsim.run(make_ridge(), run_dir=tmp_path / "a").run_dir
    b = flsim.run(make_ridge(), run_dir=tmp_path / "b").run_dir
    c = flsim.run(make_ridge(seed=7), run_dir=tmp_path / "c").run_dir

    def rows(path):
        out = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
        for row in out:
            row.pop("wall_time")
        return out

    assert rows(a) == rows(b)
    assert [r["communications"] for r in rows(a)] != [r["communications"] for r in rows(c)]


def test_the_running_average_follows_the_official_code():
    """Every event touching node i adds x_i as stored before the event (no flow) to i's sum."""
    algorithm, _ = _algorithm(make_ridge(algorithm={"name": "dadao", "batch_size": 4}))
    i, j = algorithm.edges[0]
    stored = {}
    for step, t in enumerate((0.5, 1.0, 1.7)):
        stored[step] = algorithm.state[i, 0].copy()
        if step == 1:
            algorithm.on_edge(i, j, t)
        else:
            algorithm.on_compute(i, t)
    expected = (stored[0] + stored[1] + stored[2]) / 3
    np.testing.assert_array_equal(algorithm.averaged_models()[i], expected)
    assert algorithm.iterate_count[j] == 1
    untouched = next(k for k in range(6) if k not in (i, j))
    assert not algorithm.averaged_models()[untouched].any()  # no event yet: 0, as the code's 0/eps
