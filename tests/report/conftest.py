"""Fabricates run directories in the engine's results format, so report tests need no engine."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml


def fake_metrics(rounds: int, seed: int = 0, *, acc: bool = True, gap: bool = False) -> list[dict[str, Any]]:
    """Plausible, seed-dependent metric rows for rounds 0..rounds (cumulative counters grow)."""
    rows = []
    for r in range(rounds + 1):
        loss = 2.0 * math.exp(-0.3 * r) + 0.05 * (seed + 1)
        row: dict[str, Any] = {
            "round": r,
            "virtual_time": 1.5 * r + 0.1 * seed,
            "wall_time": 0.01 * r,
            "events": 20 * r,
            "bytes_up": 1000 * r,
            "bytes_down": 2000 * r,
            "grad_evals": 50 * r,
            "train_loss": loss * 0.9,
            "test_loss": loss,
            "drift_norm": 0.1 * r,  # a per-algorithm extra
        }
        if acc:
            row["test_acc"] = min(0.99, 0.1 + 0.08 * r + 0.01 * seed)
        if gap:
            row["optimality_gap"] = 10.0 * 0.5**r + 1e-6
        rows.append(row)
    return rows


def write_run(
    root: Path,
    scenario: str = "digits_iid",
    algorithm: str = "fedavg",
    seed: int = 0,
    rounds: int = 5,
    *,
    run_id: str | None = None,
    rows: list[dict[str, Any]] | None = None,
    parquet: bool = True,
    jsonl: bool = True,
    status: str = "completed",
    truncated_tail: str | None = None,
    acc: bool = True,
    gap: bool = False,
) -> Path:
    """Write ``root/<scenario>/<run_id>/`` with config.yaml, metrics files and summary.json.

    ``truncated_tail`` is appended to the jsonl without a newline, like a crash mid-write.
    """
    run_id = run_id or f"{algorithm}-s{seed}"
    run_dir = root / scenario / run_id
    run_dir.mkdir(parents=True)
    rows = rows if rows is not None else fake_metrics(rounds, seed, acc=acc, gap=gap)
    config = {
        "name": scenario,
        "seed": seed,
        "task": {
            "dataset": "digits",
            "num_clients": 10,
            "partition": {"kind": "dirichlet", "alpha": 0.3},
            "model": {"name": "mlp"},
        },
        "algorithm": {"name": algorithm, "lr": 0.1},
        "rounds": rounds,
        "versions": {"flsim": "0.0.test"},
    }
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    if jsonl:
        text = "".join(json.dumps(r) + "\n" for r in rows)
        (run_dir / "metrics.jsonl").write_text(text + (truncated_tail or ""), encoding="utf-8")
    if parquet:
        pd.DataFrame(rows).to_parquet(run_dir / "metrics.parquet", index=False)
    summary = {
        "status": status,
        "name": scenario,
        "run_id": run_id,
        "algorithm": algorithm,
        "seed": seed,
        "final": rows[-1] if rows else {},
        "timings": {"total_s": 1.0},
    }
    (run_dir / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    return run_dir


@pytest.fixture
def make_run(tmp_path: Path) -> Callable[..., Path]:
    """``make_run(scenario=..., algorithm=..., seed=..., ...)`` writes one run under tmp_path/results."""
    root = tmp_path / "results"

    def _make(**kwargs: Any) -> Path:
        return write_run(root, **kwargs)

    return _make


@pytest.fixture
def results_root(tmp_path: Path) -> Path:
    """Where :func:`make_run` puts its runs."""
    return tmp_path / "results"
