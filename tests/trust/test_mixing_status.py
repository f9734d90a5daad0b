"""An SDP solve that stops short of the optimum is never used silently (docs/algorithms.md G).

The interior point is forced to stop early with a tiny iteration limit (a failed solve: an
error) and its status is forced to ``inaccurate`` on a real solve (used, with a warning
and the status and gap in the facts a run's summary records).
"""

from __future__ import annotations

import dataclasses
import functools
import logging

import numpy as np
import pytest

import flsim.topology.mixing as mixing_module
from flsim.config.errors import ConfigError
from flsim.topology.config import TopologyConfig
from flsim.topology.graphs import build_graph
from flsim.topology.schedule import build_schedule
from flsim.topology.sdp import interior_point


def test_an_interior_point_out_of_iterations_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(mixing_module, "interior_point", functools.partial(interior_point, max_iterations=2))
    graph = build_graph("ring", {"n": 8})
    with pytest.raises(ConfigError) as caught:
        mixing_module.mixing_matrix(graph, "fmmc", "sdp")
    message = str(caught.value)
    assert message.startswith("topology.mixing: the interior_point solver did not reach the optimum")
    assert "status max_iterations after 2 iterations" in message and "duality gap" in message
    assert "\n" not in message


def _inaccurate(graph, nonnegative):
    return dataclasses.replace(interior_point(graph, nonnegative), status="inaccurate", gap=3.5e-6)


def test_an_inaccurate_solve_is_used_with_a_warning_naming_status_and_gap(monkeypatch, caplog):
    graph = build_graph("ring", {"n": 8})
    exact = mixing_module.mixing_matrix(graph, "fmmc", "sdp")
    assert exact.status == "optimal" and exact.summary()["gap"] < 1e-7
    monkeypatch.setattr(mixing_module, "interior_point", _inaccurate)
    with caplog.at_level(logging.WARNING, logger="flsim.topology.mixing"):
        result = mixing_module.mixing_matrix(graph, "fmmc", "sdp")
    assert np.array_equal(result.weights, exact.weights) and not result.fallback
    assert (result.summary()["status"], result.summary()["gap"]) == ("inaccurate", 3.5e-6)
    [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "status inaccurate" in record.getMessage() and "duality gap 3.5e-06" in record.getMessage()


def test_the_run_facts_record_an_inaccurate_status_and_its_gap(monkeypatch):
    monkeypatch.setattr(mixing_module, "interior_point", _inaccurate)
    config = TopologyConfig(kind="ring", mixing="fdla", solver="sdp")
    facts = build_schedule(config, 8, seed=0).describe()
    assert (facts["status"], facts["gap"], facts["mixing"]) == ("inaccurate", 3.5e-6, "fdla")


def test_first_order_ends_at_its_iteration_count_by_design_and_is_not_refused():
    graph = build_graph("ring", {"n": 8})
    result = mixing_module.mixing_matrix(graph, "fmmc", "first_order", first_order_iterations=3)
    assert result.status == "max_iterations" and result.solver == "first_order"
    assert result.slem <= mixing_module.mixing_matrix(graph, "metropolis").slem + 1e-12
