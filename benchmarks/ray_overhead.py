"""Ray backend overhead: round throughput of ``ray`` (2 actors) divided by ``local``.

A compute-heavy scenario (CNN on digits, 20 clients per round, 5 local steps) runs on both
backends in this process; the ratio is (ray rounds/s) / (local rounds/s), each timed on the
simulation rounds only (start-up is reported separately). To explain where the time goes,
it also measures, on the same Ray session:

* ``empty_call_ms``: one remote call round trip to an actor (scheduling + RPC);
* ``put_get_model_ms``: ``ray.put`` + ``ray.get`` of one broadcast (serialization + object store);
* ``reply_bytes``: bytes a round's replies carry back;
* ``{local,ray}_{broadcast,clients,aggregate,driver_rest}_ms``: where a steady round's time
  goes, as the driver waits for the server role's broadcast, the clients, the server's
  aggregation, and its own scheduling and accounting (the rest).

    python -m benchmarks.ray_overhead [--rounds 10]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import tempfile
import time
from collections.abc import Iterator

import torch

import flsim

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


#: Driver-side phases of a round: (label, class path, method). The driver waits in each.
PHASES = {
    "local": [
        ("broadcast", "flsim.hosts.server.ServerCore", "broadcast"),
        ("clients", "flsim.backends.local.LocalBackend", "run_clients"),
        ("aggregate", "flsim.hosts.server.ServerCore", "aggregate"),
    ],
    "ray": [
        ("broadcast", "flsim.backends.ray_backend.RayServer", "broadcast"),
        ("clients", "flsim.backends.ray_backend.RayBackend", "run_clients"),
        ("aggregate", "flsim.backends.ray_backend.RayServer", "aggregate"),
    ],
}


@contextlib.contextmanager
def timed_methods(targets: list[tuple[str, str, str]]) -> Iterator[dict[str, list[float]]]:
    """Wrap each ``module.Class.method`` to record its durations, per label."""
    durations: dict[str, list[float]] = {label: [] for label, _, _ in targets}
    originals = []
    for label, path, method in targets:
        module, name = path.rsplit(".", 1)
        cls = getattr(importlib.import_module(module), name)
        original = getattr(cls, method)

        def timed(self, *args, _original=original, _label=label, **kwargs):
            start = time.perf_counter()
            out = _original(self, *args, **kwargs)
            durations[_label].append(time.perf_counter() - start)
            return out

        originals.append((cls, method, original))
        setattr(cls, method, timed)
    try:
        yield durations
    finally:
        for cls, method, original in originals:
            setattr(cls, method, original)


def rounds_per_second(backend: dict, rounds: int) -> tuple[float, float, dict[str, float]]:
    """(rounds/s over the rounds only, start-up seconds, mean ms per round of each phase)."""
    phases = [("round", "flsim.engine.simulation.RoundSimulation", "run_round"), *PHASES[backend["kind"]]]
    with timed_methods(phases) as durations, tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        flsim.run({**SCENARIO, "rounds": rounds, "backend": backend}, run_dir=f"{tmp}/run")
        total = time.perf_counter() - start
    timings = durations.pop("round")
    steady = timings[1:]  # the first round warms up kernels and actors
    # The last calls of each phase are the steady rounds' (the init phase adds none here).
    breakdown = {label: 1e3 * sum(d[-len(steady) :]) / len(steady) for label, d in durations.items()}
    breakdown["driver_rest"] = 1e3 * sum(steady) / len(steady) - sum(breakdown.values())
    return len(steady) / sum(steady), total - sum(timings), breakdown


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

    from flsim.scenario import load_scenario
    from flsim.tasks import build_task

    torch.set_num_threads(1)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        local, local_startup, local_phases = rounds_per_second({"kind": "local"}, args.rounds)
        remote, ray_startup, ray_phases = rounds_per_second({"kind": "ray", "num_actors": 2}, args.rounds)
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
            **{f"local_{label}_ms": value for label, value in local_phases.items()},
            **{f"ray_{label}_ms": value for label, value in ray_phases.items()},
        }
    finally:
        ray.shutdown()
    for key, value in result.items():
        print(f"{key} = {value:.3f}")
    return result


if __name__ == "__main__":
    main()
