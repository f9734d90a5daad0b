"""Tiny event-driven scenarios shared by the tests in this folder (as fixtures: ``tests/async``
cannot be imported by name, ``async`` being a keyword)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.builders import tiny_linreg


def make_ridge(algorithm: dict[str, Any] | str = "dadao", **updates: Any) -> dict[str, Any]:
    """tiny_linreg (6 nodes, d = 5) with l2 = 1, so every f_i is μ-strongly convex (A)."""
    raw = tiny_linreg(
        algorithm={"name": algorithm} if isinstance(algorithm, str) else algorithm,
        topology={"kind": "ring"},
        clients_per_round=None,
        budget={"time": 60.0},
        eval={"every_time": 20.0},
    )
    raw["task"]["dataset_params"]["l2"] = 1.0
    raw.update(updates)
    return raw


def read_rows(run_dir: Path, wall_time: bool = False) -> list[dict[str, Any]]:
    out = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    if not wall_time:
        for row in out:
            row.pop("wall_time")
    return out


@pytest.fixture
def ridge():
    return make_ridge


@pytest.fixture
def rows():
    return read_rows
