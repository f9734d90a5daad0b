"""Acceptance checks of issues 4 and 5 for the topology package (docs/algorithms.md G, D, A1, A6).

Scale (FDLA/FMMC at n = 100, rates at n = 32), the A6 rates' structure on bottleneck graphs
and their agreement with the (A6) 1-D search, the PNG fallback of ``--plot``, the CLI through
``flsim.cli.main``, the named files in ``topologies/`` and the scenarios that use them.
"""

from __future__ import annotations

import json
import math
import struct
import time
import zlib
from pathlib import Path

import networkx as nx
import numpy as np
import pytest

import flsim.topology.rates as rates_module
from flsim.cli import main
from flsim.config.errors import ConfigError
from flsim.config.loading import read_yaml
from flsim.scenario import load_scenario
from flsim.sweep import expand_sweep
from flsim.topology.config import TopologyConfig
from flsim.topology.graph_files import load_graph
from flsim.topology.graphs import TOPOLOGIES_DIR, build_graph
from flsim.topology.mixing import check_mixing, mixing_matrix
from flsim.topology.png import draw_graph_png
from flsim.topology.rates import optimal_rates
from flsim.topology.rates_ipm import solve_rates
from flsim.topology.schedule import check_topology
from flsim.topology.spectral import chi_values, incidence, uniform_rates

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios" / "decentralized"


def _eig_slem(weights: np.ndarray) -> float:
    n = weights.shape[0]
    return float(np.max(np.abs(np.linalg.eigvalsh(weights - 1.0 / n))))


def _geometric(n: int, seed: int = 0) -> nx.Graph:
    return build_graph(
        "geometric", {"n": n, "radius": math.sqrt(2.5 * math.log(n) / (math.pi * n))}, seed=seed
    )


# --------------------------------------------------------------------------- G4/G5 at scale


def _check_optimal_at_scale(graph: nx.Graph, budget_s: float) -> dict[str, float]:
    seconds = {}
    heuristic = min(mixing_matrix(graph, h).slem for h in ("metropolis", "max_degree"))
    for method in ("fdla", "fmmc"):
        started = time.perf_counter()
        result = mixing_matrix(graph, method, "sdp")
        seconds[method] = time.perf_counter() - started
        assert result.status == "optimal" and not result.fallback
        check_mixing(result.weights, graph, atol=1e-8, nonnegative=method == "fmmc")
        assert result.bound == pytest.approx(_eig_slem(result.weights), abs=1e-7)
        assert result.slem <= heuristic + 1e-9
        assert seconds[method] < budget_s, f"{method} took {seconds[method]:.1f} s at n = 100"
    return seconds


def test_fdla_and_fmmc_at_100_nodes_in_seconds():
    """Issue 4: n = 100 in seconds. G(100, 0.06), 281 edges: about 1 s each on 2 shared cores."""
    _check_optimal_at_scale(build_graph("erdos_renyi", {"n": 100, "p": 0.06, "seed": 1}), budget_s=30)


def test_fdla_and_fmmc_on_a_dense_geometric_graph_of_100_nodes():
    """501 edges: about 2 s (FDLA) and 5 s (FMMC) measured; the bound leaves room for load."""
    _check_optimal_at_scale(_geometric(100), budget_s=60)


def test_fdla_on_the_ring_is_the_best_constant():
    """On C_n the optimal symmetric weights are uniform by symmetry, so FDLA = best constant (G3)."""
    graph = build_graph("ring", {"n": 30})
    fdla = mixing_matrix(graph, "fdla", "sdp")
    assert fdla.slem == pytest.approx(mixing_matrix(graph, "best_constant").slem, abs=1e-7)


# --------------------------------------------------------------------------- A6 rates


def _bridge_split(graph: nx.Graph, result) -> tuple[list[float], list[float]]:
    bridges = {tuple(sorted(e)) for e in nx.bridges(graph)}
    by_edge = dict(zip(result.edges, result.rates, strict=True))
    on = [by_edge[e] for e in result.edges if e in bridges]
    off = [by_edge[e] for e in result.edges if e not in bridges]
    return on, off


@pytest.mark.parametrize("name", ["barbell_20", "lollipop_20"])
def test_sdp_rates_on_bottleneck_graphs_are_far_below_uniform_with_more_on_the_bridge(name):
    graph = load_graph(name)
    result = optimal_rates(graph)
    assert result.method == "sdp"
    assert result.total_rate < 0.5 * result.uniform_total_rate  # measured 0.31 and 0.26
    on, off = _bridge_split(graph, result)
    assert on and min(on) > 2 * max(off)  # every bridge edge gets more than any clique edge
    assert max(on) > 1.4 * result.uniform_total_rate / len(result.edges)  # and more than uniform
    b, _ = incidence(graph)
    chi1, chi2 = chi_values(b, np.asarray(result.rates))
    assert chi1 * chi2 <= 0.5 * (1 + 1e-9)


@pytest.mark.parametrize(
    "spec",
    [("ring", {"n": 9}), ("complete", {"n": 7}), ("star", {"n": 8}), ("torus", {"rows": 4, "cols": 4})],
)
def test_barrier_rates_are_uniform_on_edge_transitive_graphs(spec):
    """The solver's own λ (before the uniform short-cut) is uniform to solver precision."""
    graph = build_graph(*spec)
    b, _ = incidence(graph)
    uniform = uniform_rates(b)
    solution = solve_rates(b, uniform)
    chi1, chi2 = chi_values(b, solution.rates)
    boundary = solution.rates * math.sqrt(2 * chi1 * chi2)
    assert boundary.sum() == pytest.approx(uniform.sum(), rel=1e-6)
    assert np.allclose(boundary, uniform, rtol=1e-3)
    result = optimal_rates(graph)
    assert result.total_rate == pytest.approx(result.uniform_total_rate, rel=1e-9)


@pytest.mark.parametrize("spec", [("barbell", {"m1": 4, "m2": 1}), ("geometric", {"n": 12, "radius": 0.45})])
def test_barrier_rates_match_the_a6_search_over_a(spec):
    """min_a SDP(a) (cvxpy, golden-section over log a) equals the joint barrier solution.

    The search stops within its bracket's tolerance (2.4e-4 above on this barbell, where
    cvxpy's joint SDP gives the barrier's 18.74776 to 1e-7), so it may only be higher.
    """
    graph = build_graph(*spec, seed=2)
    barrier = optimal_rates(graph)
    search = optimal_rates(graph, formulation="flow")
    assert barrier.total_rate == pytest.approx(search.total_rate, rel=1e-3)
    assert barrier.total_rate <= search.total_rate * (1 + 1e-7)
    assert barrier.solves == 1 and search.solves > 5


def test_sdp_rates_scale_to_32_nodes_in_seconds():
    """The A6 goal is n = 50 in ≤ 30 s (benchmarks/sdp_rates.py: about 2 s); n = 32 here."""
    graph = _geometric(32)
    started = time.perf_counter()
    result = optimal_rates(graph)
    assert time.perf_counter() - started < 30
    assert result.method == "sdp" and result.total_rate < 0.5 * result.uniform_total_rate
    assert result.chi1 * result.chi2 <= 0.5 * (1 + 1e-9)


def test_rates_barrier_failure_falls_back_to_the_search(monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("barrier exploded")

    monkeypatch.setattr(rates_module, "solve_rates", broken)
    graph = build_graph("barbell", {"m1": 3, "m2": 1})
    with caplog.at_level("WARNING"):
        result = optimal_rates(graph, grid=3, refinements=4)
    assert result.solves > 1 and result.method == "sdp"
    assert any("barrier exploded" in r.message for r in caplog.records)


# --------------------------------------------------------------------------- PNG, CLI


def _decode_png(data: bytes) -> np.ndarray:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, idat, size = 8, b"", (0, 0)
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        (crc,) = struct.unpack(">I", data[position + 8 + length : position + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF
        if kind == b"IHDR":
            size = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        position += 12 + length
    width, height = size
    rows = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(height, 1 + 3 * width)
    assert not rows[:, 0].any()  # filter type 0
    return rows[:, 1:].reshape(height, width, 3)


def test_png_fallback_draws_weighted_edges(tmp_path):
    positions = {0: (0.0, 0.0), 1: (1.0, 0.0), 2: (0.5, 1.0)}
    target = draw_graph_png(positions, [(0, 1), (1, 2)], [0.5, -0.1], tmp_path / "t.png", size=200, title="x")
    image = _decode_png(target.read_bytes()).astype(int)
    assert image.shape == (200, 200, 3)
    bottom = image[188, 40:160]  # the 0-1 edge runs along the bottom margin
    assert (bottom[:, 2] - bottom[:, 0] > 100).any()  # blue: positive weight
    red = (image[..., 0] - image[..., 2]) > 100
    assert red.any()  # the negative weight is drawn red


def test_cli_main_show_and_rates_json(capsys, tmp_path):
    assert main(["topology", "show", "torus:rows=4,cols=5", "--mixing", "fmmc", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    for key in ("n_nodes", "n_edges", "mixing", "status", "slem", "spectral_gap", "lambda2", "chi1", "chi2"):
        assert key in info
    assert (info["n_nodes"], info["n_edges"], info["status"]) == (20, 40, "optimal")
    assert info["lambda2"] == pytest.approx(2 - 2 * math.cos(2 * math.pi / 5))

    assert main(["topology", "rates", "lollipop:m=5,k=3", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    for key in ("total_rate", "uniform_total_rate", "chi1", "chi2", "method", "rates"):
        assert key in info
    assert info["method"] == "sdp" and len(info["rates"]) == 13

    plot = tmp_path / "g.png"
    assert main(["topology", "show", "topologies/office_12.edgelist", "--plot", str(plot)]) == 0
    assert plot.read_bytes()[:4] == b"\x89PNG"
    assert main(["topology", "show", "ring:n=2"]) == 2  # user error: exit code 2
    assert "config error" in capsys.readouterr().err


# --------------------------------------------------------------------------- files, scenarios

NAMED = {
    "ring_16": 16,
    "torus_8x8": 64,
    "exponential_32": 32,
    "erdos_renyi_20": 20,
    "barbell_20": 20,
    "lollipop_20": 20,
    "geometric_30": 30,
    "star_20": 20,
    "grid_5x5": 25,
}


@pytest.mark.parametrize(("name", "n"), sorted(NAMED.items()))
def test_named_topologies_load_connected_with_their_size(name, n):
    graph = load_graph(name, n)
    assert graph.number_of_nodes() == n and nx.is_connected(graph)
    assert load_graph(TOPOLOGIES_DIR / f"{name}.yaml").number_of_edges() == graph.number_of_edges()


def test_edge_list_example():
    graph = load_graph(TOPOLOGIES_DIR / "office_12.edgelist", 12)
    assert graph.number_of_edges() == 18 and sorted(d for _, d in graph.degree())[-1] == 5


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.yaml")), ids=lambda p: p.name)
def test_decentralized_scenarios_validate(path):
    if set(read_yaml(path)) == {"sweep"}:
        _, runs = expand_sweep(path)
        assert len(runs) >= 12
        return
    scenario = load_scenario(path)
    assert scenario.topology is not None and scenario.task.num_clients == 20


def test_check_topology_catches_bad_graphs_at_load_time(tmp_path):
    """Issue 4: wrong node count, self-loop, disconnected graph: keyed ConfigErrors, no SDP."""
    with pytest.raises(ConfigError) as info:
        check_topology(TopologyConfig(kind="ring", params={"n": 16}), 20, 0)
    assert info.value.key == "topology.params.n"
    loop = tmp_path / "loop.edgelist"
    loop.write_text("0 1\n1 2\n2 0\n2 2\n")
    with pytest.raises(ConfigError, match="self-loop") as info:
        check_topology(TopologyConfig(file=str(loop), mixing="fmmc"), 3, 0)
    assert info.value.key == "topology.file"
    split = tmp_path / "split.edgelist"
    split.write_text("0 1\n2 3\n")
    with pytest.raises(ConfigError, match="disconnected"):
        check_topology(TopologyConfig(file=str(split)), 4, 0)
    entries = [{"kind": "ring"}, {"kind": "path", "params": {"n": 5}}]
    cycle = TopologyConfig(time_varying="cycle", cycle=entries)
    with pytest.raises(ConfigError) as info:
        check_topology(cycle, 6, 0)
    assert info.value.key.startswith("topology.cycle.1")
    check_topology(TopologyConfig(time_varying="k_peers", peers=3), 6, 0)
