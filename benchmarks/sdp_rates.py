"""Optimal DADAO edge rates (docs/algorithms.md A6): solve time and total rate against uniform.

For random geometric graphs with n ∈ {16, 32, 50} (radius √(2.5 ln n / (π n)), about
2.5 ln n neighbours per node, the first connected draw of seed 0), prints the time of
:func:`flsim.topology.rates.optimal_rates`, its total rate, the uniform allocation's total
(A1: Λ = s L_p) and the post-checked χ₁χ₂ (must be ≤ ½). Goal: n = 50 in ≤ 30 s.

    python -m benchmarks.sdp_rates                       # barrier formulation (default)
    python -m benchmarks.sdp_rates --search --sizes 16   # also the cvxpy 1-D search over a

``--search`` runs the (A6) search over log a of cvxpy slices SDP(a) (``flow`` formulation) for
comparison: minutes from n = 32 on a 2-core machine, so only ask for it on small sizes.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence

from flsim.topology.graphs import build_graph
from flsim.topology.rates import optimal_rates

GOAL_SECONDS = 30.0


def geometric(n: int, seed: int = 0):
    """A connected random geometric graph with about 2.5 ln n neighbours per node."""
    radius = math.sqrt(2.5 * math.log(n) / (math.pi * n))
    return build_graph("geometric", {"n": n, "radius": radius}, seed=seed)


def measure(n: int, formulation: str, seed: int = 0) -> dict[str, float | int | str]:
    graph = geometric(n, seed)
    start = time.perf_counter()
    rates = optimal_rates(graph, formulation=formulation)
    seconds = time.perf_counter() - start
    return {
        "n": n,
        "m": graph.number_of_edges(),
        "formulation": formulation,
        "seconds": seconds,
        "total_rate": rates.total_rate,
        "uniform_total_rate": rates.uniform_total_rate,
        "ratio": rates.total_rate / rates.uniform_total_rate,
        "chi1_chi2": rates.chi1 * rates.chi2,
        "solves": rates.solves,
        "method": rates.method,
    }


def main(argv: Sequence[str] | None = None) -> list[dict[str, float | int | str]]:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.sdp_rates", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 32, 50])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--search", action="store_true", help="also time the cvxpy 1-D search over a")
    args = parser.parse_args(argv)
    formulations = ["barrier", "flow"] if args.search else ["barrier"]
    header = (
        f"{'n':>4} {'m':>5} {'formulation':>11} {'seconds':>9} {'total':>11} {'uniform':>11} "
        f"{'ratio':>7} {'chi1*chi2':>10} {'solves':>6}"
    )
    print(header)
    results = []
    for n in args.sizes:
        for formulation in formulations:
            row = measure(n, formulation, args.seed)
            results.append(row)
            print(
                f"{row['n']:>4} {row['m']:>5} {row['formulation']:>11} {row['seconds']:>9.2f} "
                f"{row['total_rate']:>11.5f} {row['uniform_total_rate']:>11.5f} {row['ratio']:>7.3f} "
                f"{row['chi1_chi2']:>10.8f} {row['solves']:>6}",
                flush=True,
            )
    largest = [r for r in results if r["formulation"] == "barrier" and r["n"] == max(args.sizes)]
    if largest:
        seconds = float(largest[0]["seconds"])
        verdict = "meets" if seconds <= GOAL_SECONDS else "MISSES"
        print(f"n = {largest[0]['n']}: {seconds:.2f} s, {verdict} the {GOAL_SECONDS:.0f} s goal")
    return results


if __name__ == "__main__":
    main()
