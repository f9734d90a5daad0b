"""Gradient-oracle calls and bytes, exactly, per algorithm (docs/algorithms.md header, B3, F, M).

tiny_linreg: d = 5 parameters in float64 (40 bytes a vector), 6 clients, 3 sampled a round,
K = 3 local steps of batch 8.
"""

from __future__ import annotations

import pytest

from tests.builders import make_simulation, tiny_linreg

VECTOR = 5 * 8
K = 3
ROUNDS = 3
OPTIMIZER = {"lr": 0.05, "local_steps": K, "batch_size": 8}

#: (grad evals per client-round, vectors down, vectors up)
EXPECTED = {
    "fedavg": ({}, K, 1, 1),
    "fedprox": ({"mu": 0.1}, K, 1, 1),
    "scaffold": ({}, K, 2, 2),  # x and c down; Δy and Δc up
    "fedsam": ({"rho": 0.05}, 2 * K, 1, 1),  # SAM steps cost 2
    "feddyn": ({"alpha": 0.1}, K, 1, 1),
    "fedspeed": ({"rho": 0.1}, 2 * K, 2, 1),  # code form: x^t and h_i − x^t down
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_round_based_costs_are_exact(tmp_path, name):
    params, grads, down, up = EXPECTED[name]
    simulation = make_simulation(
        tiny_linreg(algorithm={"name": name, **OPTIMIZER, **params}, rounds=ROUNDS), tmp_path
    )
    for round_index in range(ROUNDS):
        replies = simulation.run_round(round_index)
        assert [r.grad_evals for r in replies] == [grads] * 3
        assert [r.bytes_up for r in replies] == [up * VECTOR] * 3
    c = simulation.counters
    assert c.grad_evals == ROUNDS * 3 * grads
    assert c.bytes_down == ROUNDS * 3 * down * VECTOR
    assert c.bytes_up == ROUNDS * 3 * up * VECTOR
    assert c.events == ROUNDS * 3 * 2


def test_fedspeed_model_downlink_and_rho_zero_cost(tmp_path):
    raw = tiny_linreg(algorithm={"name": "fedspeed", **OPTIMIZER, "rho": 0.0, "downlink": "model"}, rounds=1)
    simulation = make_simulation(raw, tmp_path)
    simulation.run_round(0)
    assert simulation.counters.bytes_down == 3 * VECTOR
    assert simulation.counters.grad_evals == 3 * K  # ρ = 0: the perturbed gradient is not needed


def test_fedamd_costs_are_exact_by_role(tmp_path):
    raw = tiny_linreg(algorithm={"name": "fedamd", **OPTIMIZER, "anchor_prob": 0.5}, rounds=8)
    simulation = make_simulation(raw, tmp_path)
    simulation.initialize()
    n = simulation.task.num_clients
    # Init phase: every client computes one full local gradient at x^0 and uploads it.
    assert (simulation.counters.grad_evals, simulation.counters.bytes_down, simulation.counters.bytes_up) == (
        n,
        n * VECTOR,
        n * VECTOR,
    )
    roles_seen = set()
    for round_index in range(8):
        before = (
            simulation.counters.grad_evals,
            simulation.counters.bytes_down,
            simulation.counters.bytes_up,
        )
        clients = simulation._participants(round_index)
        roles = simulation.algorithm.roles(round_index)
        anchors = sum(bool(roles[c]) for c in clients)
        miners = len(clients) - anchors
        replies = simulation.run_round(round_index)
        for reply in replies:
            is_anchor = bool(roles[reply.client])
            roles_seen.add(is_anchor)
            assert reply.grad_evals == (1 if is_anchor else 2 * K)  # miner steps cost 2
            assert reply.extras["anchor_fraction"] == float(is_anchor)
        after = (simulation.counters.grad_evals, simulation.counters.bytes_down, simulation.counters.bytes_up)
        assert after[0] - before[0] == anchors + miners * 2 * K
        assert after[1] - before[1] == anchors * VECTOR + miners * 2 * VECTOR  # miners also get v^t
        assert after[2] - before[2] == len(clients) * VECTOR
    assert roles_seen == {True, False}


def test_fedamd_anchor_compute_time_counts_its_large_batch(tmp_path):
    """An anchor's full local gradient (20 samples, b = 8) takes ⌈20/8⌉ = 3 steps of virtual time."""
    raw = tiny_linreg(algorithm={"name": "fedamd", **OPTIMIZER, "anchor_prob": 1.0}, rounds=1)
    simulation = make_simulation(raw, tmp_path)
    replies = simulation.run_round(0)
    assert all(r.work == 3 and r.local_steps == 0 for r in replies)


def test_sam_steps_take_twice_the_virtual_compute_time(tmp_path):
    deterministic = {"system": {"compute": {"sigma": 0.0, "jitter": "deterministic"}, "link": {"base": 0.0}}}
    times = {}
    for name in ("fedavg", "fedsam"):
        raw = tiny_linreg(
            algorithm={"name": name, **OPTIMIZER}, rounds=1, clients_per_round=None, **deterministic
        )
        simulation = make_simulation(raw, tmp_path / name)
        simulation.run_round(0)
        bytes_time = 2 * VECTOR / 1e7
        times[name] = simulation.counters.virtual_time - bytes_time
    assert times["fedsam"] == pytest.approx(2 * times["fedavg"], rel=1e-9)
    assert times["fedavg"] == pytest.approx(K * 0.01, rel=1e-9)


def test_fedbuff_costs_are_exact(tmp_path):
    raw = tiny_linreg(
        algorithm={"name": "fedbuff", **OPTIMIZER, "buffer_size": 2, "max_concurrency": 4}, rounds=5
    )
    simulation = make_simulation(raw, tmp_path)
    for round_index in range(5):
        replies = simulation.run_round(round_index)
        assert len(replies) == 2
    c = simulation.counters
    arrived = 5 * 2
    dispatched = arrived + len(simulation.in_flight)
    assert len(simulation.in_flight) == 4
    assert c.grad_evals == arrived * K  # charged on arrival
    assert c.bytes_up == arrived * VECTOR
    assert c.bytes_down == dispatched * VECTOR  # charged on dispatch
    assert c.events == arrived + dispatched
