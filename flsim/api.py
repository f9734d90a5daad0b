"""The Python API behind the CLI: ``flsim.run(config_or_path)`` and ``flsim.load_runs(path)``."""

from __future__ import annotations

import datetime as dt
import logging
import platform
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flsim.config.errors import ConfigError
from flsim.config.loading import read_yaml
from flsim.config.schema import Scenario
from flsim.progress import ProgressReporter
from flsim.results.integrity import check_resumable
from flsim.results.writer import CONFIG, RunDiverged, RunWriter, config_hash, config_identity
from flsim.scenario import load_scenario

log = logging.getLogger("flsim")


@dataclass
class RunResult:
    run_dir: Path
    summary: dict[str, Any]

    @property
    def final(self) -> dict[str, Any]:
        return self.summary["final"]


def versions() -> dict[str, str]:
    import numpy
    import torch

    import flsim

    return {
        "flsim": flsim.__version__,
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "numpy": str(numpy.__version__),
    }


def resolved_config(scenario: Scenario) -> dict[str, Any]:
    """The scenario with every default filled in, algorithm hyperparameters included."""
    from flsim.algorithms import parse_algorithm_config

    data = scenario.model_dump(mode="json")
    if scenario.kind == "federated":
        data["algorithm"] = parse_algorithm_config(scenario.algorithm).model_dump(mode="json")
    return data


def new_run_dir(scenario: Scenario) -> Path:
    """Create and return a fresh run directory.

    ``mkdir`` without ``exist_ok`` is the claim: of several processes started in the same
    second, each gets its own directory (an ``exists()`` test then ``mkdir`` would let them
    share one).
    """
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    algorithm = scenario.algorithm.get("name", scenario.kind)
    base = Path(scenario.output.dir) / scenario.name / f"{stamp}-{algorithm}-s{scenario.seed}"
    _make_dirs(base.parent, "output.dir")
    candidate, suffix = base, 1
    while True:
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            suffix += 1
            candidate = base.with_name(f"{base.name}-{suffix}")
        except OSError as exc:
            raise ConfigError("output.dir", scenario.output.dir, _os_reason(exc)) from None


def _os_reason(exc: OSError) -> str:
    return f"cannot create the run directory: {exc.strerror or type(exc).__name__}"


def _make_dirs(path: Path, key: str) -> None:
    """``mkdir -p`` whose failure (a file in the way, no permission) is the user's to fix."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(key, str(path), _os_reason(exc)) from None


def _explicit_run_dir(run_dir: str | Path) -> Path:
    """``--run-dir``: a new or empty-of-runs directory, never a file such as ``/dev/null``."""
    target = Path(run_dir)
    if target.exists() and not target.is_dir():
        raise ConfigError("--run-dir", str(target), "exists and is not a directory")
    if (target / "summary.json").exists():
        raise ConfigError("--run-dir", str(target), "already holds a run; use --resume to continue it")
    _make_dirs(target, "--run-dir")
    return target


def _apply_cli_backend(scenario: Scenario, backend: str | None, address: str | None) -> Scenario:
    updates: dict[str, Any] = {}
    if backend is not None:
        updates["kind"] = backend
    if address is not None:
        updates["address"] = address
        updates.setdefault("kind", "ray")
    if not updates:
        return scenario
    raw = scenario.model_dump(mode="json", exclude_unset=True)
    raw.setdefault("backend", {}).update(updates)
    return load_scenario(raw)


def run(
    config: str | Path | dict[str, Any] | Scenario,
    overrides: list[str] | None = None,
    *,
    run_dir: str | Path | None = None,
    backend: str | None = None,
    address: str | None = None,
    progress: str = "off",
) -> RunResult:
    """Validate a scenario, simulate it, and write a complete run directory.

    Validation happens before anything is written: a bad scenario raises
    :class:`ConfigError` and leaves no run directory behind.
    """
    if isinstance(config, Scenario):
        scenario = load_scenario(config.model_dump(mode="json"), overrides)
    else:
        scenario = load_scenario(config, overrides)
    scenario = _apply_cli_backend(scenario, backend, address)
    task = _prepare_task(scenario)  # an infeasible partition is a ConfigError: no directory yet
    if scenario.backend.kind == "ray":  # a wrong address is a ConfigError: no directory either
        from flsim.backends.ray_backend import check_ray_address

        check_ray_address(scenario.backend.address, scenario.backend.connect_timeout_s)
    target = _explicit_run_dir(run_dir) if run_dir is not None else new_run_dir(scenario)
    config_data = resolved_config(scenario)
    writer = RunWriter(target, config_identity(config_data, scenario.seed))
    writer.write_config({**config_data, "versions": versions()})
    return _execute(scenario, writer, progress, resumed=False, task=task)


def _prepare_task(scenario: Scenario) -> Any:
    """The run's task, built before its directory exists (``None`` for a study).

    Some problems show only once the data is there (a partition that cannot give every
    client ``min_size`` samples, a corrupt MNIST file); building first makes them
    configuration errors that leave nothing behind.
    """
    if scenario.kind != "federated":
        return None
    from flsim.hosts.client_host import configure_torch
    from flsim.hosts.vectorized import check_vectorized_model
    from flsim.tasks import build_task

    configure_torch(scenario.backend.torch_threads)
    task = build_task(scenario.task, scenario.seed)
    check_vectorized_model(scenario, task)  # backend.vectorize: on with an unbatchable model
    return task


def resume(run_dir: str | Path, *, progress: str = "off") -> RunResult:
    """Continue a killed run from its last checkpoint; the result is bit-identical.

    Everything in the directory is checked before anything is written to it: a damaged or
    foreign checkpoint, or metric rows that are missing or inconsistent with it, stop the
    resume with a :class:`ConfigError` saying how to recover, instead of a run that ends
    ``completed`` with rows missing.
    """
    target = Path(run_dir)
    if not target.is_dir() or not (target / CONFIG).is_file():
        raise ConfigError("--resume", str(target), "is not a run directory (no config.yaml)")
    raw = read_yaml(target / CONFIG)
    raw.pop("versions", None)
    scenario = load_scenario(raw)
    writer = RunWriter(target, config_identity(resolved_config(scenario), scenario.seed))
    check_resumable(scenario, writer, writer.load_checkpoint())
    task = _prepare_task(scenario)
    for stale in writer.remove_stale_temp_files():
        log.info("removed %s, left by a killed writer", stale)
    return _execute(scenario, writer, progress, resumed=True, task=task)


def _execute(scenario: Scenario, writer: RunWriter, progress: str, resumed: bool, task: Any) -> RunResult:
    """Run a validated scenario into ``writer``'s directory, keeping ``summary.json`` current."""
    started = time.time()
    summary = {
        "name": scenario.name,
        "run_id": writer.run_dir.name,
        "algorithm": scenario.algorithm.get("name")
        if scenario.kind == "federated"
        else scenario.study.get("name"),
        "seed": scenario.seed,
        "backend": scenario.backend.kind,
        "config_hash": config_hash(resolved_config(scenario)),
        "tags": scenario.tags,
        "notes": scenario.notes,
    }
    writer.write_summary({**summary, "status": "running"})
    try:
        final = _simulate(scenario, writer, progress, resumed, task, summary)
        writer.write_parquet()
    except RunDiverged as exc:
        writer.write_parquet()
        rows = writer.read_metrics()
        writer.write_summary(
            {
                **summary,
                "status": "diverged",
                "diverged": {"round": exc.round, "metric": exc.metric, "value": str(exc.value)},
                "final": rows[-1] if rows else {},
                "error": f"{type(exc).__name__}: {exc}",
            }
        )
        raise
    except BaseException as exc:
        writer.write_summary(
            {
                **summary,
                "status": "failed",
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(),
            }
        )
        raise
    timings = {"wall_seconds": time.time() - started, "resumed": resumed}
    result = {**summary, "status": "completed", "final": final, "timings": timings}
    writer.write_summary(result)
    return RunResult(writer.run_dir, result)


def _simulate(
    scenario: Scenario, writer: RunWriter, progress: str, resumed: bool, task: Any, summary: dict[str, Any]
) -> dict[str, Any]:
    """A study, or a federated run on the driver its mode maps to; returns the last row."""
    from flsim.hosts.client_host import configure_torch

    configure_torch(scenario.backend.torch_threads)
    if scenario.kind == "study":
        from flsim.studies.runner import run_study

        writer.truncate_metrics(-1)
        writer.stop_on_divergence = False
        summary.update(run_study(scenario, writer))
        return writer.read_metrics()[-1]
    from flsim.engine.modes import execute

    reporter = ProgressReporter(f"{scenario.name}:{summary['algorithm']}", progress)
    return execute(scenario, task, writer, reporter, resumed, summary)


def replay_run(source: str | Path, run_dir: str | Path) -> RunResult:
    """Re-run a wall-clock run's realised event log on the virtual-time engine."""
    from flsim.engine.event_driver import replay_file
    from flsim.tasks import build_task

    source = Path(source)
    log_path = source / "events.jsonl"
    if not log_path.exists():
        raise ConfigError("replay", str(source), "has no events.jsonl (only time: wall runs record one)")
    raw = read_yaml(source / CONFIG)
    raw.pop("versions", None)
    scenario = load_scenario(raw)

    def open_writer() -> RunWriter:
        writer = RunWriter(Path(run_dir))
        writer.write_config({**resolved_config(scenario), "versions": versions()})
        return writer

    writer = replay_file(scenario, build_task(scenario.task, scenario.seed), log_path, open_writer)
    writer.write_parquet()
    summary = {
        "name": scenario.name,
        "run_id": writer.run_dir.name,
        "status": "completed",
        "algorithm": scenario.algorithm.get("name"),
        "seed": scenario.seed,
        "replay_of": str(source),
        "final": writer.read_metrics()[-1],
    }
    writer.write_summary(summary)
    return RunResult(writer.run_dir, summary)


def load_runs(path: str | Path) -> Any:
    """All runs under ``path`` as one long pandas DataFrame (see ``flsim.results.loading``)."""
    from flsim.results.loading import load_runs as _load

    return _load(path)
