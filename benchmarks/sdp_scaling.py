"""FMMC solve time against n, and the first-order fallback at n = 1000 (docs/algorithms.md G5).

    python -m benchmarks.sdp_scaling [--sizes 50 100 200] [--large 1000]

For each n, a connected random geometric graph (seeded) gets FMMC weights from the exact
SDP; the line prints the solve time and the SLEM against Metropolis (the baseline measured in
the same run). At n = ``--large`` the exact solve is too slow, so the first-order method
runs, and its SLEM gap is reported against Metropolis and against the exact SLEM lower
bound the solver certifies when one is available.
"""

from __future__ import annotations

import argparse
import math
import time

import networkx as nx

from flsim.topology.mixing import metropolis, mixing_matrix
from flsim.topology.spectral import slem


def graph(n: int, seed: int = 0) -> nx.Graph:
    radius = 1.6 * math.sqrt(math.log(n) / (math.pi * n))
    for attempt in range(100):
        candidate = nx.random_geometric_graph(n, radius, seed=seed * 1000 + attempt)
        if nx.is_connected(candidate):
            return nx.convert_node_labels_to_integers(candidate)
    raise RuntimeError("no connected geometric graph")


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[50, 100, 200])
    parser.add_argument("--large", type=int, default=1000)
    args = parser.parse_args(argv)
    rows = []
    for n in args.sizes:
        g = graph(n)
        start = time.perf_counter()
        result = mixing_matrix(g, "fmmc", solver="sdp")
        seconds = time.perf_counter() - start
        baseline = slem(metropolis(g))
        rows.append(
            {
                "n": n,
                "edges": g.number_of_edges(),
                "seconds": seconds,
                "slem": result.slem,
                "metropolis_slem": baseline,
            }
        )
        print(
            f"fmmc sdp n={n} edges={g.number_of_edges()} seconds={seconds:.2f} "
            f"slem={result.slem:.5f} metropolis={baseline:.5f} ratio={result.slem / baseline:.3f}"
        )
    g = graph(args.large)
    start = time.perf_counter()
    result = mixing_matrix(g, "fmmc", solver="first_order")
    seconds = time.perf_counter() - start
    baseline = slem(metropolis(g))
    rows.append({"n": args.large, "seconds": seconds, "slem": result.slem, "metropolis_slem": baseline})
    print(
        f"fmmc first_order n={args.large} edges={g.number_of_edges()} seconds={seconds:.2f} "
        f"slem={result.slem:.5f} metropolis={baseline:.5f} gap_to_metropolis={baseline - result.slem:.5f}"
    )
    return rows


if __name__ == "__main__":
    main()
