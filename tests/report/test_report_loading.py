"""load_runs / find_run_dirs over fabricated run directories."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from flsim.results.loading import find_run_dirs, load_run_table, load_runs


def test_find_run_dirs_at_every_level(make_run, results_root: Path) -> None:
    a = make_run(scenario="s1", seed=0)
    b = make_run(scenario="s1", seed=1)
    c = make_run(scenario="s2", algorithm="scaffold", seed=0)
    (a / "checkpoints").mkdir()  # nested dirs inside a run are not runs
    assert find_run_dirs(results_root) == sorted([a.resolve(), b.resolve(), c.resolve()])
    assert find_run_dirs(results_root / "s1") == sorted([a.resolve(), b.resolve()])
    assert find_run_dirs(c) == [c.resolve()]
    assert find_run_dirs([a, a, b]) == sorted([a.resolve(), b.resolve()])


def test_find_run_dirs_missing_path_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        find_run_dirs(tmp_path / "nope")


def test_load_runs_columns_and_bookkeeping(make_run, results_root: Path) -> None:
    make_run(scenario="s1", algorithm="fedavg", seed=0, rounds=4)
    make_run(scenario="s1", algorithm="fedprox", seed=3, rounds=2)
    df = load_runs(results_root)
    assert len(df) == 5 + 3
    for col in ("run_id", "run_dir", "scenario", "algorithm", "seed", "status", "dataset", "partition"):
        assert col in df.columns
    assert {"alpha", "num_clients", "bytes_total", "test_acc", "drift_norm"} <= set(df.columns)
    assert (df["bytes_total"] == df["bytes_up"] + df["bytes_down"]).all()
    assert set(df["algorithm"]) == {"fedavg", "fedprox"}
    assert set(df["seed"]) == {0, 3}
    assert set(df["status"]) == {"completed"}
    assert set(df["dataset"]) == {"digits"} and set(df["partition"]) == {"dirichlet"}
    assert (df["alpha"] == 0.3).all() and (df["num_clients"] == 10).all()
    assert df["round"].dtype == "int64"


def test_jsonl_used_when_parquet_missing_and_truncated_tail_ignored(make_run) -> None:
    run = make_run(
        seed=0, rounds=3, parquet=False, status="failed", truncated_tail='{"round": 4, "virtual_ti'
    )
    df = load_runs(run)
    assert df["round"].tolist() == [0, 1, 2, 3]
    assert set(df["status"]) == {"failed"}


def test_malformed_middle_line_is_skipped(make_run) -> None:
    run = make_run(rounds=2, parquet=False)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    lines.insert(1, '{"round": 1, "te')  # a crash's partial line, then a resume appended after it
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    assert load_runs(run)["round"].tolist() == [0, 1, 2]


def test_parquet_preferred_when_both_exist(make_run) -> None:
    run = make_run(rounds=3)
    # Make the jsonl disagree: if it were read, the rows would differ.
    (run / "metrics.jsonl").write_text(json.dumps({"round": 0, "train_loss": 1.0, "test_loss": 123.0}) + "\n")
    df = load_runs(run)
    assert len(df) == 4
    assert 123.0 not in df["test_loss"].tolist()


def test_corrupt_parquet_falls_back_to_jsonl(make_run) -> None:
    run = make_run(rounds=2)
    (run / "metrics.parquet").write_bytes(b"not a parquet file")
    assert load_runs(run)["round"].tolist() == [0, 1, 2]


def test_run_without_summary_or_rows(make_run, results_root: Path) -> None:
    run = make_run(scenario="s1", seed=7, rows=[], parquet=False)
    (run / "summary.json").unlink()
    assert load_runs(results_root).empty
    table = load_run_table(results_root)
    assert table["run_id"].tolist() == [run.name]
    assert table["status"].tolist() == ["unknown"]
    assert table["seed"].tolist() == [7]  # from config.yaml


def test_empty_root_gives_empty_frame(tmp_path: Path) -> None:
    df = load_runs(tmp_path)
    assert df.empty and "run_id" in df.columns and "round" in df.columns
    assert isinstance(df, pd.DataFrame)


def test_non_finite_values_spelled_as_strings_in_jsonl(make_run) -> None:
    # The writer stores ±inf as "inf"/"-inf" and NaN as null in metrics.jsonl.
    rows = [
        {"round": 0, "test_loss": 1.0, "optimality_gap": None},
        {"round": 1, "test_loss": "inf", "optimality_gap": "inf"},
        {"round": 2, "test_loss": 0.5, "optimality_gap": "-inf"},
    ]
    run = make_run(rows=rows, parquet=False)
    df = load_runs(run)
    assert df["test_loss"].tolist() == [1.0, float("inf"), 0.5]
    gap = df["optimality_gap"].tolist()
    assert pd.isna(gap[0]) and gap[1:] == [float("inf"), float("-inf")]


def test_runs_with_different_extras_and_types_concatenate(make_run, results_root: Path) -> None:
    make_run(seed=0, rows=[{"round": 0, "test_loss": 1.0, "extra": 1}], parquet=False)
    make_run(seed=1, rows=[{"round": 0, "test_loss": 2.0, "extra": 2.5, "other": "tag"}])
    df = load_runs(results_root).sort_values("seed")
    assert df["extra"].tolist() == [1.0, 2.5]
    assert df["other"].isna().tolist() == [True, False]
