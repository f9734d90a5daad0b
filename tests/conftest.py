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
