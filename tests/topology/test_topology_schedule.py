"""TopologyConfig and per-round schedules (fixed, random each round, cycle, k peers)."""

from __future__ import annotations

import numpy as np
import pydantic
import pytest

from flsim.config.errors import ConfigError
from flsim.topology.config import TopologyConfig
from flsim.topology.mixing import check_mixing
from flsim.topology.schedule import build_schedule, k_peer_weights


def test_config_shapes():
    assert TopologyConfig(kind="ring").mixing == "metropolis"
    assert (
        TopologyConfig(file="topologies/ring_16.yaml", mixing="fmmc", solver="sdp", rates="sdp").rates
        == "sdp"
    )
    for bad in (
        {},
        {"kind": "ring", "file": "x.yaml"},
        {"kind": "ring", "mixing": "laplace"},
        {"kind": "ring", "typo": 1},
        {"time_varying": "cycle"},
        {"time_varying": "cycle", "cycle": [{"kind": "ring", "wat": 1}]},
        {"kind": "ring", "cycle": [{"kind": "ring"}]},
    ):
        with pytest.raises(pydantic.ValidationError):
            TopologyConfig(**bad)
    config = TopologyConfig(
        time_varying="cycle", cycle=[{"kind": "ring"}], cycle_files=["topologies/ring_16.yaml"]
    )
    assert config.cycle_entries() == [{"kind": "ring"}, "topologies/ring_16.yaml"]
    assert TopologyConfig(time_varying="k_peers", peers=3).peers == 3


def test_fixed_schedule_is_solved_once_and_checked():
    schedule = build_schedule(
        TopologyConfig(kind="torus", params={"rows": 3, "cols": 3}, mixing="fmmc"), 9, 0
    )
    first = schedule.mixing(0)
    assert schedule.mixing(7) is first
    check_mixing(schedule.weights(3), schedule.graph(3), nonnegative=True)
    assert not schedule.row_stochastic_only


def test_wrong_node_count_names_the_key():
    with pytest.raises(ConfigError) as info:
        build_schedule(TopologyConfig(kind="ring", params={"n": 8}), 9, 0)
    assert info.value.key == "topology.params.n"
    with pytest.raises(ConfigError) as info:
        build_schedule(TopologyConfig(file="topologies/ring_16.yaml"), 9, 0)
    assert "num_clients" in info.value.reason


def test_random_each_round_is_fresh_per_round_and_reproducible():
    config = TopologyConfig(kind="erdos_renyi", params={"p": 0.4}, time_varying="random_each_round")
    schedule = build_schedule(config, 10, seed=3)
    edges = [frozenset(schedule.graph(t).edges) for t in range(4)]
    assert len(set(edges)) > 1
    again = build_schedule(config, 10, seed=3)
    assert frozenset(again.graph(2).edges) == edges[2]  # round 2 without computing rounds 0-1 first
    for t in range(4):
        check_mixing(schedule.weights(t), schedule.graph(t))


def test_cycle_goes_round_robin():
    config = TopologyConfig(
        time_varying="cycle", cycle=[{"kind": "ring"}, {"kind": "star"}, "topologies/star_8.yaml"]
    )
    schedule = build_schedule(config, 8, 0)
    degrees = [max(d for _, d in schedule.graph(t).degree()) for t in range(6)]
    assert degrees == [2, 7, 7, 2, 7, 7]


def test_k_peers_is_row_stochastic_only():
    schedule = build_schedule(TopologyConfig(time_varying="k_peers", peers=2), 7, seed=1)
    assert schedule.row_stochastic_only and schedule.mixing(0).row_stochastic_only
    weights = schedule.weights(0)
    assert np.allclose(weights.sum(axis=1), 1.0)
    assert np.all((weights > 0).sum(axis=1) == 3)
    assert np.allclose(weights[weights > 0], 1 / 3)
    assert not np.array_equal(weights, schedule.weights(1))
    assert np.array_equal(weights, k_peer_weights(7, 2, 1, 0))
    assert schedule.graph(0).number_of_edges() == 14


def test_k_peers_on_a_graph_picks_neighbours():
    schedule = build_schedule(TopologyConfig(kind="ring", time_varying="k_peers", peers=3), 6, seed=0)
    weights = schedule.weights(5)
    for i in range(6):
        assert set(np.nonzero(weights[i])[0]) == {i, (i - 1) % 6, (i + 1) % 6}  # a ring node has 2 neighbours
