"""Shared fixtures."""

from __future__ import annotations

from typing import Any

import pytest

from tests.builders import tiny_digits, tiny_linreg


@pytest.fixture
def linreg_scenario() -> dict[str, Any]:
    return tiny_linreg()


@pytest.fixture
def digits_scenario() -> dict[str, Any]:
    return tiny_digits()


@pytest.fixture(scope="module")
def ray_session():
    """One Ray session per test module (2 CPUs), always shut down: starting Ray takes seconds."""
    import ray

    ray.init(
        address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False
    )
    try:
        yield ray
    finally:
        ray.shutdown()
