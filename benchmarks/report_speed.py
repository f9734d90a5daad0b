"""Report speed: ``flsim report`` over 200 fabricated runs (goal: well under 10 s).

The runs are written directly in the engine's results format (config.yaml, metrics.jsonl,
metrics.parquet, summary.json) rather than simulated, so that the benchmark measures the
report path alone: 4 scenarios x 5 algorithms x 10 seeds, 51 evaluation rows each. A few runs
are left ``running`` with only ``metrics.jsonl`` (no parquet yet), as in a live sweep.

    python -m benchmarks.report_speed [--runs 200] [--rounds 50] [--spec dashboards/centralized.yaml]

prints the seconds taken by ``flsim report`` as a subprocess (interpreter start-up and imports
included, as a user sees it) and, separately, by the in-process ``write_report`` call.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ALGORITHMS = ["fedavg", "fedprox", "scaffold", "feddyn", "fedspeed"]
SCENARIOS = ["digits_iid", "digits_dir01", "digits_dir05", "digits_shards"]


def fabricate(root: Path, runs: int, rounds: int) -> list[Path]:
    """Write ``runs`` run directories under ``root``; every 25th is still ``running``."""
    out = []
    r = np.arange(rounds + 1)
    for i in range(runs):
        scenario = SCENARIOS[i % len(SCENARIOS)]
        algorithm = ALGORITHMS[(i // len(SCENARIOS)) % len(ALGORITHMS)]
        seed = i // (len(SCENARIOS) * len(ALGORITHMS))
        run_dir = root / scenario / f"{algorithm}-s{seed}-{i:04d}"
        run_dir.mkdir(parents=True)
        rate = 0.05 + 0.01 * (i % 7)
        loss = 2.3 * np.exp(-rate * r) + 0.02 * seed
        frame = pd.DataFrame(
            {
                "round": r,
                "virtual_time": np.cumsum(np.full(rounds + 1, 0.3 + 0.01 * seed)) - 0.3,
                "events": 20 * r,
                "bytes_up": 40_000 * r,
                "bytes_down": 40_000 * r,
                "grad_evals": 100 * r,
                "wall_time": 0.05 * r,
                "train_loss": loss * 0.9,
                "test_loss": loss,
                "test_acc": np.minimum(0.98, 0.1 + 0.9 * (1 - np.exp(-rate * r))),
            }
        )
        alpha = {"digits_iid": None, "digits_dir01": 0.1, "digits_dir05": 0.5, "digits_shards": None}[
            scenario
        ]
        config = {
            "name": scenario,
            "seed": seed,
            "task": {
                "dataset": "digits",
                "num_clients": 20,
                "partition": {"kind": "dirichlet" if alpha else "iid", "alpha": alpha or 0.5},
                "model": {"name": "mlp", "hidden": [64]},
            },
            "algorithm": {"name": algorithm, "lr": 0.1, "local_steps": 10, "batch_size": 32},
            "rounds": rounds,
            "clients_per_round": 10,
            "versions": {"flsim": "0.1.0"},
        }
        running = i % 25 == 24
        if running:
            frame = frame.iloc[: rounds // 2]
        (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        records = frame.to_dict("records")
        (run_dir / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in records))
        if not running:
            frame.to_parquet(run_dir / "metrics.parquet", index=False)
        final = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in records[-1].items()}
        summary = {
            "name": scenario,
            "run_id": run_dir.name,
            "algorithm": algorithm,
            "seed": seed,
            "status": "running" if running else "completed",
            "final": final,
            "timings": {"wall_seconds": float(frame["wall_time"].iloc[-1])},
        }
        (run_dir / "summary.json").write_text(json.dumps(summary))
        out.append(run_dir)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--spec", default=None, help="also time a spec-driven report")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="flsim-report-bench-") as tmp:
        root = Path(tmp) / "results"
        fabricate(root, args.runs, args.rounds)
        flsim = [sys.executable, "-m", "flsim"]
        specs = [None] + ([args.spec] if args.spec else [])
        for spec in specs:
            out = Path(tmp) / "report.html"
            cmd = [*flsim, "report", str(root), "-o", str(out)] + (["--spec", spec] if spec else [])
            cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            seconds = time.perf_counter() - start
            cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
            size_mb = out.stat().st_size / 1e6
            label = f"spec={spec}" if spec else "default panels"
            # CPU seconds are printed too: on a shared machine wall time mostly measures the neighbours.
            print(
                f"flsim report, {args.runs} runs, {label}: {seconds:.2f} s wall, {cpu:.2f} s CPU "
                f"(subprocess, imports included), {size_mb:.1f} MB"
            )

        from flsim.report import write_report

        for spec in specs:
            start, cpu = time.perf_counter(), time.process_time()
            write_report(root, Path(tmp) / "inproc.html", spec=spec)
            print(
                f"write_report in process, {args.runs} runs, {'spec' if spec else 'default'}: "
                f"{time.perf_counter() - start:.2f} s wall, {time.process_time() - cpu:.2f} s CPU"
            )


if __name__ == "__main__":
    main()
