"""Decentralized algorithms (docs/algorithms.md B7, B8, D) against reference computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import flsim
from flsim.engine.gossip import mixing_rows
from flsim.hosts.node_host import mix_vectors
from tests.builders import tiny_linreg


def _ring_metropolis(n: int) -> np.ndarray:
    w = np.zeros((n, n))
    for i in range(n):
        w[i, (i + 1) % n] = w[i, (i - 1) % n] = 1 / 3
        w[i, i] = 1 / 3
    return w


def test_gossip_preserves_the_mean_and_contracts_consensus():
    n, q = 8, 3
    weights = _ring_metropolis(n)
    slem = sorted(np.abs(np.linalg.eigvalsh(weights)))[-2]
    generator = torch.Generator().manual_seed(0)
    vectors = {i: torch.randn(4, dtype=torch.float64, generator=generator) for i in range(n)}
    mean = sum(vectors.values()) / n
    before = sum(float(torch.sum((v - mean) ** 2)) for v in vectors.values())
    mixed = vectors
    for _ in range(q):
        mixed = mix_vectors(mixing_rows(weights), mixed)
    after = sum(float(torch.sum((v - mean) ** 2)) for v in mixed.values())
    assert torch.allclose(sum(mixed.values()) / n, mean, atol=1e-14)
    assert after <= (slem**q) ** 2 * before + 1e-15


def _decentralized(name: str, **updates):
    raw = tiny_linreg(
        algorithm={"name": name, "lr": 0.05, "local_steps": 2, "batch_size": 8},
        clients_per_round=None,
        topology={"kind": "ring"},
    )
    raw["algorithm"].update(updates.pop("algorithm", {}))
    raw.update(updates)
    return raw


def test_dfedsam_on_the_complete_graph_with_uniform_weights_is_fedsam(tmp_path):
    """D property (a): W = J and Q = 1 make DFedSAM's average model equal FedSAM's."""
    common = {"lr": 0.05, "local_steps": 3, "batch_size": 8, "rho": 0.1}
    decentralized = _decentralized(
        "dfedsam", algorithm=common, topology={"kind": "complete", "mixing": "uniform"}
    )
    centralized = tiny_linreg(
        algorithm={"name": "fedsam", "weighting": "uniform", **common}, clients_per_round=None
    )
    a = flsim.run(decentralized, run_dir=tmp_path / "d")
    b = flsim.run(centralized, run_dir=tmp_path / "c")
    rows_a = flsim.load_runs(a.run_dir).sort_values("round")
    rows_b = flsim.load_runs(b.run_dir).sort_values("round")
    np.testing.assert_allclose(rows_a["train_loss"], rows_b["train_loss"], rtol=1e-12)
    np.testing.assert_allclose(rows_a["dist_to_opt"], rows_b["dist_to_opt"], rtol=1e-10)
    assert (rows_a["consensus_distance"] < 1e-25).all()
    assert list(rows_a["grad_evals"]) == list(rows_b["grad_evals"])


@pytest.mark.parametrize(("name", "q"), [("dfedavg", 1), ("dfedsam", 1), ("dfedsam_mgs", 4)])
def test_traffic_is_q_times_degree_times_d_per_node(tmp_path, name, q):
    result = flsim.run(_decentralized(name, rounds=2), run_dir=tmp_path / "run")
    n, d = 6, 5
    per_round = q * n * 2 * d * 8  # every ring node sends its d float64 values to 2 neighbours
    assert result.final["bytes_up"] == 2 * per_round
    assert result.final["bytes_down"] == 2 * per_round
    assert result.final["grad_evals"] == 2 * n * 2 * (1 if name == "dfedavg" else 2)


def test_dpsgd_matches_its_recursion(tmp_path):
    """(B7) x_i^{t+1} = Σ_j W_ij x_j^t − η ∇f_i(x_i^t), full batch, checked against numpy."""
    raw = _decentralized("dpsgd", algorithm={"batch_size": "full", "lr": 0.1}, rounds=5)
    raw["topology"] = {"kind": "ring", "mixing": "metropolis"}
    result = flsim.run(raw, run_dir=tmp_path / "run")
    from flsim.scenario import load_scenario
    from flsim.tasks import build_task

    task = build_task(load_scenario(raw).task, raw["seed"])
    n = task.num_clients
    weights = torch.tensor(_ring_metropolis(n))
    x = torch.zeros(n, task.dim, dtype=torch.float64)
    for _ in range(5):
        grads = torch.stack([c.x.T @ (c.x @ x[i] - c.y) / len(c) for i, c in enumerate(task.clients)])
        x = weights @ x - 0.1 * grads
    average = x.mean(dim=0)
    expected_gap = task.global_loss(average) - task.optimum_value
    assert result.final["optimality_gap"] == pytest.approx(expected_gap, rel=1e-9)
    consensus = float(((x - average) ** 2).sum(dim=1).mean())
    assert result.final["consensus_distance"] == pytest.approx(consensus, rel=1e-9)


def test_decentralized_needs_a_topology(tmp_path):
    raw = _decentralized("dfedavg")
    del raw["topology"]
    with pytest.raises(flsim.config.ConfigError, match="topology"):
        flsim.run(raw, run_dir=tmp_path / "run")


def test_dpsgd_with_qsgd_gossip_counts_compressed_bytes_and_still_learns(tmp_path):
    """Uncorrected compressed gossip: exact bytes, progress over a short horizon (its noise
    accumulates over long ones, which is what CHOCO-type corrections address)."""
    raw = _decentralized("dpsgd", algorithm={"batch_size": "full", "lr": 0.1}, rounds=10)
    raw["compression"] = {"uplink": {"kind": "qsgd", "levels": 16}}
    raw["eval"] = {"every": 10}
    result = flsim.run(raw, run_dir=tmp_path / "q")
    exact = flsim.run({**raw, "compression": {}}, run_dir=tmp_path / "exact")
    from flsim.compression import QSGD

    per_message = QSGD(levels=16).message_nbytes(5, torch.float64)
    assert result.final["bytes_up"] == 10 * 6 * 2 * per_message  # ring: 2 messages per node
    assert per_message < 5 * 8
    start_gap = flsim.load_runs(result.run_dir).sort_values("round")["optimality_gap"].iloc[0]
    assert result.final["optimality_gap"] < 0.2 * start_gap
    assert result.final["optimality_gap"] != exact.final["optimality_gap"]


def test_error_feedback_is_rejected_on_gossip(tmp_path):
    raw = _decentralized("dfedavg")
    raw["compression"] = {"uplink": {"kind": "topk", "k": 1}, "error_feedback": "ef21"}
    with pytest.raises(flsim.config.ConfigError, match="compression"):
        flsim.run(raw, run_dir=tmp_path / "run")


@pytest.mark.slow
def test_dpsgd_constant_step_floor_is_order_eta(tmp_path):
    """(B7) With a constant step, D-PSGD settles at ‖x̄ − x*‖ = O(η): halving η halves it."""

    def floor(lr: float) -> float:
        raw = _decentralized("dpsgd", algorithm={"batch_size": "full", "lr": lr}, rounds=3000)
        raw["eval"] = {"every": 3000, "per_node": False}
        return float(np.sqrt(flsim.run(raw, run_dir=tmp_path / f"lr{lr}").final["dist_to_opt"]))

    ratio = floor(0.02) / floor(0.01)
    assert 1.6 < ratio < 2.4


@pytest.mark.slow
def test_multiple_gossip_steps_reach_lower_consensus_on_digits(tmp_path):
    """DFedSAM-MGS (Q = 4) against DFedSAM (Q = 1) on a ring, digits Dir-0.3, median of 3 seeds."""
    from tests.builders import tiny_digits

    finals: dict[str, list[dict]] = {"dfedsam": [], "dfedsam_mgs": []}
    for name in finals:
        for seed in range(3):
            raw = tiny_digits(
                seed=seed,
                task={"num_clients": 16, "partition": {"kind": "dirichlet", "alpha": 0.3}},
                algorithm={"name": name, "lr": 0.1, "local_steps": 5, "batch_size": 32, "rho": 0.05},
                clients_per_round=None,
                topology={"kind": "ring"},
                rounds=30,
                eval={"every": 30},
            )
            finals[name].append(flsim.run(raw, run_dir=tmp_path / f"{name}{seed}").final)

    def median(name: str, key: str) -> float:
        return float(np.median([row[key] for row in finals[name]]))

    assert median("dfedsam_mgs", "consensus_distance") < median("dfedsam", "consensus_distance")
    assert median("dfedsam_mgs", "test_acc") >= median("dfedsam", "test_acc")
