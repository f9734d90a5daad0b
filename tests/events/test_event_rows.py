"""An evaluation row's distances, computed a few rows at a time (flsim/hosts/event_host.py)."""

from __future__ import annotations

import numpy as np
import pytest

from flsim.hosts import event_host
from flsim.hosts.event_host import mean_sq_distance
from flsim.rng import numpy_rng


@pytest.mark.parametrize(("nodes", "dim", "block"), [(9, 5, 1 << 18), (32, 70_001, 1 << 18), (7, 1000, 2500)])
def test_mean_sq_distance_is_bit_identical_to_the_whole_array_formula(monkeypatch, nodes, dim, block):
    """Each row's sum is the same pairwise sum however many rows a block holds, so the blocks
    (one row, several, or all) give the very bits of ``((x - c) ** 2).sum(1).mean()``."""
    monkeypatch.setattr(event_host, "DISTANCE_BLOCK", block)
    rng = numpy_rng(0, "test.distance")
    models = rng.standard_normal((nodes, dim)) * rng.exponential(size=(nodes, 1))
    center = models.mean(axis=0)
    assert mean_sq_distance(models, center) == float(((models - center) ** 2).sum(axis=1).mean())
    assert mean_sq_distance(models, np.zeros(dim)) == float((models**2).sum(axis=1).mean())


@pytest.mark.parametrize("algorithm", ["async_gossip_sgd", "adom_plus"])
def test_models_at_is_the_state_itself_and_cannot_be_written(algorithm):
    """Where the models are the state, ``models_at`` hands out a read-only view instead of an
    N × d copy: the same values, no allocation, and a caller that writes fails loudly."""
    from flsim.hosts.event_host import EventSimulation
    from flsim.hosts.sinks import RowCollector, Silent
    from flsim.scenario import load_scenario
    from flsim.tasks import build_task
    from tests.builders import make_ridge

    params = {"name": algorithm, **({"batch_size": 4} if algorithm == "async_gossip_sgd" else {})}
    scenario = load_scenario(make_ridge(params))
    simulation = EventSimulation(scenario, build_task(scenario.task, scenario.seed), RowCollector(), Silent())
    simulation.run()
    state = simulation.algorithm.models if algorithm == "async_gossip_sgd" else simulation.algorithm.x
    models = simulation.algorithm.models_at(simulation.t)
    assert np.shares_memory(models, state) and np.array_equal(models, state)
    with pytest.raises(ValueError, match="read-only"):
        models[0, 0] = 1.0
    assert state.flags.writeable  # the algorithm's own array is untouched
