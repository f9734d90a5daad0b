"""Compression as a channel on any algorithm: exact bytes, and error feedback that works."""

from __future__ import annotations

import json

import flsim
from tests.builders import metrics_without_wall_time, run_until_crash, tiny_linreg


def _full_gd(**updates):
    return tiny_linreg(
        algorithm={"name": "fedavg", "lr": 0.1, "local_steps": 1, "batch_size": "full"},
        clients_per_round=None,
        **updates,
    )


def test_identity_uplink_changes_nothing(tmp_path):
    plain = flsim.run(_full_gd(), run_dir=tmp_path / "plain")
    identity = flsim.run(_full_gd(compression={"uplink": {"kind": "identity"}}), run_dir=tmp_path / "id")
    assert metrics_without_wall_time(plain.run_dir) == metrics_without_wall_time(identity.run_dir)


def test_topk_uplink_bytes_are_exact(tmp_path):
    raw = _full_gd(compression={"uplink": {"kind": "topk", "k": 2}}, rounds=3)
    result = flsim.run(raw, run_dir=tmp_path / "run")
    # d = 5 float64 values: 2 values × 8 bytes + 2 one-byte indices per client per round
    assert result.final["bytes_up"] == 3 * 6 * (2 * 8 + 2 * 1)
    assert result.final["bytes_down"] == 3 * 6 * 5 * 8


def test_error_feedback_channel_removes_the_compression_floor(tmp_path):
    def final_gap(feedback: str) -> float:
        raw = _full_gd(
            compression={"uplink": {"kind": "topk", "k": 1}, "error_feedback": feedback},
            rounds=600,
            eval={"every": 600},
        )
        result = flsim.run(raw, run_dir=tmp_path / feedback)
        return result.final["optimality_gap"]

    corrected = final_gap("ef21")
    uncorrected = final_gap("none")
    assert corrected < 1e-9
    assert uncorrected > 1e3 * max(corrected, 1e-12)


def test_channel_state_is_checkpointed(tmp_path):
    raw = _full_gd(
        compression={"uplink": {"kind": "topk", "k": 1}, "error_feedback": "econtrol"},
        checkpoint={"every": 2},
        rounds=4,
    )
    result = flsim.run(raw, run_dir=tmp_path / "run")
    from flsim.results.writer import RunWriter

    state = RunWriter(result.run_dir).load_checkpoint()
    client_state = state["clients"][0]
    assert {"channel.delta.error", "channel.delta.shift"} <= set(client_state)
    assert json.loads((result.run_dir / "summary.json").read_text())["status"] == "completed"


def test_compressed_downlink_tracks_the_model_and_counts_compressed_bytes(tmp_path):
    raw = _full_gd(compression={"downlink": {"kind": "topk", "k": 2}}, rounds=300, eval={"every": 50})
    result = flsim.run(raw, run_dir=tmp_path / "run")
    first = 6 * 5 * 8  # the first broadcast is sent uncompressed to 6 clients
    assert result.final["bytes_down"] == first + 299 * 6 * (2 * 8 + 2 * 1)
    plain = flsim.run(_full_gd(rounds=300, eval={"every": 50}), run_dir=tmp_path / "plain")
    assert result.final["optimality_gap"] < 1e-6  # x̂ tracks x, so the run still converges
    compressed_losses = [row["train_loss"] for row in metrics_without_wall_time(result.run_dir)]
    plain_losses = [row["train_loss"] for row in metrics_without_wall_time(plain.run_dir)]
    assert compressed_losses[1] != plain_losses[1]  # but the trajectory is a different one


def test_downlink_is_checkpointed_for_bit_identical_resume(tmp_path):
    from flsim.engine.simulation import RoundSimulation

    raw = _full_gd(compression={"downlink": {"kind": "topk", "k": 2}}, rounds=8, checkpoint={"every": 3})
    full = flsim.run(raw, run_dir=tmp_path / "full")
    run_until_crash(raw, tmp_path / "crashed", RoundSimulation, 5)
    resumed = flsim.resume(tmp_path / "crashed")
    assert metrics_without_wall_time(resumed.run_dir) == metrics_without_wall_time(full.run_dir)


def test_stateful_algorithm_keeps_its_channel_state_across_rounds(tmp_path):
    """SCAFFOLD returns a fresh state dict ({"c": c_i⁺}); the channel's state must survive it.

    EF21 sends a client's first message uncompressed (g_i⁰ = v) and only C(v − g_i) after
    that. A channel whose mirror were dropped with the algorithm's old state would start over
    every round and send every message dense. Full participation: each of the 6 clients sends
    its two tensors (Δy, Δc; d = 5 float64 values) in each of 3 rounds.
    """
    raw = tiny_linreg(
        algorithm={"name": "scaffold", "lr": 0.05, "local_steps": 2, "batch_size": "full"},
        clients_per_round=None,
        compression={"uplink": {"kind": "topk", "k": 1}, "error_feedback": "ef21"},
        rounds=3,
    )
    result = flsim.run(raw, run_dir=tmp_path / "run")
    dense, top1 = 5 * 8, 8 + 1  # bytes of one tensor: uncompressed, and one value + its index
    assert result.final["bytes_up"] == 6 * 2 * (dense + 2 * top1)
