"""Wall-clock mode's realised event rate (issue 19 item 4), without Ray: the schedule the
actors' clocks follow, and the warn / fail thresholds on the share of it that happened."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import numpy as np
import pytest

from flsim.engine.event_driver import WallClockTooSlow, _check_realised_rate, scheduled_times
from flsim.scenario import load_scenario
from tests.builders import tiny_linreg


def _scenario(**wall):
    raw = tiny_linreg(
        algorithm={"name": "dadao"},
        topology={"kind": "ring"},
        clients_per_round=None,
        budget={"time": 8.0},
        time="wall",
        wall={"seconds_per_unit": 0.05, **wall},
        backend={"kind": "ray", "num_actors": 2},
    )
    raw["task"]["dataset_params"]["l2"] = 1.0
    return load_scenario(raw)


def test_the_schedule_is_the_actors_draws_below_the_horizon():
    scenario = _scenario()
    simulation = SimpleNamespace(task=SimpleNamespace(num_clients=2), compute_rate=2.0, edge_rates=[0.5])
    times = scheduled_times(scenario, simulation, 8.0)
    expected = []
    for key, rate in [((1, 0), 2.0), ((1, 1), 2.0), ((2, 0), 0.5)]:
        rng, t = np.random.default_rng([scenario.seed, *key]), 0.0
        while (t := t + rng.exponential(1.0 / rate)) < 8.0:
            expected.append(t)
    assert times.tolist() == sorted(expected)


def test_realised_fraction_warns_below_0_9_and_fails_below_the_minimum(caplog):
    scenario = _scenario()
    assert _check_realised_rate(scenario, 95, 100) == {"scheduled_events": 100, "realised_fraction": 0.95}
    with caplog.at_level(logging.WARNING, logger="flsim"):
        assert _check_realised_rate(scenario, 60, 100)["realised_fraction"] == 0.6
    assert "realised 60 of 100 scheduled events (60%)" in caplog.text
    assert "wall.seconds_per_unit=0.05" in caplog.text
    with pytest.raises(WallClockTooSlow, match=r"12000 of 48000 .*wall\.min_realised_fraction=0\.5"):
        _check_realised_rate(scenario, 12000, 48000)  # the DADAO run
    lenient = _scenario(min_realised_fraction=0.2)
    assert _check_realised_rate(lenient, 12000, 48000)["realised_fraction"] == 0.25
