"""Checkpoint and resume of event runs: the random stream (with its current block), the
algorithm's arrays, the graph index and the counters; a resumed run is bit-identical."""

from __future__ import annotations

import json

import pytest

import flsim
from flsim.algorithms.adom_plus import AdomPlus
from flsim.algorithms.async_gossip_sgd import AsyncGossipSGD
from flsim.algorithms.dadao import DADAO

CYCLE = {"time_varying": "cycle", "cycle": [{"kind": "ring"}, {"kind": "star"}]}


@pytest.mark.parametrize(
    ("algorithm", "cls", "method", "topology", "budget"),
    [
        ({"name": "dadao", "batch_size": 4}, DADAO, "on_edge", CYCLE, {"time": 40.0}),
        ({"name": "dadao"}, DADAO, "on_compute", {"kind": "ring"}, {"gradients": 240}),
        (
            {"name": "async_gossip_sgd", "batch_size": 4},
            AsyncGossipSGD,
            "on_compute",
            {"kind": "ring"},
            {"time": 40.0},
        ),
        ({"name": "adom_plus", "multi_consensus": True}, AdomPlus, "step", CYCLE, {"time": 40.0}),
    ],
    ids=["dadao_sgd_cycle", "dadao_gradient_budget", "gossip_sgd", "adom_plus_mc_cycle"],
)
def test_a_killed_event_run_resumes_bit_identically(
    tmp_path, monkeypatch, ridge, rows, algorithm, cls, method, topology, budget
):
    raw = ridge(
        algorithm, topology=topology, budget=budget, eval={"every_time": 4.0}, checkpoint={"every": 3}
    )
    full = flsim.run(raw, run_dir=tmp_path / "full")

    original = getattr(cls, method)

    def dies_after_time_25(self, *args):
        t = args[-1] if method != "step" else args[0] + 1.0
        if t > 25.0:
            raise RuntimeError("killed")
        return original(self, *args)

    crashed = tmp_path / "crashed"
    with monkeypatch.context() as patch:
        patch.setattr(cls, method, dies_after_time_25)
        with pytest.raises(RuntimeError, match="killed"):
            flsim.run(raw, run_dir=crashed)
    assert len(rows(crashed)) == 7  # t = 0, 4, ..., 24; checkpoints after rows 3 and 6
    assert json.loads((crashed / "summary.json").read_text())["status"] == "failed"

    def only_after_the_checkpoint(self, *args):  # the last checkpoint is after the row at t = 24
        t = args[-1] if method != "step" else args[0] + 1.0
        assert t > 24.0, "the resumed run replayed events before its checkpoint"
        return original(self, *args)

    with monkeypatch.context() as patch:
        patch.setattr(cls, method, only_after_the_checkpoint)
        resumed = flsim.resume(crashed)
    assert resumed.summary["status"] == "completed"
    assert rows(resumed.run_dir) == rows(full.run_dir)
