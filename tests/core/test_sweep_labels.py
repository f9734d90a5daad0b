"""Sweep runs can be told apart: readable unique ids, a config hash, tags and notes; ``-o``,
``--dry-run`` and a count of skipped runs."""

from __future__ import annotations

import json

import pytest
import yaml

from flsim.cli import main
from flsim.config.errors import ConfigError
from flsim.sweep import expand_sweep
from tests.builders import tiny_linreg


def _sweep_file(tmp_path, base=None, **sweep):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base or tiny_linreg(rounds=2)))
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"sweep": {"name": "lab", "base": "base.yaml", "seeds": [0, 1], **sweep}}))
    return path


def test_labels_read_variant_grid_value_and_seed(tmp_path):
    path = _sweep_file(
        tmp_path,
        grid={"task.dataset_params.heterogeneity": [0.1, 1.0]},
        variants={"fedavg": {}, "slow": {"algorithm.lr": 0.01}},
    )
    labels = [r.label for r in expand_sweep(path)[1]]
    assert labels[:2] == ["fedavg-heterogeneity0.1-s0", "fedavg-heterogeneity0.1-s1"]
    assert len(set(labels)) == len(labels) == 8


def test_grid_keys_sharing_a_last_part_keep_enough_of_the_key(tmp_path):
    path = _sweep_file(tmp_path, grid={"algorithm.lr": [0.1], "algorithm.server_lr": [0.5]}, seeds=[0])
    assert [r.label for r in expand_sweep(path)[1]] == ["base-lr0.1-server_lr0.5-s0"]
    path = _sweep_file(tmp_path, grid={"a.x": [1], "b.x": [2]}, seeds=[0])
    with pytest.raises(ConfigError):  # unknown keys, but the labels were told apart first
        expand_sweep(path)


def test_values_that_print_alike_are_refused(tmp_path):
    path = _sweep_file(tmp_path, grid={"notes": ["a b", "ab"]}, seeds=[0])  # spaces are dropped
    with pytest.raises(ConfigError, match=r"sweep\.grid"):
        expand_sweep(path)


def test_runs_record_label_hash_tags_and_notes_and_skips_are_counted(tmp_path, capsys):
    base = {**tiny_linreg(rounds=2), "tags": ["demo"], "notes": "two heterogeneities"}
    path = _sweep_file(tmp_path, base=base, grid={"task.dataset_params.heterogeneity": [0.0, 2.0]})
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--output-dir", str(out), "--progress", "off"]) == 0
    summaries = {p.parent.name: json.loads(p.read_text()) for p in (out / "lab").glob("*/summary.json")}
    assert {s["run_id"] for s in summaries.values()} == set(summaries)
    assert "base-heterogeneity0.0-s1" in summaries
    hashes = {name: s["config_hash"] for name, s in summaries.items()}
    assert hashes["base-heterogeneity0.0-s0"] == hashes["base-heterogeneity0.0-s1"]
    assert hashes["base-heterogeneity0.0-s0"] != hashes["base-heterogeneity2.0-s0"]
    assert all(s["tags"] == ["demo"] and s["notes"] == "two heterogeneities" for s in summaries.values())
    capsys.readouterr()

    assert main(["sweep", str(path), "--output-dir", str(out), "--dry-run"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "0 to run, 4 already completed (skipped)"
    assert main(["sweep", str(path), "--output-dir", str(out), "--progress", "off"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "0 completed, 0 failed, 4 skipped (already completed)"


def test_overrides_apply_to_the_base_and_dry_run_writes_nothing(tmp_path, capsys):
    path = _sweep_file(tmp_path, grid={"algorithm.lr": [0.1, 0.2]})
    _spec, runs = expand_sweep(path, ["rounds=3", "algorithm.lr=0.9"])
    assert {r.scenario["rounds"] for r in runs} == {3}
    assert sorted({r.scenario["algorithm"]["lr"] for r in runs}) == [0.1, 0.2]  # the grid wins
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--output-dir", str(out), "--dry-run", "-o", "rounds=3"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "4 to run, 0 already completed (skipped)"
    assert not out.exists()
    assert main(["sweep", str(path), "--dry-run", "-o", "rounds=-1"]) == 2
