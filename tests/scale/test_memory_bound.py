"""A long run with a client cache smaller than the population keeps its memory (issue 17)."""

from __future__ import annotations

import pytest

from benchmarks.scale import in_subprocess, scenario


@pytest.mark.slow
def test_peak_rss_after_1000_rounds_is_within_10_percent_of_after_100():
    """20,000 clients (lazy: 20.4 M numbers > LAZY_MIN_FLOATS), a cache of 200, K = 100.

    Each run is its own process, so each peak RSS is its own; an unbounded cache would hold
    all 20,000 sampled clients (≈ 160 MB of rows) by round 1000 and fail the ratio."""
    peaks = [in_subprocess(scenario(20_000, rounds, None, 200))["peak_mib"] for rounds in (100, 1000)]
    assert peaks[1] <= 1.10 * peaks[0], peaks
