"""Batched client execution (``backend.vectorize``): the per-client loop against the batched round.

FedAvg and SCAFFOLD rounds of K clients (MLP 64-64-10, 64 samples a client, 10 local steps of
batch 32, lr 0.1), each run by flsim's own :class:`ClientHost` twice: with
``backend.vectorize: off`` (one client after another) and ``on`` (one stack per round,
docs/vectorized.md). Printed per K: best-of-``repeats`` seconds of both rounds, their ratio,
and the largest difference of the client deltas relative to the largest delta
(floating-point reassociation only; the tests allow 1e-5).

A second table times small rounds of cheap clients, where the loop can win: the measured
crossover sets ``AUTO_MIN_CLIENTS``, from which ``backend.vectorize: auto`` batches.

    python -m benchmarks.vectorized [--ks 10 100 1000] [--repeats 3] [--small-ks 1 2 4 6 8 16]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from flsim.algorithms.base import Reply
from flsim.hosts.client_host import ClientHost, initial_model
from flsim.hosts.vectorized import AUTO_MIN_CLIENTS
from flsim.rng import torch_rng
from flsim.scenario import load_scenario
from flsim.tasks.base import ModuleObjective, Shard, Task

SEED, SAMPLES, FEATURES, HIDDEN, CLASSES, STEPS, BATCH, LR = 0, 64, 64, 64, 10, 10, 32, 0.1


def make_task(k: int) -> Task:
    gen = torch.Generator().manual_seed(SEED)
    clients = [
        Shard(
            torch.randn(SAMPLES, FEATURES, generator=gen),
            torch.randint(0, CLASSES, (SAMPLES,), generator=gen),
        )
        for _ in range(k)
    ]
    module = nn.Sequential(nn.Linear(FEATURES, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, CLASSES))
    objective = ModuleObjective(module, nn.CrossEntropyLoss())
    return Task("bench", clients, clients[0], objective, classification=True, num_classes=CLASSES)


def host_for(task: Task, algorithm: str, vectorize: str) -> ClientHost:
    raw = {
        "name": "bench_vectorized",
        "seed": SEED,
        "task": {"dataset": "digits", "num_clients": task.num_clients},
        "algorithm": {"name": algorithm, "lr": LR, "local_steps": STEPS, "batch_size": BATCH},
        "clients_per_round": task.num_clients,
        "backend": {"vectorize": vectorize},
    }
    return ClientHost(load_scenario(raw), task=task)


def timed_round(task: Task, algorithm: str, vectorize: str) -> tuple[float, list[Reply]]:
    """Seconds of round 0 on a fresh host (fresh client states), and its replies."""
    host = host_for(task, algorithm, vectorize)
    if vectorize == "on":
        assert host.vectorized is not None, "the batched path was not taken"
    x0 = task.objective.init_params(torch_rng(SEED, "init"))
    message = host.algorithm.broadcast(host.algorithm.init_server(x0), 0)
    start = time.perf_counter()
    replies = host.run_clients(message, list(range(task.num_clients)), 0)
    seconds = time.perf_counter() - start
    host.close()
    return seconds, replies


def time_round(k: int, algorithm: str, repeats: int) -> tuple[dict[str, float], float]:
    """Best-of-``repeats`` seconds of the loop and the batched round, and the largest
    difference of their client deltas relative to the largest delta."""
    task = make_task(k)
    timed_round(task, algorithm, "on")  # warm-up: first-call allocations, lazy imports
    best = {"off": float("inf"), "on": float("inf")}
    replies: dict[str, list[Reply]] = {}
    for _ in range(repeats):
        for mode in ("off", "on"):
            seconds, replies[mode] = timed_round(task, algorithm, mode)
            best[mode] = min(best[mode], seconds)
    loop = torch.stack([r.message["delta"] for r in replies["off"]])
    batched = torch.stack([r.message["delta"] for r in replies["on"]])
    scale = float(loop.abs().max())
    assert scale > 0, "the clients did not move: nothing was compared"
    return best, float((batched - loop).abs().max()) / scale


def small_rounds(ks: list[int], repeats: int) -> None:
    """Where batching starts to pay: ``linreg`` (dim 50, 20 samples a client, 10 steps of batch
    8), the task whose clients are cheapest, so the stacks' fixed costs weigh most; and
    ``digits`` with an MLP 64-16-10 (10 steps of batch 16). ``auto`` batches from
    ``AUTO_MIN_CLIENTS`` clients a round on, chosen from this table."""
    cases = {
        "linreg": {
            "task": {
                "dataset": "linreg",
                "num_clients": 32,
                "dataset_params": {"dim": 50, "samples_per_client": 20},
            },
            "algorithm": {"name": "fedavg", "lr": 0.01, "local_steps": 10, "batch_size": 8},
        },
        "digits mlp": {
            "task": {"dataset": "digits", "num_clients": 32, "model": {"name": "mlp", "hidden": [16]}},
            "algorithm": {"name": "fedavg", "lr": 0.1, "local_steps": 10, "batch_size": 16},
        },
    }
    print(f"\nsmall rounds (auto batches from {AUTO_MIN_CLIENTS} clients a round), best of {repeats}")
    print(" ".join(f"{h:>12}" for h in ["task", "K", "loop s", "batched s", "loop/batched"]))
    for name, case in cases.items():
        for k in ks:
            best = {}
            for mode in ("off", "on"):
                raw = {"name": "bench_small", "seed": SEED, **case, "clients_per_round": k}
                host = ClientHost(load_scenario({**raw, "backend": {"vectorize": mode}}))
                message = host.algorithm.broadcast(
                    host.algorithm.init_server(initial_model(host.scenario, host.task)), 0
                )
                host.run_clients(message, list(range(k)), 0)  # warm-up
                times = []
                for repeat in range(repeats):
                    start = time.perf_counter()
                    host.run_clients(message, list(range(k)), repeat + 1)
                    times.append(time.perf_counter() - start)
                best[mode] = min(times)
            cells = [name, k, f"{best['off']:.5f}", f"{best['on']:.5f}", f"{best['off'] / best['on']:.2f}"]
            print(" ".join(f"{c:>12}" for c in cells), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ks", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--small-ks", type=int, nargs="*", default=[1, 2, 4, 6, 8, 16])
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(
        f"MLP {FEATURES}-{HIDDEN}-{CLASSES}, {SAMPLES} samples a client, {STEPS} steps of batch {BATCH}, "
        f"1 thread, best of {args.repeats}"
    )
    head = ["algorithm", "K", "loop s", "batched s", "loop/batched", "max rel diff"]
    print(" ".join(f"{h:>12}" for h in head))
    for algorithm in ("fedavg", "scaffold"):
        for k in args.ks:
            t, rel = time_round(k, algorithm, args.repeats)
            cells = [
                algorithm,
                k,
                f"{t['off']:.4f}",
                f"{t['on']:.4f}",
                f"{t['off'] / t['on']:.2f}",
                f"{rel:.2e}",
            ]
            print(" ".join(f"{c:>12}" for c in cells), flush=True)
    if args.small_ks:
        small_rounds(args.small_ks, max(args.repeats, 5))


if __name__ == "__main__":
    main()
