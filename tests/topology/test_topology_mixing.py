"""Gossip matrices (docs/algorithms.md G, D): heuristics, FDLA/FMMC solvers, checks and fallback."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest

import flsim.topology.mixing as mixing_module
from flsim.config.errors import ConfigError
from flsim.topology.graphs import build_graph
from flsim.topology.mixing import (
    HEURISTICS,
    SDP_SECONDS_BUDGET,
    MixingError,
    check_mixing,
    choose_solver,
    mixing_matrix,
    predicted_sdp_seconds,
)
from flsim.topology.spectral import slem

SMALL_GRAPHS = {
    "ring8": ("ring", {"n": 8}),
    "star6": ("star", {"n": 6}),
    "grid3x3": ("grid", {"rows": 3, "cols": 3}),
    "er10": ("erdos_renyi", {"n": 10, "p": 0.35, "seed": 1}),
    "barbell": ("barbell", {"m1": 3, "m2": 1}),
}


def _graph(name: str) -> nx.Graph:
    kind, params = SMALL_GRAPHS[name]
    return build_graph(kind, params)


def _eig_slem(weights: np.ndarray) -> float:
    n = weights.shape[0]
    return float(np.max(np.abs(np.linalg.eigvalsh(weights - np.full((n, n), 1.0 / n)))))


@pytest.mark.parametrize("name", sorted(SMALL_GRAPHS))
@pytest.mark.parametrize("method", ["metropolis", "max_degree", "best_constant", "fdla", "fmmc"])
def test_every_w_passes_check_mixing(name, method):
    graph = _graph(name)
    result = mixing_matrix(graph, method, "sdp")
    check_mixing(result.weights, graph, atol=1e-8, nonnegative=method not in ("fdla", "best_constant"))
    assert not result.fallback
    assert result.weights.dtype == np.float64
    assert result.slem == pytest.approx(_eig_slem(result.weights), abs=1e-12)


@pytest.mark.parametrize("method", ["uniform", "fdla", "fmmc"])
def test_complete_graph_optimum_is_exact_averaging(method):
    result = mixing_matrix(build_graph("complete", {"n": 6}), method, "sdp")
    assert result.slem == pytest.approx(0.0, abs=1e-7)
    assert np.allclose(result.weights, 1.0 / 6, atol=1e-7)


def test_uniform_needs_the_complete_graph():
    with pytest.raises(ConfigError) as info:
        mixing_matrix(build_graph("ring", {"n": 5}), "uniform")
    assert info.value.key == "topology.mixing"
    with pytest.raises(ConfigError):
        mixing_matrix(build_graph("ring", {"n": 5}), "laplacian")


@pytest.mark.parametrize("name", ["ring8", "er10", "barbell"])
def test_solver_bound_matches_the_eigendecomposition_of_w(name):
    for method in ("fdla", "fmmc"):
        result = mixing_matrix(_graph(name), method, "sdp")
        assert result.status == "optimal"
        assert result.bound == pytest.approx(_eig_slem(result.weights), abs=1e-7)


@pytest.mark.parametrize("name", ["ring8", "er10", "grid3x3", "barbell"])
def test_fmmc_beats_every_heuristic_and_fdla_beats_everything(name):
    """G tests: FMMC ≤ every heuristic in its feasible set (W ≥ 0; best-constant W can have a
    negative diagonal and then only FDLA, which allows negative weights, must beat it)."""
    graph = _graph(name)
    fmmc = mixing_matrix(graph, "fmmc", "sdp").slem
    fdla = mixing_matrix(graph, "fdla", "sdp").slem
    for heuristic in ("metropolis", "max_degree", "best_constant"):
        result = mixing_matrix(graph, heuristic)
        assert fdla <= result.slem + 1e-9
        if result.weights.min() >= 0:
            assert fmmc <= result.slem + 1e-9
    assert fdla <= fmmc + 1e-9  # FDLA relaxes FMMC (G4 ⊇ G5)


@pytest.mark.parametrize("n", [5, 8, 16])
def test_ring_with_weights_one_third(n):
    """D(c): the ring with weights 1/3 has λ = 1/3 + (2/3) cos(2π/N)."""
    result = mixing_matrix(build_graph("ring", {"n": n}), "metropolis")
    assert np.allclose(result.weights[0, [1, n - 1]], 1.0 / 3)
    assert result.slem == pytest.approx(1.0 / 3 + 2.0 / 3 * math.cos(2 * math.pi / n), abs=1e-12)


def test_path_fmmc_is_the_known_optimum():
    """Boyd, Diaconis, Sun & Xiao (2006): on the path P_n FMMC puts 1/2 on every edge, SLEM cos(π/n)."""
    result = mixing_matrix(build_graph("path", {"n": 6}), "fmmc", "sdp")
    assert result.slem == pytest.approx(math.cos(math.pi / 6), abs=1e-7)
    assert np.allclose(result.edge_weights, 0.5, atol=1e-5)


@pytest.mark.parametrize("backend", ["CLARABEL", "SCS"])
def test_interior_point_agrees_with_cvxpy(backend):
    graph = _graph("barbell")
    for method in ("fdla", "fmmc"):
        ours = mixing_matrix(graph, method, "sdp").slem
        reference = mixing_matrix(graph, method, "sdp", sdp_backend=backend)
        assert reference.solver == f"cvxpy:{backend}"
        assert ours == pytest.approx(reference.slem, abs=1e-6 if backend == "CLARABEL" else 1e-3)
        assert ours <= reference.slem + 1e-8


@pytest.mark.parametrize("name", ["ring8", "er10"])
def test_first_order_gets_close_to_the_sdp(name):
    graph = _graph(name)
    for method in ("fdla", "fmmc"):
        exact = mixing_matrix(graph, method, "sdp").slem
        approx = mixing_matrix(graph, method, "first_order")
        assert approx.solver == "first_order"
        assert exact - 1e-9 <= approx.slem <= exact + 5e-3
        assert approx.slem <= mixing_matrix(graph, "metropolis").slem + 1e-12


def test_auto_switches_to_first_order_from_the_predicted_sdp_time():
    """The switch follows the measured cost model (m³ and n³), not a node count (issue 21)."""
    assert choose_solver(400, 2657) == "sdp"  # the n = 400 geometric graph of the benchmark
    assert choose_solver(500, 500) == "sdp"  # a ring: few edges, so still exact
    assert choose_solver(500, 3500) == "first_order"  # the n = 500 geometric graph
    assert predicted_sdp_seconds(400, 2657) <= SDP_SECONDS_BUDGET < predicted_sdp_seconds(300, 6000)
    graph = build_graph("random_regular", {"n": 300, "d": 40, "seed": 0})  # 6000 edges
    result = mixing_matrix(graph, "fmmc", first_order_iterations=15)
    assert result.solver == "first_order"
    check_mixing(result.weights, graph, atol=1e-8, nonnegative=True)
    assert result.slem <= mixing_matrix(graph, "metropolis").slem + 1e-12


@pytest.mark.slow
@pytest.mark.parametrize("spec", [("ring", {"n": 500}), ("random_regular", {"n": 500, "d": 4})])
def test_first_order_on_500_nodes_improves_on_metropolis(spec):
    graph = build_graph(*spec)
    result = mixing_matrix(graph, "fmmc", "first_order")  # auto is exact here since issue 21
    check_mixing(result.weights, graph, atol=1e-8, nonnegative=True)
    assert result.slem < mixing_matrix(graph, "metropolis").slem


def test_solver_failure_falls_back_to_metropolis_loudly(monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("solver exploded")

    monkeypatch.setattr(mixing_module, "interior_point", broken)
    graph = _graph("ring8")
    with caplog.at_level("WARNING"):
        result = mixing_matrix(graph, "fmmc", "sdp")
    assert result.fallback and result.fell_back
    assert "solver exploded" in result.status and "metropolis" in result.status
    assert np.array_equal(result.weights, mixing_matrix(graph, "metropolis").weights)
    assert any("FALLING BACK" in record.message for record in caplog.records)


def test_check_mixing_names_what_is_wrong():
    graph = nx.path_graph(3)
    good = mixing_matrix(graph, "metropolis").weights
    check_mixing(good, graph)
    asymmetric = good.copy()
    asymmetric[0, 1] += 0.1
    asymmetric[0, 0] -= 0.1
    with pytest.raises(MixingError, match="not symmetric"):
        check_mixing(asymmetric, graph)
    not_stochastic = good + 0.01 * np.eye(3)
    with pytest.raises(MixingError, match="doubly stochastic"):
        check_mixing(not_stochastic, graph)
    off_graph = np.full((3, 3), 1.0 / 3)
    with pytest.raises(MixingError, match="not an edge"):
        check_mixing(off_graph, graph)
    negative = np.array([[1.5, -0.5, 0.0], [-0.5, 1.0, 0.5], [0.0, 0.5, 0.5]])
    check_mixing(negative, graph)
    with pytest.raises(MixingError, match="negative"):
        check_mixing(negative, graph, nonnegative=True)
    with pytest.raises(MixingError, match="shape"):
        check_mixing(np.eye(2), graph)


def test_slem_of_heuristics_is_below_one_on_connected_graphs():
    for name in SMALL_GRAPHS:
        for method in HEURISTICS[:-1]:
            assert slem(mixing_matrix(_graph(name), method).weights) < 1.0
