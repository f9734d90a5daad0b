"""Batched client execution (issue 17, part 2): what one ``vmap`` over a round's clients buys.

A prototype measurement, not yet the engine's path (``backend.vectorize`` is not wired in):
FedAvg and SCAFFOLD rounds of K clients (MLP 64-64-10, 64 samples a client, 10 local steps
of batch 32, lr 0.1) run (a) through flsim's own sequential path (``ClientHost.run_clients``)
and (b) as one ``torch.func.vmap(grad(functional_call))`` over stacked parameters and the
*same* per-client minibatches (each client's indices come from its own
("client", id, round) generator, exactly as ``ClientContext.batches`` draws them). Printed per
K: the round times, their ratios, and the largest relative difference of the client deltas
(floating-point reassociation only; goal ≤ 1e-5). A third variant, ``bmm``, writes the MLP's
forward and backward as batched matmuls by hand.

    python -m benchmarks.vectorized [--ks 10 100 1000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from flsim.config.loading import load_scenario
from flsim.hosts.client_host import ClientHost
from flsim.rng import torch_rng
from flsim.tasks.base import ModuleObjective, Shard, Task

SEED, SAMPLES, FEATURES, CLASSES, STEPS, BATCH, LR = 0, 64, 64, 10, 10, 32, 0.1


def make_task(k: int) -> Task:
    gen = torch.Generator().manual_seed(SEED)
    clients = [
        Shard(
            torch.randn(SAMPLES, FEATURES, generator=gen),
            torch.randint(0, CLASSES, (SAMPLES,), generator=gen),
        )
        for _ in range(k)
    ]
    module = nn.Sequential(nn.Linear(FEATURES, 64), nn.ReLU(), nn.Linear(64, CLASSES))
    objective = ModuleObjective(module, nn.CrossEntropyLoss())
    return Task("bench", clients, clients[0], objective, classification=True, num_classes=CLASSES)


def host_for(task: Task, algorithm: str) -> ClientHost:
    raw = {
        "name": "bench_vectorized",
        "seed": SEED,
        "task": {"dataset": "digits", "num_clients": task.num_clients},
        "algorithm": {"name": algorithm, "lr": LR, "local_steps": STEPS, "batch_size": BATCH},
        "clients_per_round": task.num_clients,
    }
    return ClientHost(load_scenario(raw), task=task)


def batch_indices(k: int, round_index: int) -> Tensor:
    """[STEPS, K, BATCH] sample indices, drawn as ``ClientContext.batches`` draws them."""
    out = torch.empty(STEPS, k, BATCH, dtype=torch.long)
    for client in range(k):
        gen = torch_rng(SEED, "client", client, round_index)
        step = 0
        while step < STEPS:
            order = torch.randperm(SAMPLES, generator=gen)
            for start in range(0, SAMPLES, BATCH):
                if step < STEPS:
                    out[step, client] = order[start : start + BATCH]
                    step += 1
    return out


def batched_update(task: Task, x: Tensor, drift: Tensor | None, round_index: int) -> Tensor:
    """All K clients' local SGD as one vmapped gradient a step; returns the deltas [K, D]."""
    objective = task.objective
    assert isinstance(objective, ModuleObjective)
    module = objective.module
    shapes = [(name, p.shape, p.numel()) for name, p in module.named_parameters()]

    def loss(flat: Tensor, xb: Tensor, yb: Tensor) -> Tensor:
        params, offset = {}, 0
        for name, shape, n in shapes:
            params[name] = flat[offset : offset + n].view(shape)
            offset += n
        return nn.functional.cross_entropy(functional_call(module, params, (xb,)), yb)

    step_grad: Callable = vmap(grad(loss))
    k = task.num_clients
    features = torch.stack([c.x for c in task.clients])
    labels = torch.stack([c.y for c in task.clients])
    index = batch_indices(k, round_index)
    rows = torch.arange(k)[:, None]
    y = x.expand(k, -1).clone()
    for step in range(STEPS):
        g = step_grad(y, features[rows, index[step]], labels[rows, index[step]])
        if drift is not None:
            g = g + drift
        y.sub_(g, alpha=LR)
    return y - x


def bmm_update(task: Task, x: Tensor, drift: Tensor | None, round_index: int) -> Tensor:
    """The same K local SGD runs with the MLP's forward and backward written as batched matmuls.

    For a 64-64-10 MLP, ``vmap(grad(...))`` pays per-op dispatch and autograd bookkeeping that
    dominate the tiny GEMMs; the closed-form backward of Linear-ReLU-Linear + cross-entropy
    is a handful of ``bmm`` calls a step.
    """
    k, hidden = task.num_clients, 64
    sizes = [hidden * FEATURES, hidden, CLASSES * hidden, CLASSES]
    y = x.expand(k, -1).clone()
    grads = torch.empty_like(y)
    w1, b1, w2, b2 = torch.split(y, sizes, dim=1)
    g1, gb1, g2, gb2 = torch.split(grads, sizes, dim=1)
    w1, w2 = w1.view(k, hidden, FEATURES), w2.view(k, CLASSES, hidden)
    g1, g2 = g1.view(k, hidden, FEATURES), g2.view(k, CLASSES, hidden)
    features = torch.stack([c.x for c in task.clients])
    labels = torch.stack([c.y for c in task.clients])
    index = batch_indices(k, round_index)
    rows = torch.arange(k)[:, None]
    for step in range(STEPS):
        xb, yb = features[rows, index[step]], labels[rows, index[step]]
        pre = torch.baddbmm(b1[:, None, :], xb, w1.transpose(1, 2))
        h = pre.clamp_min(0)
        dlogits = torch.softmax(torch.baddbmm(b2[:, None, :], h, w2.transpose(1, 2)), dim=2)
        dlogits.scatter_add_(2, yb[:, :, None], torch.full_like(dlogits[:, :, :1], -1.0))
        dlogits /= BATCH
        g2.copy_(torch.bmm(dlogits.transpose(1, 2), h))
        gb2.copy_(dlogits.sum(dim=1))
        dh = torch.bmm(dlogits, w2).mul_(pre > 0)
        g1.copy_(torch.bmm(dh.transpose(1, 2), xb))
        gb1.copy_(dh.sum(dim=1))
        if drift is not None:
            grads.add_(drift)
        y.sub_(grads, alpha=LR)
    return y - x


def time_round(k: int, algorithm: str, repeats: int) -> tuple[dict[str, float], float]:
    """Best-of-``repeats`` seconds of the loop, vmap and bmm rounds, and the worse relative
    difference of the two batched variants' deltas from the loop's."""
    task = make_task(k)
    host = host_for(task, algorithm)
    x0 = task.objective.init_params(torch_rng(SEED, "init"))
    message = host.algorithm.broadcast(host.algorithm.init_server(x0), 0)
    drift = torch.zeros_like(x0) if algorithm == "scaffold" else None  # c − c_i in round 0
    batched_update(task, message["x"], drift, 0)  # warm-up: torch.func builds its transforms once
    best = {"loop": float("inf"), "vmap": float("inf"), "bmm": float("inf")}
    for _ in range(repeats):
        start = time.perf_counter()
        replies = host.run_clients(message, list(range(k)), 0)
        best["loop"] = min(best["loop"], time.perf_counter() - start)
        start = time.perf_counter()
        deltas = batched_update(task, message["x"], drift, 0)
        best["vmap"] = min(best["vmap"], time.perf_counter() - start)
        start = time.perf_counter()
        by_bmm = bmm_update(task, message["x"], drift, 0)
        best["bmm"] = min(best["bmm"], time.perf_counter() - start)
        host.close()
        host = host_for(task, algorithm)  # fresh client states: every repeat is round 0
    sequential = torch.stack([r.message["delta"] for r in replies])
    scale = float(sequential.abs().max())
    assert scale > 0, "the clients did not move: nothing was compared"
    rel = max(float((d - sequential).abs().max()) / scale for d in (deltas, by_bmm))
    return best, rel


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ks", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(f"MLP {FEATURES}-64-{CLASSES}, {STEPS} steps of batch {BATCH}, 1 thread, best of {args.repeats}")
    head = ["algorithm", "K", "loop s", "vmap s", "bmm s", "loop/vmap", "loop/bmm", "max rel diff"]
    print(" ".join(f"{h:>12}" for h in head))
    for algorithm in ("fedavg", "scaffold"):
        for k in args.ks:
            t, rel = time_round(k, algorithm, args.repeats)
            cells = [algorithm, k, f"{t['loop']:.4f}", f"{t['vmap']:.4f}", f"{t['bmm']:.4f}"]
            cells += [f"{t['loop'] / t['vmap']:.2f}", f"{t['loop'] / t['bmm']:.2f}", f"{rel:.2e}"]
            print(" ".join(f"{c:>12}" for c in cells), flush=True)


if __name__ == "__main__":
    main()
