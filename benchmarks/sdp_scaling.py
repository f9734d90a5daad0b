"""FDLA/FMMC solve time against n: exact SDP, first-order method and cvxpy (docs/algorithms.md G4, G5).

    python -m benchmarks.sdp_scaling [--sizes 50 100 200 400] [--methods fmmc fdla]
                                     [--cvxpy-max-n 100] [--large 1000]

For each n, a connected random geometric graph (seeded) gets optimal weights three ways on
the same graph: the structured interior-point method (``solver: sdp``), the projected
subgradient (``solver: first_order``) and cvxpy with CLARABEL (``solver: cvxpy``, only up
to ``--cvxpy-max-n`` nodes; the line says when it is skipped). Each line prints wall and
CPU seconds (one BLAS thread, so CPU seconds are what an idle machine would take), the SLEM
of each W (recomputed by an eigendecomposition) and the gap first-order − exact, which is
≥ 0 up to the exact solver's tolerance. ``--large`` runs what ``solver: auto`` picks there
(``--large 0``: skip it).
"""

from __future__ import annotations

import argparse
import math
import os
import time
from typing import Any

import networkx as nx

from flsim.topology.mixing import choose_solver, metropolis, mixing_matrix
from flsim.topology.spectral import slem


def graph(n: int, seed: int = 0) -> nx.Graph:
    radius = 1.6 * math.sqrt(math.log(n) / (math.pi * n))
    for attempt in range(100):
        candidate = nx.random_geometric_graph(n, radius, seed=seed * 1000 + attempt)
        if nx.is_connected(candidate):
            return nx.convert_node_labels_to_integers(candidate)
    raise RuntimeError("no connected geometric graph")


def timed(g: nx.Graph, method: str, solver: str) -> dict[str, Any]:
    """One solve: wall and CPU seconds, SLEM, iterations and status."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = mixing_matrix(g, method, solver=solver)
    return {
        "wall": time.perf_counter() - wall,
        "cpu": time.process_time() - cpu,
        "slem": result.slem,
        "iterations": result.iterations,
        "status": result.status,
        "fallback": result.fallback,
    }


def _seconds(row: dict[str, Any] | None) -> str:
    return "skipped" if row is None else f"{row['wall']:.2f} s ({row['cpu']:.2f} cpu)"


def compare(n: int, method: str, cvxpy_max_n: int) -> dict[str, Any]:
    """Exact, first-order and (small n) cvxpy on one graph, and the SLEM gap between them."""
    g = graph(n)
    exact = timed(g, method, "sdp")
    first = timed(g, method, "first_order")
    reference = timed(g, method, "cvxpy") if n <= cvxpy_max_n else None
    row = {
        "n": n,
        "edges": g.number_of_edges(),
        "method": method,
        "exact": exact,
        "first_order": first,
        "cvxpy": reference,
        "slem_gap": first["slem"] - exact["slem"],
        "metropolis_slem": slem(metropolis(g)),
    }
    cvxpy_note = (
        f"cvxpy {_seconds(reference)} slem={reference['slem']:.9f}"
        if reference is not None
        else f"cvxpy skipped (n > {cvxpy_max_n}: CLARABEL holds a dense n(n+1)/2 block per PSD cone)"
    )
    print(
        f"{method} n={n} edges={row['edges']}: exact {_seconds(exact)} {exact['iterations']} it "
        f"slem={exact['slem']:.9f} ({exact['status']}) | first_order {_seconds(first)} "
        f"slem={first['slem']:.9f} | slem_gap={row['slem_gap']:.2e} | {cvxpy_note} | "
        f"metropolis={row['metropolis_slem']:.6f}",
        flush=True,
    )
    return row


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[50, 100, 200, 400])
    parser.add_argument("--methods", nargs="*", default=["fmmc", "fdla"], choices=["fmmc", "fdla"])
    parser.add_argument("--cvxpy-max-n", type=int, default=100)
    parser.add_argument("--large", type=int, default=1000)
    args = parser.parse_args(argv)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    rows = [compare(n, method, args.cvxpy_max_n) for n in args.sizes for method in args.methods]
    if args.large <= 0:
        return rows
    g = graph(args.large)
    used = choose_solver(g.number_of_nodes(), g.number_of_edges())
    large = timed(g, "fmmc", "auto")
    print(
        f"fmmc auto n={args.large} edges={g.number_of_edges()}: {used} {_seconds(large)} "
        f"slem={large['slem']:.6f} metropolis={slem(metropolis(g)):.6f}"
    )
    rows.append({"n": args.large, "method": "fmmc", "auto": used, **large})
    return rows


if __name__ == "__main__":
    main()
