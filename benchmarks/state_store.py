"""Client-state store at scale: 10,000 SCAFFOLD clients of a ~100k-parameter MLP.

Each client's control variate c_i is d = 99,690 float32 values (390 KiB), 3.7 GiB for all
10,000 clients. With ``--budget-mb`` (the scenario key ``backend.state_memory_mb``) the store
keeps only that much hot and spills the rest to disk; this benchmark shows the process's
peak RSS stays near the budget, not near the 3.7 GiB of state.

It runs the real thing on cheap data: flsim's MLP objective (64 → 1024 → 32 → 10), the real
:class:`flsim.algorithms.scaffold.Scaffold` client update (one full-batch step on the
client's 2 synthetic samples) and the real :class:`ClientStateStore`, for ``--rounds`` rounds
in which every client participates (the first creates every c_i, later ones read and
replace them). The server's x and c updates are streamed client by client in id order
(the same sums as ``Scaffold.aggregate``), so replies do not pile up in memory.

    python -m benchmarks.state_store [--clients 10000] [--budget-mb 256] [--rounds 2]
    python -m benchmarks.state_store --budget-mb -1      # no budget: every state in memory

prints the peak RSS (``ru_maxrss``), the time per round, and the bytes spilled to disk.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import torch

from flsim.algorithms.base import AlgorithmConfig
from flsim.algorithms.client import ClientContext
from flsim.algorithms.scaffold import Scaffold
from flsim.config.schema import ModelConfig
from flsim.hosts.state_store import ClientStateStore
from flsim.rng import torch_rng
from flsim.tasks.base import Shard
from flsim.tasks.models import ModelInput, mlp


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def current_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def client_shard(client: int, samples: int = 2) -> Shard:
    """Two digits-shaped samples, regenerated from the client's own stream (never stored)."""
    generator = torch_rng(0, "bench.data", client)
    x = torch.rand(samples, 64, generator=generator)
    y = torch.randint(0, 10, (samples,), generator=generator)
    return Shard(x, y)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--hidden", type=int, nargs="+", default=[1024, 32])
    parser.add_argument("--budget-mb", type=float, default=256.0, help="hot-state budget; -1 = unlimited")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--spill-dir", default=None)
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    objective = mlp(ModelInput(in_features=64, num_classes=10), ModelConfig(name="mlp", hidden=args.hidden))
    x = objective.init_params(torch_rng(0, "init"))
    dim = x.numel()
    config = AlgorithmConfig(name="scaffold", lr=0.05, local_steps=1, batch_size="full")
    algorithm = Scaffold(config, args.clients, [2] * args.clients)
    server = algorithm.init_server(x)
    budget = None if args.budget_mb < 0 else int(args.budget_mb * 2**20)
    parent = Path(args.spill_dir or tempfile.gettempdir())
    store = ClientStateStore(lambda client: algorithm.init_client(client, x), budget, parent)
    baseline = current_rss_mib()
    state_gib = args.clients * dim * x.element_size() / 2**30
    print(f"clients={args.clients} dim={dim} state_total={state_gib:.2f} GiB budget_mb={args.budget_mb}")
    print(f"rss_before_store={baseline:.0f} MiB")

    round_times = []
    for round_index in range(args.rounds):
        start = time.perf_counter()
        message = algorithm.broadcast(server, round_index)
        step = torch.zeros_like(x)
        c = server["c"].clone()
        for client in range(args.clients):
            ctx = ClientContext(
                client,
                client_shard(client),
                objective,
                torch_rng(0, "client", client, round_index),
                None,
                config.round_lr(round_index),
                round_index,
            )
            reply, state = algorithm.client_update(message, store.get(client), ctx)
            store.put(client, state)
            step.add_(reply["delta"], alpha=1.0 / args.clients)  # uniform weights, id order
            c.add_(reply["delta_c"], alpha=1.0 / args.clients)
        server = {"x": server["x"] + config.server_lr * step, "c": c}
        round_times.append(time.perf_counter() - start)
        print(
            f"round {round_index}: {round_times[-1]:.1f} s, rss={current_rss_mib():.0f} MiB, "
            f"hot={store.hot_bytes / 2**20:.0f} MiB, spilled={store.num_spilled} clients",
            flush=True,
        )

    spill_bytes = store.spilled_bytes
    result = {
        "peak_rss_mib": peak_rss_mib(),
        "seconds_per_round": sum(round_times) / len(round_times),
        "spilled_gib": spill_bytes / 2**30,
        "state_total_gib": state_gib,
    }
    print(
        f"peak_rss = {result['peak_rss_mib']:.0f} MiB   seconds/round = {result['seconds_per_round']:.1f}   "
        f"on disk = {result['spilled_gib']:.2f} GiB of {state_gib:.2f} GiB"
    )
    store.close()  # deletes the spill directory
    return result


if __name__ == "__main__":
    main()
