"""Fixtures for the dashboard tests: fabricated runs (as in tests/report) and a live server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.report.conftest import write_run


@pytest.fixture
def results_root(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    root.mkdir()
    return root


@pytest.fixture
def make_run(results_root: Path) -> Callable[..., Path]:
    def _make(**kwargs: Any) -> Path:
        return write_run(results_root, **kwargs)

    return _make


@pytest.fixture
def server(results_root: Path) -> Iterator[Any]:
    from flsim.dashboard.server import background_server

    with background_server(results_root, poll_ms=500) as running:
        yield running
