"""Tiny event-driven scenarios shared by the tests in this folder (as fixtures: ``tests/async``
cannot be imported by name, ``async`` being a keyword)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.builders import make_ridge, metrics_without_wall_time


def read_rows(run_dir: Path, wall_time: bool = False) -> list[dict[str, Any]]:
    if not wall_time:
        return metrics_without_wall_time(run_dir)
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture
def ridge():
    return make_ridge


@pytest.fixture
def rows():
    return read_rows
