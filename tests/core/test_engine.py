"""The discrete-event core: heap order, seeded streams, sampling, system model."""

from __future__ import annotations

import numpy as np
import torch

from flsim.config.schema import SystemConfig
from flsim.engine.events import EventQueue
from flsim.engine.sampling import sample_clients
from flsim.engine.system import SystemModel
from flsim.rng import numpy_rng, torch_rng


def test_events_pop_by_time_then_by_push_order():
    queue = EventQueue()
    queue.push(2.0, "b", 1)
    queue.push(1.0, "a", 2)
    queue.push(2.0, "c", 0)
    queue.push(1.0, "d", 5)
    order = [queue.pop().kind for _ in range(4)]
    assert order == ["a", "d", "b", "c"]


def test_streams_depend_only_on_their_key():
    a = numpy_rng(3, "sampling", 1, 7).random(4)
    b = numpy_rng(3, "sampling", 1, 7).random(4)
    assert np.array_equal(a, b)
    for other in [
        numpy_rng(4, "sampling", 1, 7),
        numpy_rng(3, "compute", 1, 7),
        numpy_rng(3, "sampling", 2, 7),
    ]:
        assert not np.array_equal(a, other.random(4))
    t1 = torch.rand(5, generator=torch_rng(0, "client", 3, 2))
    t2 = torch.rand(5, generator=torch_rng(0, "client", 3, 2))
    t3 = torch.rand(5, generator=torch_rng(0, "client", 3, 3))
    assert torch.equal(t1, t2) and not torch.equal(t1, t3)


def test_fixed_sampling_size_and_determinism():
    picks = [sample_clients(0, r, 50, "fixed", 7, 0.14) for r in range(20)]
    assert all(len(p) == 7 and len(set(p)) == 7 and p == sorted(p) for p in picks)
    assert picks == [sample_clients(0, r, 50, "fixed", 7, 0.14) for r in range(20)]
    assert len({tuple(p) for p in picks}) > 15


def test_bernoulli_sampling_rate_and_never_empty():
    sizes = [len(sample_clients(1, r, 100, "bernoulli", 10, 0.1)) for r in range(300)]
    assert 9.0 < np.mean(sizes) < 11.0
    tiny = [sample_clients(2, r, 5, "bernoulli", 1, 0.01) for r in range(50)]
    assert all(len(p) >= 1 for p in tiny)


def test_stragglers_and_poisson_compute_clock():
    config = SystemConfig.model_validate(
        {"compute": {"step_time": 0.1, "slow_fraction": 0.5, "slow_factor": 10, "jitter": "exponential"}}
    )
    system = SystemModel(config, seed=0, num_clients=400)
    slow = np.isclose(system.speeds, 0.1)
    assert 0.4 < slow.mean() < 0.6
    fast_client = int(np.flatnonzero(~slow)[0])
    samples = [system.compute_time(fast_client, 20, r) for r in range(400)]
    assert abs(np.mean(samples) - 2.0) < 0.1  # Gamma(20, 0.1): mean 2.0, sd ≈ 0.45
    assert np.std(samples) > 0.3
    assert system.latency(0, 10**7) > system.latency(0, 0)
