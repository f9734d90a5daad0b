"""Ray backend overhead: round throughput of ``ray`` (2 actors) divided by ``local``.

A compute-heavy scenario (CNN on digits, 20 clients per round, 5 local steps) runs on both
backends in this process; the ratio is (ray rounds/s) / (local rounds/s), each timed on the
simulation rounds only (start-up is reported separately). To explain where the time goes,
it also measures, on the same Ray session:

* ``empty_call_ms``: one remote call round trip to an actor (scheduling + RPC);
* ``put_get_model_ms``: ``ray.put`` + ``ray.get`` of one broadcast (serialization + object store);
* ``reply_bytes``: bytes a round's replies carry back.

    python -m benchmarks.ray_overhead [--rounds 10]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

import flsim
from flsim.engine.simulation import RoundSimulation

SCENARIO = {
    "name": "bench_ray",
    "seed": 0,
    "task": {
        "dataset": "digits",
        "num_clients": 40,
        "partition": {"kind": "iid"},
        "model": {"name": "cnn"},
    },
    "algorithm": {"name": "fedavg", "lr": 0.05, "local_steps": 5, "batch_size": 32},
    "clients_per_round": 20,
    "eval": {"every": 1000000, "train_loss": False},
}


def rounds_per_second(backend: dict, rounds: int) -> tuple[float, float]:
    """(rounds/s over the rounds only, start-up seconds)."""
    timings: list[float] = []
    original = RoundSimulation.run_round

    def timed(self, round_index):
        start = time.perf_counter()
        out = original(self, round_index)
        timings.append(time.perf_counter() - start)
        return out

    RoundSimulation.run_round = timed  # type: ignore[method-assign]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            flsim.run({**SCENARIO, "rounds": rounds, "backend": backend}, run_dir=f"{tmp}/run")
            total = time.perf_counter() - start
    finally:
        RoundSimulation.run_round = original  # type: ignore[method-assign]
    steady = timings[1:]  # the first round warms up kernels and actors
    return len(steady) / sum(steady), total - sum(timings)


def ray_micro(model_dim: int) -> dict[str, float]:
    import ray

    @ray.remote(num_cpus=0)
    class Echo:
        def ping(self) -> int:
            return 1

    actor = Echo.remote()
    ray.get(actor.ping.remote())
    start = time.perf_counter()
    for _ in range(50):
        ray.get(actor.ping.remote())
    empty = (time.perf_counter() - start) / 50
    payload = {"x": torch.zeros(model_dim)}
    start = time.perf_counter()
    for _ in range(20):
        ray.get(ray.put(payload))
    put_get = (time.perf_counter() - start) / 20
    ray.kill(actor)
    return {"empty_call_ms": 1e3 * empty, "put_get_model_ms": 1e3 * put_get}


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args(argv)
    import ray

    from flsim.config.loading import load_scenario
    from flsim.tasks import build_task

    torch.set_num_threads(1)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        local, local_startup = rounds_per_second({"kind": "local"}, args.rounds)
        remote, ray_startup = rounds_per_second({"kind": "ray", "num_actors": 2}, args.rounds)
        dim = build_task(load_scenario(SCENARIO).task, 0).dim
        result = {
            "local_rounds_per_s": local,
            "ray_rounds_per_s": remote,
            "throughput_ratio": remote / local,
            "local_startup_s": local_startup,
            "ray_startup_s": ray_startup,
            "model_params": float(dim),
            "reply_bytes": float(20 * dim * 4),
            **ray_micro(dim),
        }
    finally:
        ray.shutdown()
    for key, value in result.items():
        print(f"{key} = {value:.3f}")
    return result


if __name__ == "__main__":
    main()
