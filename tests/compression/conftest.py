"""Fixtures for the compression tests."""

from __future__ import annotations

import pytest

from tests.compression.least_squares import LeastSquares, make_least_squares


@pytest.fixture(scope="session")
def least_squares() -> LeastSquares:
    return make_least_squares()
