"""The plugin's own test: registered on import, FedAvg at β = 0, and different from it at β > 0."""

from __future__ import annotations

import json

import flsim_plugin_example  # noqa: F401 - registers fedavgm_example

import flsim

SCENARIO = {
    "name": "plugin",
    "task": {"dataset": "linreg", "num_clients": 4, "dataset_params": {"dim": 5, "samples_per_client": 20}},
    "algorithm": {"name": "fedavgm_example", "lr": 0.05, "local_steps": 2, "batch_size": "full"},
    "rounds": 5,
}


def _losses(tmp_path, label, **algorithm):
    raw = {**SCENARIO, "algorithm": {**SCENARIO["algorithm"], **algorithm}}
    result = flsim.run(raw, run_dir=tmp_path / label)
    rows = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    return [row["train_loss"] for row in rows if "train_loss" in row]


def test_zero_momentum_is_fedavg(tmp_path):
    plugin = _losses(tmp_path, "m0", server_momentum=0.0)
    fedavg = _losses(tmp_path, "fedavg", name="fedavg")
    assert plugin == fedavg and plugin


def test_momentum_changes_the_trajectory(tmp_path):
    assert _losses(tmp_path, "m9", server_momentum=0.9) != _losses(tmp_path, "m0", server_momentum=0.0)
