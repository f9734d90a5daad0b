"""Event runs are pure functions of the seed: same seed, same trajectory; the event stream is
shared by the asynchronous algorithms (common random numbers for comparisons)."""

from __future__ import annotations

import pytest

import flsim

CYCLE = {"time_varying": "cycle", "cycle": [{"kind": "ring"}, {"kind": "path"}]}


@pytest.mark.parametrize(
    "algorithm",
    [
        {"name": "dadao"},
        {"name": "dadao", "batch_size": 3},
        {"name": "async_gossip_sgd", "batch_size": 3},
        {"name": "adom_plus", "multi_consensus": True},
    ],
    ids=["dadao", "dadao_sgd", "gossip_sgd", "adom_plus_mc"],
)
def test_same_seed_gives_identical_trajectories(tmp_path, ridge, rows, algorithm):
    raw = ridge(algorithm, topology=CYCLE, budget={"time": 20.0}, eval={"every_time": 5.0})
    a = rows(flsim.run(raw, run_dir=tmp_path / "a").run_dir)
    b = rows(flsim.run(raw, run_dir=tmp_path / "b").run_dir)
    c = rows(flsim.run({**raw, "seed": 9}, run_dir=tmp_path / "c").run_dir)
    assert a == b
    assert [r["mean_sq_dist_to_opt"] for r in a] != [r["mean_sq_dist_to_opt"] for r in c]


def test_asynchronous_algorithms_see_the_same_events(tmp_path, ridge, rows):
    counts = []
    for name in ("dadao", "async_gossip_sgd"):
        data = rows(flsim.run(ridge(name, topology=CYCLE), run_dir=tmp_path / name).run_dir)
        counts.append([(r["grad_evals"], r["communications"]) for r in data])
    assert counts[0] == counts[1]
