"""Engine overhead: flsim's FedAvg against a bare PyTorch loop doing the same client work.

Both sides run FedAvg on digits with an MLP, 100 clients, 10 per round, 10 local SGD steps
of batch 32, in this process, single-threaded. The bare loop is the code a researcher would
write by hand: ``nn.Module`` + ``torch.optim.SGD`` + indexing minibatches, with no events,
accounting or state store. Evaluation is switched off on both sides (flsim evaluates only
after the last round) so that the ratio measures the client-computation path.

    python -m benchmarks.engine_overhead [--rounds 30] [--repeats 3]

prints ``throughput_ratio = flsim / bare`` (rounds per second), best of ``repeats`` each.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from torch import nn

import flsim
from flsim.rng import torch_rng
from flsim.scenario import load_scenario
from flsim.tasks import build_task

SCENARIO = {
    "name": "bench_engine",
    "seed": 0,
    "task": {
        "dataset": "digits",
        "num_clients": 100,
        "partition": {"kind": "iid"},
        "model": {"name": "mlp", "hidden": [64]},
    },
    "algorithm": {"name": "fedavg", "lr": 0.1, "local_steps": 10, "batch_size": 32},
    "clients_per_round": 10,
    "eval": {"every": 1000000, "train_loss": False},
}


def run_flsim(rounds: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        config = {**SCENARIO, "rounds": rounds}
        start = time.perf_counter()
        flsim.run(config, run_dir=f"{tmp}/run")
        return rounds / (time.perf_counter() - start)


def run_bare(rounds: int) -> float:
    """Hand-written FedAvg on the same data split: the cost floor of the client computation."""
    task = build_task(load_scenario(SCENARIO).task, 0)
    features = task.clients[0].x.shape[1]
    model = nn.Sequential(nn.Linear(features, 64), nn.ReLU(), nn.Linear(64, task.num_classes))
    loss_fn = nn.CrossEntropyLoss()
    global_state = [p.detach().clone() for p in model.parameters()]
    sampler = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for round_index in range(rounds):
        chosen = torch.randperm(task.num_clients, generator=sampler)[:10].tolist()
        accum = [torch.zeros_like(p) for p in global_state]
        for client in sorted(chosen):
            shard = task.clients[client]
            with torch.no_grad():
                for p, g in zip(model.parameters(), global_state, strict=True):
                    p.copy_(g)
            optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
            generator = torch_rng(0, "client", client, round_index)
            order = torch.randperm(len(shard), generator=generator)
            position = 0
            for _ in range(10):
                if position >= len(shard):
                    order, position = torch.randperm(len(shard), generator=generator), 0
                index = order[position : position + 32]
                position += 32
                optimizer.zero_grad()
                loss_fn(model(shard.x[index]), shard.y[index]).backward()
                optimizer.step()
            with torch.no_grad():
                for a, p in zip(accum, model.parameters(), strict=True):
                    a.add_(p, alpha=0.1)
        global_state = accum
    return rounds / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    run_bare(2)  # warm-up of both paths (allocator, kernels)
    run_flsim(2)
    bare = max(run_bare(args.rounds) for _ in range(args.repeats))
    ours = max(run_flsim(args.rounds) for _ in range(args.repeats))
    result = {"bare_rounds_per_s": bare, "flsim_rounds_per_s": ours, "throughput_ratio": ours / bare}
    for key, value in result.items():
        print(f"{key} = {value:.3f}")
    return result


if __name__ == "__main__":
    main()
