"""Hash the metrics of every shipped scenario, run for a few rounds, to show a refactor changes nothing.

Run it before a change (``--save before.json``) and after (``--compare before.json``): the
hashes must match. Each plain scenario runs with ``rounds=2`` (event-driven ones with a small
gradient/time budget); each sweep file contributes the first expanded run of every variant.
Studies are skipped: they are single-node experiments with their own tests. Wall-clock
fields are dropped before hashing, since they differ from run to run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from flsim.api import run
from flsim.config.loading import read_yaml
from flsim.sweep import expand_sweep

WALL_FIELDS = {"wall_time", "wall_seconds", "elapsed", "wall"}


def _small(raw: dict[str, Any]) -> dict[str, Any]:
    """The same scenario with a budget of a few rounds (or a few events per node)."""
    raw = json.loads(json.dumps(raw))
    raw["rounds"] = 2
    budget = raw.get("budget") or {}
    nodes = int(raw.get("task", {}).get("num_clients", 10))
    if budget.get("gradients"):
        budget["gradients"] = min(budget["gradients"], 3 * nodes)
    if budget.get("communications"):
        budget["communications"] = min(budget["communications"], 3 * nodes)
    if budget.get("time"):
        budget["time"] = min(budget["time"], 5.0)
    raw["checkpoint"] = {"every": 1}
    raw.setdefault("backend", {})["kind"] = "local"
    return raw


def scenarios(root: Path) -> list[tuple[str, dict[str, Any]]]:
    """Every run scenario under ``root`` as (label, raw scenario), studies excluded."""
    found: list[tuple[str, dict[str, Any]]] = []
    for path in sorted(root.rglob("*.yaml")):
        raw = read_yaml(path)
        if "sweep" in raw:
            _spec, runs = expand_sweep(path)
            seen: set[str] = set()
            for sweep_run in runs:
                key = json.dumps(sweep_run.scenario.get("algorithm"), sort_keys=True)
                if key in seen:
                    continue
                seen.add(key)
                found.append((f"{path}:{sweep_run.label}", sweep_run.scenario))
        elif raw.get("kind") != "study" and "study" not in raw:
            found.append((str(path), raw))
    return found


def metrics_hash(run_dir: Path) -> str:
    """SHA-256 of metrics.jsonl with the wall-clock fields removed."""
    digest = hashlib.sha256()
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        row = {k: v for k, v in json.loads(line).items() if k not in WALL_FIELDS}
        digest.update(json.dumps(row, sort_keys=True).encode())
    return digest.hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", default="scenarios")
    parser.add_argument("--save")
    parser.add_argument("--compare")
    args = parser.parse_args()
    hashes: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for index, (label, raw) in enumerate(scenarios(Path(args.root))):
            target = Path(tmp) / str(index)
            try:
                run(_small(raw), run_dir=target)
                hashes[label] = metrics_hash(target)
            except Exception as exc:  # a scenario that fails must fail the same way after
                hashes[label] = f"error: {type(exc).__name__}: {exc}"
            print(f"{hashes[label][:16]}  {label}", flush=True)
    if args.save:
        Path(args.save).write_text(json.dumps(hashes, indent=1, sort_keys=True))
    if args.compare:
        before = json.loads(Path(args.compare).read_text())
        changed = sorted(k for k in before.keys() | hashes.keys() if before.get(k) != hashes.get(k))
        for label in changed:
            print(f"CHANGED {label}: {before.get(label)} -> {hashes.get(label)}")
        print(f"{len(hashes)} scenarios, {len(changed)} changed")
        return 1 if changed else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
