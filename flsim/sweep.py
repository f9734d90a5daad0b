"""``flsim sweep``: a grid of scenarios × seeds, in sequence locally or as parallel Ray tasks.

A sweep file has one top-level ``sweep`` mapping::

    sweep:
      name: compare_dirichlet          # results go to <output.dir>/<name>/<label>/
      base: ../quickstart.yaml         # a path relative to this file, or an inline scenario
      seeds: [0, 1, 2]
      grid:                            # cartesian product of dotted keys
        task.partition.alpha: [0.1, 1.0]
      variants:                        # named alternatives; an ``algorithm`` mapping replaces the section
        fedavg: {algorithm: {name: fedavg, lr: 0.1}}
        fedprox: {algorithm: {name: fedprox, lr: 0.1, mu: 0.01}}

Every expanded scenario is validated before the first run starts, so a typo in one variant
fails the whole sweep up front (exit 2) instead of after an hour. A run that fails at run
time is reported and does not stop its siblings. Re-running a sweep skips runs whose
directory already says ``completed``, and says how many it skipped.

A run's label, which is its folder, its ``run_id`` and its name in reports, is built from its
variant, its grid values and its seed (``fedavg-alpha0.1-s0``); the last part of each dotted
grid key is used unless two keys share it, then enough of the key to tell them apart.
"""

from __future__ import annotations

import itertools
import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flsim.config.errors import ConfigError, ConfigErrors, errors_from_validation
from flsim.config.loading import apply_overrides, read_yaml
from flsim.scenario import load_scenario

log = logging.getLogger("flsim.sweep")


class SweepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    base: str | dict[str, Any]
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    variants: dict[str, dict[str, Any]] = Field(default_factory=lambda: {"base": {}})


@dataclass
class SweepRun:
    label: str
    scenario: dict[str, Any]


@dataclass
class SweepOutcome:
    label: str
    run_dir: Path
    status: str
    error: str | None = None
    skipped: bool = False


def _format_value(value: Any) -> str:
    """A short, path-safe label part: mappings and lists flatten to their values."""
    if isinstance(value, dict):
        return "-".join(_format_value(v) for v in value.values())
    if isinstance(value, list | tuple):
        return "-".join(_format_value(v) for v in value)
    return str(value).replace("/", "_").replace(" ", "")


def _key_names(keys: list[str]) -> list[str]:
    """The shortest dotted-key suffixes that tell grid keys apart: ``alpha``, not ``task.partition.alpha``."""
    for depth in range(1, max((k.count(".") for k in keys), default=0) + 2):
        names = [".".join(k.split(".")[-depth:]) for k in keys]
        if len(set(names)) == len(names):
            return names
    return keys


def _label(variant: str, names: list[str], point: tuple[Any, ...], seed: int) -> str:
    """``fedavg-alpha0.1-s0``: readable in a legend, safe as a folder name."""
    grid_part = "-".join(f"{name}{_format_value(v)}" for name, v in zip(names, point, strict=True))
    return "-".join(p for p in (variant, grid_part, f"s{seed}") if p)


def expand_sweep(path: str | Path, overrides: list[str] | None = None) -> tuple[SweepSpec, list[SweepRun]]:
    """Every (variant, grid point, seed) as a validated raw scenario, in a stable order.

    ``overrides`` (``-o key=value``) apply to the base scenario; variants and grid values win
    over them, so an override never silently collapses two runs of the grid into one.
    """
    path = Path(path)
    raw = read_yaml(path)
    if set(raw) != {"sweep"}:
        raise ConfigError("sweep", sorted(raw), "a sweep file has exactly one top-level key, 'sweep'")
    try:
        spec = SweepSpec.model_validate(raw["sweep"])
    except ValidationError as exc:
        raise errors_from_validation(exc, prefix="sweep") from None
    base = read_yaml(path.parent / spec.base) if isinstance(spec.base, str) else spec.base
    base = apply_overrides(base, overrides or [])
    keys = list(spec.grid)
    names = _key_names(keys)
    runs = []
    for variant, changes in spec.variants.items():
        for point in itertools.product(*(spec.grid[k] for k in keys)):
            for seed in spec.seeds:
                scenario = dict(base)
                if "algorithm" in changes:
                    scenario["algorithm"] = changes["algorithm"]
                run_overrides = [f"{k}={json.dumps(v)}" for k, v in changes.items() if k != "algorithm"]
                run_overrides += [f"{k}={json.dumps(v)}" for k, v in zip(keys, point, strict=True)]
                run_overrides += [f"seed={seed}", f"name={spec.name}"]
                scenario = apply_overrides(scenario, run_overrides)
                label = _label(variant, names, point, seed)
                try:
                    load_scenario(scenario)
                except (ConfigError, ConfigErrors) as exc:
                    raise ConfigError(f"sweep.variants.{variant}", label, f"invalid run: {exc}") from None
                runs.append(SweepRun(label, scenario))
    _check_unique(runs)
    return spec, runs


def _check_unique(runs: list[SweepRun]) -> None:
    """Two runs with one label would share a folder: the second would overwrite the first."""
    seen: set[str] = set()
    for run in runs:
        if run.label in seen:
            raise ConfigError(
                "sweep.grid", run.label, "two runs get this label; make the grid values distinct"
            )
        seen.add(run.label)


def _run_to_files(
    scenario: dict[str, Any], backend: str | None, label: str = "run"
) -> tuple[str, dict[str, bytes], str | None]:
    """Run one scenario in a scratch directory and return its files (works on any node).

    The scratch folder is named after the run's label: the engine takes a run's id from its
    folder, and the id is what tells sweep runs apart in reports and the dashboard.
    """
    from flsim.api import run
    from flsim.results.writer import RunDiverged

    with tempfile.TemporaryDirectory(prefix="flsim-sweep-") as scratch:
        run_dir = Path(scratch) / label
        error, status = None, "completed"
        try:
            run(scenario, run_dir=run_dir, backend=backend)
        except Exception as exc:  # reported per run; siblings go on
            error = f"{type(exc).__name__}: {exc}"
            status = "diverged" if isinstance(exc, RunDiverged) else "failed"
        files = {
            str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()
        }
    return status, files, error


def _store(run_dir: Path, files: dict[str, bytes]) -> None:
    from flsim.results.writer import atomic_write_bytes

    if run_dir.exists():
        shutil.rmtree(run_dir)
    for name, data in files.items():
        if not name.startswith("."):
            atomic_write_bytes(run_dir / name, data)


def _already_completed(run_dir: Path) -> bool:
    summary = run_dir / "summary.json"
    return summary.exists() and json.loads(summary.read_text()).get("status") == "completed"


def plan_sweep(
    path: str | Path, output_dir: str | Path | None = None, overrides: list[str] | None = None
) -> tuple[SweepSpec, Path, list[SweepRun], list[SweepRun]]:
    """The sweep's spec, results folder, every run, and the runs still to do (``--dry-run``)."""
    spec, runs = expand_sweep(path, overrides)
    root = Path(output_dir) if output_dir else Path(load_scenario(runs[0].scenario).output.dir)
    root = root / spec.name
    return spec, root, runs, [r for r in runs if not _already_completed(root / r.label)]


def run_sweep(
    path: str | Path,
    *,
    backend: str = "local",
    address: str | None = None,
    output_dir: str | Path | None = None,
    progress: str = "off",
    overrides: list[str] | None = None,
) -> list[SweepOutcome]:
    """Run every expanded scenario; ``backend: ray`` runs them as parallel Ray tasks."""
    from flsim.progress import ProgressReporter

    spec, root, runs, todo = plan_sweep(path, output_dir, overrides)
    outcomes = [
        SweepOutcome(r.label, root / r.label, "completed", skipped=True) for r in runs if r not in todo
    ]
    if outcomes:
        log.info("skipped %d of %d runs: already completed under %s", len(outcomes), len(runs), root)
    reporter = ProgressReporter(f"sweep {spec.name}", progress, unit="run")
    reporter.start(len(runs), len(outcomes))

    def finished(run_spec: SweepRun, result: tuple[str, dict[str, bytes], str | None]) -> None:
        """Store a run's files as soon as it ends, so a crash later loses nothing."""
        status, files, error = result
        _store(root / run_spec.label, files)
        if error:
            log.error("run %s failed: %s", run_spec.label, error)
        outcomes.append(SweepOutcome(run_spec.label, root / run_spec.label, status, error))
        reporter.advance(len(outcomes), {})

    if backend == "ray":
        _run_on_ray(todo, address, finished)
    else:
        for run_spec in todo:
            finished(run_spec, _run_to_files(run_spec.scenario, "local", run_spec.label))
    reporter.stop()
    order = {r.label: i for i, r in enumerate(runs)}
    return sorted(outcomes, key=lambda o: order[o.label])


def _run_locally(run_spec: SweepRun) -> tuple[str, dict[str, bytes], str | None]:
    """One sweep run on the embedded backend, inside whatever task runs it."""
    return _run_to_files(run_spec.scenario, "local", run_spec.label)


def _run_on_ray(todo: list[SweepRun], address: str | None, finished: Any) -> None:
    """One Ray task per run (each uses the embedded backend inside its task), stored as each ends."""
    from flsim.backends.ray_tasks import map_on_ray

    def lost(exc: Exception) -> tuple[str, dict[str, bytes], str | None]:
        return "failed", {}, f"{type(exc).__name__}: {exc}"

    map_on_ray(_run_locally, todo, address, finished, lost)
