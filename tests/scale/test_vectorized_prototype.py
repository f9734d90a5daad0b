"""The vmapped round of benchmarks.vectorized computes flsim's sequential round (issue 17, part 2)."""

from __future__ import annotations

import pytest

from benchmarks.vectorized import time_round


@pytest.mark.parametrize("algorithm", ["fedavg", "scaffold"])
def test_vmapped_round_matches_the_sequential_clients(algorithm):
    _, rel = time_round(6, algorithm, repeats=1)  # the worse of the vmap and bmm variants
    assert rel <= 1e-5
