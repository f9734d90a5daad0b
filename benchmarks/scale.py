"""Cost of a run against the population size N, with K fixed (issue 17).

FedAvg with K = 100 clients a round, 20 rounds, for N ∈ {10³, 10⁴, 10⁵, 10⁶} on ``linreg``
(dim 50, 20 samples a client). Each N runs in its own subprocess so that its peak RSS
(``resource.getrusage``) is its own. Printed per N: setup seconds (task build, exact optimum,
hosts, round-0 evaluation), peak RSS, seconds per round, and both against the smallest N of
the same invocation (the machine is shared, so only same-run ratios mean anything).
``--repeat R`` runs the whole list R times, interleaved, and keeps each N's fastest setup and
round (the least disturbed by other jobs) and its largest peak RSS.

``--dataset synthetic_leaf`` (dim 60, 10 classes, sizes capped at 1,000 samples, train loss
off) and ``--dataset digits`` (the pool's 1,437 training images, one or more a client, so N
≤ 1,437) measure the lazily built datasets; ``--dataset mnist_idx`` runs the MNIST pipeline
on 70,000 random 28×28 images written in the IDX format to a temporary directory (nothing
is downloaded), which is what a pooled dataset of 10⁴ clients needs.

    python -m benchmarks.scale [--sizes 1000 10000 100000 1000000] [--rounds 20] [--repeat 1]
    python -m benchmarks.scale --dataset synthetic_leaf --sizes 1000 10000
    python -m benchmarks.scale --dataset mnist_idx --sizes 1000 10000
    python -m benchmarks.scale --memory [--population 100000] [--cache-clients 1000]
    python -m benchmarks.scale --optimum [--population 100000] [--repeat 1]

``--memory`` runs the same scenario for 100 and for 1,000 rounds with a client cache smaller
than the population and prints both peak RSS values and their ratio (goal: ≤ 1.10).
``--optimum`` times the linreg optimum's streamed pass with one generator built per client
(as before block seeding) and with block-seeded chunks, interleaved, and prints the ratio.
"""

from __future__ import annotations

import argparse
import json
import resource
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

TASKS: dict[str, dict[str, Any]] = {
    "linreg": {"dataset": "linreg", "dataset_params": {"dim": 50, "samples_per_client": 20}},
    "synthetic_leaf": {"dataset": "synthetic_leaf", "dataset_params": {"max_samples_per_client": 1000}},
    "digits": {"dataset": "digits", "partition": {"kind": "iid", "min_size": 1}},
    "mnist_idx": {"dataset": "mnist_idx", "partition": {"kind": "iid", "min_size": 1}},
}


def scenario(
    num_clients: int,
    rounds: int,
    cache_mb: float | None,
    cache_clients: int | None,
    dataset: str = "linreg",
    data_dir: str | None = None,
) -> dict[str, Any]:
    backend: dict[str, Any] = {}
    if cache_mb is not None:
        backend["client_cache_mb"] = cache_mb
    if cache_clients is not None:
        backend["client_cache_clients"] = cache_clients
    task = json.loads(json.dumps(TASKS[dataset]))
    if data_dir is not None:
        task["dataset_params"] = {"path": data_dir}
    return {
        "name": f"bench_scale_{dataset}_{num_clients}",
        "seed": 0,
        "task": {**task, "num_clients": num_clients},
        "algorithm": {"name": "fedavg", "lr": 0.05, "local_steps": 5, "batch_size": 10},
        "clients_per_round": 100,
        "rounds": rounds,
        "backend": backend,
        # A lazy non-convex population has no streamed train loss: a full pass an evaluation.
        "eval": {"every": 1, "train_loss": dataset == "linreg"},
    }


def write_random_mnist(directory: Path, train: int = 60_000, test: int = 10_000) -> None:
    """MNIST-shaped IDX files of random pixels and labels (for timing the pooled pipeline)."""
    rng = np.random.default_rng(0)
    for prefix, count in (("train", train), ("t10k", test)):
        images = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=count, dtype=np.uint8)
        header = struct.pack(">BBBBIII", 0, 0, 8, 3, count, 28, 28)
        (directory / f"{prefix}-images-idx3-ubyte").write_bytes(header + images.tobytes())
        label_header = struct.pack(">BBBBI", 0, 0, 8, 1, count)
        (directory / f"{prefix}-labels-idx1-ubyte").write_bytes(label_header + labels.tobytes())


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


def scaling_table(sizes: list[int], rounds: int, cache_mb: float, dataset: str, repeat: int) -> None:
    print(f"{dataset}, FedAvg, K=100, {rounds} rounds, client cache {cache_mb} MB, best of {repeat}")
    print(
        f"{'N':>9} {'setup s':>9} {'peak RSS MiB':>13} {'s/round':>9} {'setup/base':>11} {'round/base':>11}"
    )
    best: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as data_dir:
        if dataset == "mnist_idx":
            write_random_mnist(Path(data_dir))
        path = data_dir if dataset == "mnist_idx" else None
        for _ in range(repeat):
            for n in sizes:
                result = in_subprocess(scenario(n, rounds, cache_mb, None, dataset, path))
                old = best.setdefault(n, result)
                best[n] = {
                    "setup_s": min(old["setup_s"], result["setup_s"]),
                    "round_s": min(old["round_s"], result["round_s"]),
                    "peak_mib": max(old["peak_mib"], result["peak_mib"]),
                }
    base = best[sizes[0]]
    for n in sizes:
        result = best[n]
        print(
            f"{n:>9} {result['setup_s']:>9.2f} {result['peak_mib']:>13.0f} {result['round_s']:>9.4f} "
            f"{result['setup_s'] / base['setup_s']:>11.2f} {result['round_s'] / base['round_s']:>11.2f}",
            flush=True,
        )


def memory_check(population: int, cache_clients: int) -> None:
    peaks = {}
    for rounds in (100, 1000):
        peaks[rounds] = in_subprocess(scenario(population, rounds, None, cache_clients))["peak_mib"]
        label = f"N={population}, cache {cache_clients} clients, {rounds} rounds"
        print(f"{label}: peak RSS {peaks[rounds]:.0f} MiB")
    print(f"peak after 1000 / after 100 rounds: {peaks[1000] / peaks[100]:.3f} (goal <= 1.10)")


def optimum_pass(population: int, repeat: int) -> None:
    """The streamed optimum's pass over ``population`` linreg clients two ways, interleaved:
    each client's rows from its own ``numpy_rng`` (the pass before block seeding) and from
    block-seeded chunks (``_LinregSpec.chunk``); both must give the same statistics."""
    from flsim.config.schema import TaskConfig
    from flsim.hosts.client_host import configure_torch
    from flsim.tasks import convex
    from flsim.tasks.streamed import LeastSquaresStats

    configure_torch(1)
    cfg = TaskConfig(
        dataset="linreg", num_clients=population, dataset_params={"dim": 50, "samples_per_client": 20}
    )
    spec = convex._linreg_spec(cfg, 0)[0]

    def per_client(start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        parts = [spec.train(i) for i in range(start, stop)]
        return np.concatenate([a for a, _ in parts]), np.concatenate([b for _, b in parts])

    best: dict[str, float] = {}
    grams = {}
    for _ in range(repeat):
        for label, chunk in (("per-client streams", per_client), ("block-seeded chunks", spec.chunk)):
            start = time.perf_counter()
            stats = LeastSquaresStats(50).add_chunks(convex._client_chunks(population, chunk))
            best[label] = min(best.get(label, float("inf")), time.perf_counter() - start)
            grams[label] = stats.gram
    assert np.array_equal(*grams.values()), "the two passes disagree"
    base = best["per-client streams"]
    print(f"streamed linreg optimum pass over {population} clients (dim 50, 20 rows), best of {repeat}")
    for label, seconds in best.items():
        per_client_us = 1e6 * seconds / population
        print(f"{label:>20}: {seconds:7.2f} s  {per_client_us:6.1f} us/client  {base / seconds:5.2f}x")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10**3, 10**4, 10**5, 10**6])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--cache-mb", type=float, default=64.0)
    parser.add_argument("--dataset", choices=sorted(TASKS), default="linreg")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each N (interleaved); best kept")
    parser.add_argument("--memory", action="store_true", help="peak RSS after 100 vs 1000 rounds")
    parser.add_argument("--population", type=int, default=100_000)
    parser.add_argument("--cache-clients", type=int, default=1000)
    parser.add_argument("--optimum", action="store_true", help="time the streamed optimum pass, old vs new")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure_one(json.loads(args.child))))
    elif args.optimum:
        optimum_pass(args.population, args.repeat)
    elif args.memory:
        memory_check(args.population, args.cache_clients)
    else:
        scaling_table(args.sizes, args.rounds, args.cache_mb, args.dataset, args.repeat)


if __name__ == "__main__":
    main()
