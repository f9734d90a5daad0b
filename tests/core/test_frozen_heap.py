"""The run loop keeps the heap that exists before a run out of the collector's full passes."""

from __future__ import annotations

import gc

import pytest

from flsim.hosts.frozen_heap import frozen_heap


def test_frozen_for_the_run_and_handed_back_after_nested_runs_and_errors():
    assert gc.get_freeze_count() == 0
    with frozen_heap():
        frozen = gc.get_freeze_count()
        assert frozen > 0
        with frozen_heap():  # a nested run leaves the outer freeze alone
            assert gc.get_freeze_count() >= frozen
        assert gc.get_freeze_count() >= frozen
    assert gc.get_freeze_count() == 0
    with pytest.raises(RuntimeError), frozen_heap():
        raise RuntimeError("a failed run")
    assert gc.get_freeze_count() == 0
