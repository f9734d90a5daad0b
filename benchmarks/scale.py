"""Cost of a run against the population size N, with K fixed (issue 17).

FedAvg on ``linreg`` (dim 50, 20 samples a client, K = 100 clients a round, 20 rounds) for
N ∈ {10³, 10⁴, 10⁵, 10⁶}. Each N runs in its own subprocess so that its peak RSS
(``resource.getrusage``) is its own. Printed per N: setup seconds (task build, exact optimum,
hosts, round-0 evaluation), peak RSS, seconds per round, and both against N = 10³ from the
same invocation (the machine is shared, so only same-run ratios mean anything).

    python -m benchmarks.scale [--sizes 1000 10000 100000 1000000] [--rounds 20]
    python -m benchmarks.scale --memory [--population 100000] [--cache-clients 1000]

``--memory`` runs the same scenario for 100 and for 1,000 rounds with a client cache smaller
than the population and prints both peak RSS values and their ratio (goal: ≤ 1.10).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def scenario(
    num_clients: int, rounds: int, cache_mb: float | None, cache_clients: int | None
) -> dict[str, Any]:
    backend: dict[str, Any] = {}
    if cache_mb is not None:
        backend["client_cache_mb"] = cache_mb
    if cache_clients is not None:
        backend["client_cache_clients"] = cache_clients
    return {
        "name": f"bench_scale_{num_clients}",
        "seed": 0,
        "task": {
            "dataset": "linreg",
            "num_clients": num_clients,
            "dataset_params": {"dim": 50, "samples_per_client": 20},
        },
        "algorithm": {"name": "fedavg", "lr": 0.05, "local_steps": 5, "batch_size": 10},
        "clients_per_round": 100,
        "rounds": rounds,
        "backend": backend,
        "eval": {"every": 1},
    }


def measure_one(config: dict[str, Any]) -> dict[str, float]:
    """Run one scenario in this process: setup seconds, seconds per round, peak RSS in MiB."""
    import flsim

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        flsim.run(config, run_dir=f"{tmp}/run")
        total = time.perf_counter() - start
        rows = [json.loads(line) for line in Path(f"{tmp}/run/metrics.jsonl").read_text().splitlines()]
    walls = {row["round"]: row["wall_time"] for row in rows}
    rounds = config["rounds"]
    per_round = (walls[rounds] - walls[1]) / (rounds - 1)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return {"setup_s": total - rounds * per_round, "round_s": per_round, "peak_mib": peak_mib}


def in_subprocess(config: dict[str, Any]) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.scale", "--child", json.dumps(config)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def scaling_table(sizes: list[int], rounds: int, cache_mb: float) -> None:
    print(f"linreg dim 50, 20 samples/client, FedAvg, K=100, {rounds} rounds, client cache {cache_mb} MB")
    print(f"{'N':>9} {'setup s':>9} {'peak RSS MiB':>13} {'s/round':>9} {'setup/10³':>10} {'round/10³':>10}")
    base: dict[str, float] | None = None
    for n in sizes:
        result = in_subprocess(scenario(n, rounds, cache_mb, None))
        base = base or result
        print(
            f"{n:>9} {result['setup_s']:>9.2f} {result['peak_mib']:>13.0f} {result['round_s']:>9.4f} "
            f"{result['setup_s'] / base['setup_s']:>10.2f} {result['round_s'] / base['round_s']:>10.2f}",
            flush=True,
        )


def memory_check(population: int, cache_clients: int) -> None:
    peaks = {}
    for rounds in (100, 1000):
        peaks[rounds] = in_subprocess(scenario(population, rounds, None, cache_clients))["peak_mib"]
        label = f"N={population}, cache {cache_clients} clients, {rounds} rounds"
        print(f"{label}: peak RSS {peaks[rounds]:.0f} MiB")
    print(f"peak after 1000 / after 100 rounds: {peaks[1000] / peaks[100]:.3f} (goal <= 1.10)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10**3, 10**4, 10**5, 10**6])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--cache-mb", type=float, default=64.0)
    parser.add_argument("--memory", action="store_true", help="peak RSS after 100 vs 1000 rounds")
    parser.add_argument("--population", type=int, default=100_000)
    parser.add_argument("--cache-clients", type=int, default=1000)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure_one(json.loads(args.child))))
    elif args.memory:
        memory_check(args.population, args.cache_clients)
    else:
        scaling_table(args.sizes, args.rounds, args.cache_mb)


if __name__ == "__main__":
    main()
