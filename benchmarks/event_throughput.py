"""Event throughput: flsim's DADAO against a minimal hand-written NumPy event loop.

Both sides simulate DADAO (docs/algorithms.md A2–A5) on ridge ``linreg`` with n = 50 nodes and
d = 100, on a ring or a random geometric graph with uniform rates, deterministic gradients,
and the same arithmetic per event: the superposed clock (an exponential gap and a choice
by rate), the same flow matrix expm(M Δt) = Re Σ e^{λΔt} G (``DadaoFlow.rates``/``basis``,
precomputed once on both sides) applied to the touched nodes, and the same gradient
Aᵀ(Ax − b)/m + l2·x (flsim through the task's objective, the reference in NumPy). The
reference has no budgets, evaluation grid, counters, checkpoints or graph cycle.

    python -m benchmarks.event_throughput [--graph geometric|ring] [--time 40] [--repeats 3]

prints ``throughput_ratio = flsim / reference`` (events per second, best of ``repeats``).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from flsim.algorithms.dadao_ode import DadaoConstants, DadaoFlow
from flsim.hosts.event_host import EventSimulation, event_graphs
from flsim.hosts.sinks import RowCollector
from flsim.progress import ProgressReporter
from flsim.scenario import load_scenario
from flsim.tasks import build_task

BLOCK = 4096


def scenario(graph: str, horizon: float) -> dict:
    return {
        "name": "bench_events",
        "seed": 0,
        "task": {
            "dataset": "linreg",
            "num_clients": 50,
            "dataset_params": {"dim": 100, "samples_per_client": 50, "l2": 0.1},
        },
        "algorithm": {"name": "dadao"},
        "topology": {"kind": graph, "params": {"radius": 0.3} if graph == "geometric" else {}},
        "budget": {"time": horizon},
        "eval": {"every_time": horizon, "train_loss": False},
    }


def run_flsim(raw: dict, task) -> float:
    sim = EventSimulation(load_scenario(raw), task, RowCollector(), ProgressReporter("bench", "off"))  # type: ignore[arg-type]
    start = time.process_time()
    final = sim.run()
    return final["events"] / (time.process_time() - start)


def run_reference(raw: dict, task) -> float:
    """The loop a researcher would write by hand, with the same per-event arithmetic."""
    scenario_ = load_scenario(raw)
    rates = event_graphs(scenario_.topology, task.num_clients, scenario_.seed)[0]  # type: ignore[arg-type]
    n, horizon = task.num_clients, float(raw["budget"]["time"])
    l2 = float(raw["task"]["dataset_params"]["l2"])
    features = [c.x.numpy() for c in task.clients]
    targets = [c.y.numpy() for c in task.clients]
    c = DadaoConstants.from_problem(max(task.smoothness), min(task.strong_convexity), rates.chi1)
    flow = DadaoFlow(c.ode_matrix())
    lam, basis = flow.rates, flow.basis
    state = np.zeros((n, 6, task.dim))
    last = np.zeros(n)
    edges = rates.edges
    clock = np.concatenate([np.ones(n), np.asarray(rates.rates)])
    total = clock.sum()
    cumulative = np.cumsum(clock) / total
    rng = np.random.default_rng(0)
    t, events = 0.0, 0
    start = time.process_time()
    while t < horizon:
        gaps = rng.exponential(1.0 / total, BLOCK).tolist()
        choices = np.searchsorted(cumulative, rng.random(BLOCK), side="right").tolist()
        for gap, k in zip(gaps, choices, strict=True):
            t += gap
            if t >= horizon:
                break
            events += 1
            if k < n:
                s = state[k]
                s[...] = (np.exp(lam * (t - last[k])).view(np.float64) @ basis).reshape(6, 6) @ s
                last[k] = t
                x, a = s[0], features[k]
                r = a.T @ (a @ x - targets[k]) / a.shape[0] + l2 * x - c.nu * x - s[3]
                x -= c.gamma * r
                s[1] -= c.gamma_tilde * r
                s[3] += (c.delta + c.delta_tilde) * r
            else:
                i, j = edges[k - n]
                si, sj = state[i], state[j]
                si[...] = (np.exp(lam * (t - last[i])).view(np.float64) @ basis).reshape(6, 6) @ si
                sj[...] = (np.exp(lam * (t - last[j])).view(np.float64) @ basis).reshape(6, 6) @ sj
                last[i] = last[j] = t
                m = si[2] + si[4] - sj[2] - sj[4]
                si[4] -= c.beta * m
                sj[4] += c.beta * m
                si[5] -= c.beta_tilde * m
                sj[5] += c.beta_tilde * m
    return events / (time.process_time() - start)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--graph", choices=["geometric", "ring"], default="geometric")
    parser.add_argument("--time", type=float, default=40.0, help="virtual time per run")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    raw = scenario(args.graph, args.time)
    task = build_task(load_scenario(raw).task, 0)
    short = scenario(args.graph, args.time / 10)
    run_reference(short, task)  # warm-up of both paths
    run_flsim(short, task)
    reference, ours = 0.0, 0.0
    for _ in range(args.repeats):  # interleaved, so that load changes hit both sides alike
        reference = max(reference, run_reference(raw, task))
        ours = max(ours, run_flsim(raw, task))
    result = {
        "reference_events_per_s": reference,
        "flsim_events_per_s": ours,
        "throughput_ratio": ours / reference,
    }
    for key, value in result.items():
        print(f"{key} = {value:.3f}")
    return result


if __name__ == "__main__":
    main()
