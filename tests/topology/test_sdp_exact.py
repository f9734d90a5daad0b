"""The structured interior-point method for FDLA (G4) and FMMC (G5) against cvxpy (issue 21).

The NT predictor-corrector with its gather-built Schur complement must find the same optimum
as an independent generic solver (cvxpy + CLARABEL, default tolerances) on small graphs of
several shapes, and its bound s must certify the SLEM of the W it returns.
"""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from flsim.topology.graphs import build_graph, edge_list, incidence_matrix
from flsim.topology.mixing import weights_to_matrix
from flsim.topology.sdp import cvxpy_sdp, interior_point, single_blas_thread

GRAPHS = {
    "geometric24": ("geometric", {"n": 24, "radius": 0.35, "seed": 3}),
    "er16": ("erdos_renyi", {"n": 16, "p": 0.3, "seed": 2}),
    "small_world20": ("small_world", {"n": 20, "k": 4, "p": 0.2, "seed": 1}),
    "lollipop": ("lollipop", {"m": 5, "k": 4}),
}


def _slem(graph: nx.Graph, edge_weights: np.ndarray) -> float:
    n = graph.number_of_nodes()
    shifted = weights_to_matrix(n, edge_list(graph), edge_weights) - 1.0 / n
    return float(np.max(np.abs(np.linalg.eigvalsh(shifted))))


@pytest.mark.parametrize("name", sorted(GRAPHS))
@pytest.mark.parametrize("nonnegative", [False, True], ids=["fdla", "fmmc"])
def test_interior_point_finds_clarabels_optimum(name, nonnegative):
    kind, params = GRAPHS[name]
    graph = build_graph(kind, params)
    with single_blas_thread():
        ours = interior_point(graph, nonnegative)
    reference = cvxpy_sdp(graph, nonnegative, "CLARABEL")
    assert ours.status == "optimal"
    ours_slem, reference_slem = _slem(graph, ours.edge_weights), _slem(graph, reference.edge_weights)
    # s is an upper bound on the SLEM of the returned W (the dual iterate stays feasible) ...
    assert ours_slem <= ours.bound + 1e-12
    # ... and the optimum is the same as CLARABEL's to its tolerance.
    assert ours_slem == pytest.approx(reference_slem, abs=1e-8)
    if nonnegative:
        assert ours.edge_weights.min() >= 0.0
        assert (abs(incidence_matrix(graph)[1]) @ ours.edge_weights).max() <= 1.0
