"""Run directories: determinism, resume, atomic results, CLI entry points."""

from __future__ import annotations

import json

import yaml

import flsim
from flsim.cli import main
from flsim.engine.simulation import RoundSimulation
from tests.builders import metrics_without_wall_time, run_until_crash, tiny_linreg


def test_same_seed_same_metrics_different_seed_different(tmp_path):
    first = flsim.run(tiny_linreg(), run_dir=tmp_path / "a")
    second = flsim.run(tiny_linreg(), run_dir=tmp_path / "b")
    other = flsim.run(tiny_linreg(seed=2), run_dir=tmp_path / "c")
    rows = metrics_without_wall_time(first.run_dir)
    assert rows == metrics_without_wall_time(second.run_dir)
    assert rows != metrics_without_wall_time(other.run_dir)
    assert len(rows) == 7  # round 0 plus 6 rounds


def test_run_directory_contents(tmp_path):
    result = flsim.run(tiny_linreg(), run_dir=tmp_path / "run")
    files = {p.name for p in result.run_dir.iterdir()}
    assert {"config.yaml", "metrics.jsonl", "metrics.parquet", "summary.json"} <= files
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["status"] == "completed"
    config = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    assert config["algorithm"]["batch_size"] == 8 and config["algorithm"]["momentum"] == 0.0
    assert "torch" in config["versions"]
    row = json.loads((result.run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    for key in (
        "round",
        "virtual_time",
        "wall_time",
        "bytes_up",
        "bytes_down",
        "grad_evals",
        "train_loss",
        "test_loss",
        "optimality_gap",
        "dist_to_opt",
    ):
        assert key in row
    assert row["optimality_gap"] >= -1e-12
    frame = flsim.load_runs(result.run_dir)
    assert len(frame) == 7


def test_resume_is_bit_identical(tmp_path):
    raw = tiny_linreg(rounds=10, checkpoint={"every": 4}, eval={"every": 1})
    full = flsim.run(raw, run_dir=tmp_path / "full")

    crashed = tmp_path / "crashed"
    run_until_crash(raw, crashed, RoundSimulation, 6)
    assert len(metrics_without_wall_time(crashed)) == 7  # rounds 0..6 written, checkpoint at 4
    summary = json.loads((crashed / "summary.json").read_text())
    assert summary["status"] == "failed"
    resumed = flsim.resume(crashed)
    assert metrics_without_wall_time(resumed.run_dir) == metrics_without_wall_time(full.run_dir)
    assert resumed.summary["status"] == "completed"


def test_cli_run_and_report(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(tiny_linreg(output={"dir": str(tmp_path / "out")})))
    assert main(["run", str(path), "-o", "rounds=2", "--progress", "off"]) == 0
    run_dirs = list((tmp_path / "out" / "tiny_linreg").iterdir())
    assert len(run_dirs) == 1
    assert main(["run", str(path), "--run-dir", str(run_dirs[0])]) == 2  # refuses to overwrite
    report = tmp_path / "r.html"
    assert main(["report", str(tmp_path / "out"), "-o", str(report)]) == 0
    assert report.read_text().count("<html") == 1
    capsys.readouterr()
    assert main(["list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert "fedavg" in listing["algorithms"] and "dirichlet" in listing["partitioners"]
