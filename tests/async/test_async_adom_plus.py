"""ADOM+ in the event driver (docs/algorithms.md A, baselines): constants as in the official DADAO
code, exact linear convergence, accounting comparable with DADAO, multi-consensus, cycles."""

from __future__ import annotations

import math

import numpy as np
import pytest

import flsim
from flsim.algorithms.adom_plus import AdomPlus, AdomPlusConstants
from flsim.algorithms.events import laplacian
from flsim.hosts.event_host import EventSimulation
from flsim.hosts.sinks import RowCollector
from flsim.progress import ProgressReporter
from flsim.scenario import load_scenario
from flsim.tasks import build_task


def _simulation(raw):
    scenario = load_scenario(raw)
    task = build_task(scenario.task, scenario.seed)
    return EventSimulation(scenario, task, RowCollector(), ProgressReporter("t", "off"))  # type: ignore[arg-type]


def test_constants_are_those_of_the_official_code():
    big_l, mu, chi = 4.0, 0.25, 3.0
    c = AdomPlusConstants.from_problem(big_l, mu, chi)
    tau2 = math.sqrt(mu / big_l)
    sigma2 = tau2 / (16 * chi)
    assert c.tau1 == pytest.approx(1 / (math.sqrt(big_l / mu) + 0.5))
    assert c.sigma1 == pytest.approx(1 / (1 / sigma2 + 0.5))
    assert c.eta == pytest.approx(1 / (big_l * tau2))
    assert (c.alpha, c.nu, c.zeta) == (mu / 2, mu / 2, 0.5)
    assert (c.beta, c.delta) == pytest.approx((1 / (2 * big_l), 1 / (17 * big_l)))
    assert c.gamma == pytest.approx((mu / 2) / (14 * sigma2 * chi**2))
    assert c.theta == pytest.approx((mu / 2) / (4 * sigma2))


def test_multi_consensus_uses_ceil_chi_ln2_gossip_steps_and_chi_two(ridge):
    plain = _simulation(ridge({"name": "adom_plus"})).algorithm
    multi = _simulation(ridge({"name": "adom_plus", "multi_consensus": True})).algorithm
    values = np.linalg.eigvalsh(laplacian(6, plain.edges))
    chi = values[-1] / values[1]  # ring of 6: 4 / 1
    assert plain.constants.chi == pytest.approx(chi) and plain.gossip_steps == 1
    assert multi.gossip_steps == math.ceil(chi * math.log(2)) == 3
    assert multi.constants.chi == 2.0
    step = np.eye(6) - laplacian(6, plain.edges) / values[-1]
    np.testing.assert_allclose(multi.mixing(0), np.linalg.matrix_power(step, 3), atol=1e-14)


@pytest.mark.parametrize(
    ("algorithm", "topology", "horizon"),
    [
        ({"name": "adom_plus", "multi_consensus": True}, {"kind": "ring"}, 1000.0),
        ({"name": "adom_plus"}, {"kind": "complete"}, 600.0),
    ],
)
def test_adom_plus_converges_linearly_to_the_exact_optimum(
    tmp_path, ridge, rows, algorithm, topology, horizon
):
    raw = ridge(algorithm, topology=topology, budget={"time": horizon}, eval={"every_time": horizon / 8})
    result = flsim.run(raw, run_dir=tmp_path / "run")
    data = rows(result.run_dir)[1:]
    errors = np.array([row["mean_sq_dist_to_opt"] for row in data])
    times = np.array([row["virtual_time"] for row in data])
    assert errors[-1] < 1e-10
    assert np.all(np.diff(np.log(errors)) < 0)
    slope = np.polyfit(times, np.log(errors), 1)[0]
    assert slope < -0.02  # log-linear decay in iterations (one per unit of virtual time)


def test_accounting_is_comparable_with_the_event_algorithms(tmp_path, ridge, rows):
    raw = ridge(
        {"name": "adom_plus", "multi_consensus": True}, budget={"time": 10.0}, eval={"every_time": 2.5}
    )
    result = flsim.run(raw, run_dir=tmp_path / "run")
    data = rows(result.run_dir)
    edges, steps, dim = 6, 3, 5  # ring of 6, ⌈4 ln 2⌉ gossip steps
    assert [row["virtual_time"] for row in data] == [0.0, 2.5, 5.0, 7.5, 10.0]
    # Iteration k ends at time k: the row at t = 2.5 has seen iterations 1 and 2.
    assert [row["events"] for row in data] == [0, 2, 5, 7, 10]
    for row in data:
        k = row["events"]
        assert row["grad_evals"] == row["gradient_events"] == 6 * k
        assert row["communications"] == row["communication_events"] == edges * steps * k
        assert row["bytes_up"] == row["bytes_down"] == 2 * 2 * edges * steps * 8 * dim * k


def test_the_gradient_budget_stops_after_the_iteration_that_reaches_it(tmp_path, ridge):
    raw = ridge("adom_plus", budget={"gradients": 20}, eval={"every_time": 1.0})
    result = flsim.run(raw, run_dir=tmp_path / "run")
    assert result.final["grad_evals"] == 24 and result.final["virtual_time"] == 4.0


def test_dual_variable_z_stays_in_the_consensus_complement(ridge):
    algorithm = _simulation(ridge({"name": "adom_plus", "multi_consensus": True})).algorithm
    for k in range(25):
        algorithm.step(k)
    assert np.abs(algorithm.z.sum(axis=0)).max() < 1e-12
    assert np.abs(algorithm.z_f.sum(axis=0)).max() < 1e-12


def test_a_cycle_of_graphs_advances_one_entry_per_gossip_step(ridge):
    cycle = [{"kind": "ring"}, {"kind": "star"}, {"kind": "path"}]
    raw = ridge({"name": "adom_plus"}, topology={"time_varying": "cycle", "cycle": cycle})
    algorithm = _simulation(raw).algorithm
    assert isinstance(algorithm, AdomPlus)
    costs = [algorithm.step(k).communications for k in range(6)]
    assert costs == [6, 5, 5, 6, 5, 5]  # |E| of ring, star, path, ring, ...
    lap = laplacian(6, algorithm.graphs[1].edges)
    np.testing.assert_allclose(algorithm.mixing(1), np.eye(6) - lap / np.linalg.eigvalsh(lap)[-1])


def test_the_random_init_comes_from_the_seed(ridge):
    a = _simulation(ridge("adom_plus")).algorithm
    b = _simulation(ridge("adom_plus")).algorithm
    c = _simulation(ridge("adom_plus", seed=5)).algorithm
    assert np.array_equal(a.y, b.y) and np.array_equal(a.m, b.m)
    assert not np.array_equal(a.y, c.y)
