"""A round's first-time clients get their speeds and bandwidths from one block-seeded pass.

The values must be the ones the per-client streams draw, whatever the order and repetition
of the ids, and whether a client was drawn before or not.
"""

from __future__ import annotations

from flsim.config.schema import SystemConfig
from flsim.engine.system import SystemModel


def _config() -> SystemConfig:
    return SystemConfig.model_validate(
        {
            "compute": {"sigma": 0.7, "slow_fraction": 0.3, "slow_factor": 4.0},
            "link": {"sigma": 0.5, "bandwidth": 1e6},
        }
    )


def test_prefetched_speeds_and_bandwidths_are_the_per_client_draws():
    clients = [999_999, 3, 77, 3, 500_000, 0, 123_456]
    one_by_one = SystemModel(_config(), 11, 1_000_000)
    expected = [(one_by_one.speed(c), one_by_one.bandwidth(c)) for c in clients]
    prefetched = SystemModel(_config(), 11, 1_000_000)
    prefetched.speed(77)  # one client already known: prefetch must keep its value
    prefetched.prefetch(clients)
    assert [(prefetched.speed(c), prefetched.bandwidth(c)) for c in clients] == expected
    # distinct clients got distinct draws (a prefetch that reused one stream would not)
    assert len({speed for speed, _ in expected}) == len(set(clients))


def test_prefetch_fills_the_memo_so_no_stream_is_built_afterwards(monkeypatch):
    import flsim.engine.system as system

    model = SystemModel(_config(), 2, 10_000)
    model.prefetch(range(0, 10_000, 97))

    def fail(*args, **kwargs):
        raise AssertionError("a per-client stream was built after the prefetch")

    monkeypatch.setattr(system, "numpy_rng", fail)
    assert all(model.speed(c) > 0 and model.bandwidth(c) > 0 for c in range(0, 10_000, 97))
