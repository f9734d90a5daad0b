"""The shipped scenarios of ``scenarios/async``: every file validates, every graph builds, and
the sweeps cover the comparisons the issue asks for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import flsim
from flsim.config.loading import read_yaml
from flsim.hosts.event_host import event_graphs
from flsim.scenario import load_scenario
from flsim.sweep import expand_sweep

FOLDER = Path(__file__).resolve().parents[2] / "scenarios" / "async"
FILES = sorted(FOLDER.glob("*.yaml"))


def _runs(path: Path) -> list[dict]:
    if "sweep" in read_yaml(path):
        return [run.scenario for run in expand_sweep(path)[1]]
    return [read_yaml(path)]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_async_scenario_validates_and_its_graphs_build(path):
    topologies = {}
    for raw in _runs(path):
        scenario = load_scenario(raw)
        assert scenario.topology is not None
        key = (scenario.task.num_clients, scenario.topology.model_dump_json(exclude={"rates"}))
        topologies[key] = scenario
    for scenario in topologies.values():
        uniform = scenario.topology.model_copy(update={"rates": "uniform"})  # SDP solves are slow
        graphs = event_graphs(uniform, scenario.task.num_clients, scenario.seed)
        assert all(g.total_rate > 0 for g in graphs)


def test_the_sweeps_cover_graphs_tasks_and_algorithms():
    compared = {"star", "ring", "path", "grid", "geometric", "geometric_cycle"}
    assert {p.stem for p in FILES} >= {f"compare_{g}" for g in compared} | {"rates_barbell", "rates_lollipop"}
    for graph in compared:
        runs = _runs(FOLDER / f"compare_{graph}.yaml")
        algorithms = {run["algorithm"]["name"] for run in runs}
        assert algorithms == {"dadao", "async_gossip_sgd", "adom_plus"}
        assert {run["task"]["dataset"] for run in runs} == {"linreg", "logreg"}
        assert all(20 <= run["task"]["num_clients"] <= 50 for run in runs)
        assert all(run["task"]["dataset_params"]["l2"] > 0 for run in runs)
    for graph in ("barbell", "lollipop"):
        rates = {run["topology"]["rates"] for run in _runs(FOLDER / f"rates_{graph}.yaml")}
        assert rates == {"uniform", "sdp"}


def test_a_shortened_comparison_runs(tmp_path):
    import math

    for raw in _runs(FOLDER / "compare_grid.yaml"):
        if raw["seed"] != 0 or raw["task"]["dataset"] != "logreg":
            continue
        raw = {**raw, "budget": {"gradients": 360}, "eval": {"every_time": 5.0, "train_loss": False}}
        name = raw["algorithm"]["name"] + str(raw["algorithm"].get("multi_consensus", ""))
        result = flsim.run(raw, run_dir=tmp_path / name)
        assert result.final["grad_evals"] >= 360
        assert math.isfinite(result.final["mean_sq_dist_to_opt"])
        if name == "dadao":
            first = json.loads((result.run_dir / "metrics.jsonl").read_text().splitlines()[0])
            assert result.final["mean_sq_dist_to_opt"] < 0.7 * first["mean_sq_dist_to_opt"]
