"""Spectral quantities (G, A1) and optimal per-edge rates (A6)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flsim.topology.graphs import build_graph
from flsim.topology.rates import _SliceProblem, optimal_rates, uniform_edge_rates
from flsim.topology.spectral import (
    chi_values,
    graph_chis,
    incidence,
    laplacian,
    laplacian_lambda2,
    slem,
    spectral_gap,
    uniform_rate_scale,
)


def test_chis_of_the_path_by_hand():
    """P_n, unit rates: λ_min⁺(L) = 2(1 − cos(π/n)); every edge is a bridge, resistance 1."""
    n = 6
    chi1, chi2 = graph_chis(build_graph("path", {"n": n}))
    assert chi1 == pytest.approx(1.0 / (2.0 * (1.0 - math.cos(math.pi / n))), rel=1e-12)
    assert chi2 == pytest.approx(0.5, rel=1e-12)


def test_chis_of_the_complete_graph_by_hand():
    """K_n, unit rates: L has eigenvalue n (n−1 times) and each edge resistance 2/n."""
    n = 5
    chi1, chi2 = graph_chis(build_graph("complete", {"n": n}))
    assert chi1 == pytest.approx(1.0 / n, rel=1e-12)
    assert chi2 == pytest.approx(1.0 / n, rel=1e-12)
    # Rates scale both χ's as 1/c.
    b, edges = incidence(build_graph("complete", {"n": n}))
    assert chi_values(b, np.full(len(edges), 3.0)) == pytest.approx((1.0 / (3 * n), 1.0 / (3 * n)))


def test_uniform_scaling_meets_the_rate_condition_with_equality():
    """(A1) s = √(2 χ₁(L_p) χ₂(L_p)); on K_n with m = n(n−1)/2 edges, s = √2 m/n."""
    n = 5
    graph = build_graph("complete", {"n": n})
    b, _ = incidence(graph)
    m = n * (n - 1) // 2
    assert uniform_rate_scale(b) == pytest.approx(math.sqrt(2) * m / n, rel=1e-12)
    rates = uniform_edge_rates(build_graph("ring", {"n": 7}))
    assert rates.chi1 * rates.chi2 == pytest.approx(0.5, rel=1e-12)
    assert np.allclose(rates.rates, rates.rates[0])
    assert rates.total_rate == pytest.approx(sum(rates.rates))


def test_slem_gap_and_lambda2():
    graph = build_graph("ring", {"n": 6})
    assert laplacian_lambda2(graph) == pytest.approx(2 - 2 * math.cos(2 * math.pi / 6))
    assert np.allclose(laplacian(graph).sum(axis=1), 0)
    weights = np.eye(6) - laplacian(graph) / 3
    assert slem(weights) == pytest.approx(1 / 3 + 2 / 3 * math.cos(2 * math.pi / 6))
    assert spectral_gap(weights) == pytest.approx(1 - slem(weights))
    assert slem(np.full((4, 4), 0.25)) == pytest.approx(0.0, abs=1e-15)


@pytest.mark.parametrize(
    "spec",
    [("ring", {"n": 6}), ("complete", {"n": 5}), ("torus", {"rows": 3, "cols": 3}), ("star", {"n": 6})],
)
def test_optimal_rates_are_uniform_on_edge_transitive_graphs(spec):
    result = optimal_rates(build_graph(*spec), grid=3, refinements=4)
    assert result.total_rate == pytest.approx(result.uniform_total_rate, rel=1e-5)
    assert result.chi1 * result.chi2 <= 0.5 * (1 + 1e-9)


@pytest.mark.slow
def test_optimal_rates_are_uniform_on_the_4x4_torus():
    result = optimal_rates(build_graph("torus", {"rows": 4, "cols": 4}))
    assert result.total_rate == pytest.approx(result.uniform_total_rate, rel=1e-5)


@pytest.mark.parametrize("spec", [("barbell", {"m1": 3, "m2": 1}), ("lollipop", {"m": 4, "k": 2})])
def test_optimal_rates_beat_uniform_on_bottleneck_graphs(spec):
    graph = build_graph(*spec)
    result = optimal_rates(graph, grid=3, refinements=6)
    assert result.method == "sdp"
    assert result.total_rate < 0.95 * result.uniform_total_rate
    b, _ = incidence(graph)
    chi1, chi2 = chi_values(b, np.asarray(result.rates))
    assert chi1 * chi2 <= 0.5 * (1 + 1e-9)
    assert (chi1, chi2) == pytest.approx((result.chi1, result.chi2))
    assert min(result.rates) >= 0
    assert result.summary()["rates"][0]["edge"] == list(result.edges[0])


def test_flow_and_lmi_slices_agree():
    """The Thomson-principle (flow) form describes the same λ-set as the (A6) LMIs."""
    graph = build_graph("barbell", {"m1": 3, "m2": 1})
    b, _ = incidence(graph)
    a = uniform_edge_rates(graph).chi1
    for factor in (0.5, 1.0, 2.0):
        flow = _SliceProblem(b, formulation="flow").solve(a * factor)
        lmi = _SliceProblem(b, formulation="lmi").solve(a * factor)
        assert flow is not None and lmi is not None
        assert flow.sum() == pytest.approx(lmi.sum(), rel=1e-5)
