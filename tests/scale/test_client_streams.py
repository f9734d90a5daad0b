"""Block-seeded client streams draw what ``numpy_rng`` draws, and block draws equal per-client ones."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flsim.config.schema import TaskConfig
from flsim.rng import numpy_rng
from flsim.tasks import convex
from flsim.tasks.client_streams import client_generators, pcg64_states


@pytest.mark.parametrize("seed", [0, 1, 12345, 2**40 + 3, 2**70 + 11])
@pytest.mark.parametrize("counter", [0, 5])
def test_block_seeded_generators_equal_numpy_rng(seed, counter):
    """Seeds of one, two and three 32-bit words (more entropy words than the pool's four)."""
    nodes = [0, 1, 2, 99, 65_535, 999_999, 2**31, 2**32 - 2]
    for purpose in ("data", "system.speed"):
        for generator, node in zip(client_generators(seed, purpose, nodes, counter), nodes, strict=True):
            reference = numpy_rng(seed, purpose, node, counter)
            assert generator.bit_generator.state == reference.bit_generator.state
            assert np.array_equal(generator.standard_normal(9), reference.standard_normal(9))


def test_node_ids_outside_one_word_are_refused():
    with pytest.raises(ValueError, match="node ids"):
        pcg64_states(0, "data", [2**32 - 1])


def _linreg_spec(h: float) -> convex._LinregSpec:
    cfg = TaskConfig(
        dataset="linreg",
        num_clients=10,
        dataset_params={"dim": 11, "samples_per_client": 6, "heterogeneity": h, "l2": 0.1},
    )
    return convex._linreg_spec(cfg, 4)[0]


def _logreg_spec(h: float) -> convex._LogregSpec:
    w_bar = 2.0 * numpy_rng(4, "data/shared").standard_normal(11) / math.sqrt(11)
    return convex._LogregSpec(4, 11, 6, h, 1e-3, w_bar)


@pytest.mark.parametrize("make", [_linreg_spec, _logreg_spec])
@pytest.mark.parametrize("h", [0.0, 1.0, 2.5])
@pytest.mark.parametrize(("start", "stop"), [(0, 1), (3, 40), (100, 700)])
def test_block_draws_are_the_per_client_rows(make, h, start, stop):
    """The streamed optimum reads ``chunk``; lazily built clients read ``train``: same bits."""
    spec = make(h)
    a, b = spec.rows_of(range(start, stop))
    parts = [spec.train(i) for i in range(start, stop)]
    assert np.array_equal(a, np.concatenate([x for x, _ in parts]))
    assert np.array_equal(b, np.concatenate([y for _, y in parts]))
