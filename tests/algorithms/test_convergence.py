"""Exactness on heterogeneous least squares (docs/algorithms.md F (b), B3, B5, M (a)).

Full participation, full-batch gradients: the drift-corrected methods converge to the exact
minimiser x* (optimality_gap < 1e-8), while FedAvg with K = 10 local steps stalls at a
floor orders of magnitude higher (its fixed point is not x* when clients differ).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.builders import make_simulation, tiny_linreg

ROUNDS = 120
LOCAL = {"local_steps": 10, "batch_size": "full"}

EXACT: dict[str, dict[str, Any]] = {
    # ρ = 0, no weight decay (it would move the fixed point, F (b)), no clipping or lr decay.
    "fedspeed": {
        "lr": 0.05,
        "rho": 0.0,
        "lamb": 1.0,
        "weight_decay": 0.0,
        "clip_norm": None,
        "lr_decay": 1.0,
    },
    "scaffold": {"lr": 0.05},
    "feddyn": {"lr": 0.05, "alpha": 1.0},
    # Full-batch anchors (the default B′); the table is refreshed about every other round.
    "fedamd": {"lr": 0.02, "anchor_prob": 0.5},
}


def _gaps(tmp_path, name: str, params: dict[str, Any], checkpoints: tuple[int, ...]) -> list[float]:
    """optimality_gap after each round count in ``checkpoints``."""
    raw = tiny_linreg(
        algorithm={"name": name, **LOCAL, **params},
        clients_per_round=None,
        rounds=max(checkpoints),
        task={"dataset_params": {"heterogeneity": 1.0}},
    )
    simulation = make_simulation(raw, tmp_path)
    gaps = []
    for round_index in range(max(checkpoints)):
        simulation.run_round(round_index)
        if round_index + 1 in checkpoints:
            model = simulation.algorithm.global_model(simulation.server)
            gaps.append(simulation.task.evaluate(model)["optimality_gap"])
    return gaps


@pytest.mark.parametrize("name", sorted(EXACT))
def test_drift_corrected_methods_reach_the_exact_optimum(tmp_path, name):
    (gap,) = _gaps(tmp_path, name, EXACT[name], (ROUNDS,))
    assert abs(gap) < 1e-8


def test_fedavg_with_ten_local_steps_stalls_at_a_much_larger_floor(tmp_path):
    early, late = _gaps(tmp_path, "fedavg", {"lr": 0.05}, (ROUNDS // 2, ROUNDS))
    assert late > 1e-3  # about 2.8e-2: six orders of magnitude above the 1e-8 of the others
    # A floor, not slow progress: the second half of the run does not move it.
    assert abs(late - early) < 1e-6 * late
