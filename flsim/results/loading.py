"""Read run directories written by the engine back into pandas DataFrames.

A run directory (``<root>/<scenario>/<run-id>/``) holds ``config.yaml``, ``metrics.jsonl``,
``metrics.parquet`` (written only when a run ends) and ``summary.json``. Reports, dashboards,
notebooks and tests all go through this module so that they agree on which file wins, how a
crashed run's half-written last line is treated and what the bookkeeping columns are called.

Reading is columnar: each run's metrics become one Arrow table (parquet directly, the jsonl
log through Arrow's JSON reader with a tolerant Python fallback), the tables are concatenated
once and the per-run identity columns are attached with a single vectorised ``take``. That
keeps a report over hundreds of runs in the seconds range; the per-run cost is a few file
reads, never a Python loop over metric rows.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from flsim.config.bounds import INT64_MAX
from flsim.config.errors import ConfigError, clip, echo
from flsim.config.yamlsafe import load_file
from flsim.results.writer import config_hash

log = logging.getLogger(__name__)

METRICS_JSONL = "metrics.jsonl"
METRICS_PARQUET = "metrics.parquet"
CONFIG_FILE = "config.yaml"
SUMMARY_FILE = "summary.json"

#: One row per run: identity, status and a few config values flattened for grouping/labels.
RUN_COLUMNS: list[str] = [
    "scenario",
    "algorithm",
    "seed",
    "run_id",
    "status",
    "config_hash",
    "tags",
    "notes",
    "dataset",
    "partition",
    "alpha",
    "num_clients",
    "model",
    "lr",
    "run_dir",
]

#: Prefix given to a metric column whose name is also a run column (``alpha`` → ``metric.alpha``).
METRIC_CLASH_PREFIX = "metric."

#: Metric columns every engine row carries (others are optional or algorithm specific).
CORE_METRICS: list[str] = [
    "round",
    "virtual_time",
    "wall_time",
    "events",
    "bytes_up",
    "bytes_down",
    "bytes_total",
    "grad_evals",
    "train_loss",
    "test_loss",
]

PathLike = str | os.PathLike[str]

#: Largest ``summary.json`` read back: the engine writes a few kilobytes.
MAX_SUMMARY_BYTES = 1 << 20


class DamagedRun(ValueError):
    """A run directory whose ``summary.json`` or ``config.yaml`` is not a run's.

    Readers skip such a run with a warning (shown in reports and the dashboard) instead of
    failing for every run of the directory: one damaged run must not hide the others.
    """


def _is_run_dir(path: Path) -> bool:
    return (path / METRICS_JSONL).is_file() or (path / METRICS_PARQUET).is_file()


def find_run_dirs(paths: PathLike | Iterable[PathLike]) -> list[Path]:
    """Every run directory at or below ``paths``, deduplicated and in a stable sorted order.

    Each path may be a run directory itself, a scenario directory or a whole results root, so
    that the CLI and notebooks can be pointed at whatever level is at hand. The walk does not
    descend into a run directory (its checkpoints are not runs). A missing path is an error
    rather than an empty result, because an empty report would hide a typo.
    """
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    found: set[Path] = set()
    for raw in paths:
        root = Path(raw)
        if not root.exists():
            raise FileNotFoundError(f"results path does not exist: {root}")
        if _is_run_dir(root):
            found.add(root.resolve())
            continue
        for dirpath, dirnames, _files in os.walk(root):
            current = Path(dirpath)
            if _is_run_dir(current):
                found.add(current.resolve())
                dirnames.clear()
            else:
                dirnames.sort()
    return sorted(found)


def _parse_jsonl_lines(text: str, path: Path) -> list[dict[str, Any]]:
    """Complete JSON-object lines of ``text``; damaged lines are dropped with a warning."""
    rows: list[dict[str, Any]] = []
    lines = text.split("\n")
    for lineno, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped:
            continue
        try:
            row = json.loads(stripped)
        except json.JSONDecodeError:
            row = None
        if not isinstance(row, dict):
            where = "truncated last line" if lineno >= len(lines) - 1 else f"malformed line {lineno}"
            log.warning("%s: ignoring %s", path, where)
            continue
        rows.append(row)
    return rows


def read_metrics_jsonl(path: Path) -> pd.DataFrame:
    """Parse ``metrics.jsonl``, skipping lines that are not complete JSON objects.

    A run killed mid-write leaves a partial last line; a resumed run may then append after
    it, so a damaged line can also sit in the middle. Such lines are dropped with a warning
    instead of failing the whole report.
    """
    text = path.read_text(encoding="utf-8", errors="replace")
    return pd.DataFrame.from_records(_parse_jsonl_lines(text, path))


def _jsonl_table(path: Path) -> pa.Table:
    """Arrow's JSON reader for the common clean file; the tolerant parser for anything else.

    Arrow rejects a truncated line and a column mixing numbers with the ``"inf"`` strings
    that the writer uses for non-finite floats, so either falls back to :func:`read_metrics_jsonl`.
    """
    import pyarrow.json as pa_json

    try:
        return pa_json.read_json(path)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError):
        frame = read_metrics_jsonl(path)
        return _normalise_metrics(frame).pipe(pa.Table.from_pandas, preserve_index=False)


def _read_metrics_table(run_dir: Path) -> pa.Table:
    """Prefer parquet (exact dtypes, complete by construction); fall back to the jsonl log."""
    import pyarrow.parquet as pq

    parquet = run_dir / METRICS_PARQUET
    jsonl = run_dir / METRICS_JSONL
    if parquet.is_file():
        try:
            return pq.read_table(parquet)
        except Exception as exc:  # any unreadable parquet should fall back, not abort
            if not jsonl.is_file():
                raise
            log.warning("%s: unreadable (%s); reading %s instead", parquet, exc, jsonl.name)
    if not jsonl.is_file() or jsonl.stat().st_size == 0:
        return pa.table({})
    return _jsonl_table(jsonl)


def _metrics_or_damaged(run_dir: Path) -> pa.Table:
    """:func:`_read_metrics_table`, with any failure to read turned into :class:`DamagedRun`."""
    try:
        return _read_metrics_table(run_dir)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise DamagedRun(f"{run_dir}: unreadable metrics ({clip(str(exc), 80)})") from None


def _read_metrics(run_dir: Path) -> pd.DataFrame:
    """One run's metric rows as pandas (see :func:`_read_metrics_table`)."""
    return _read_metrics_table(run_dir).to_pandas()


def _read_yaml(path: Path) -> dict[str, Any]:
    """A run's config (``{}`` if absent), through the bounded loader: results may be shared.

    Raises :class:`DamagedRun` for a file that is not UTF-8, not YAML, over the loader's
    bounds or not a mapping.
    """
    if not path.is_file():
        return {}
    try:
        data = load_file(path, path.name)
    except ConfigError as exc:
        raise DamagedRun(f"{path}: {exc.reason}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DamagedRun(f"{path}: not a mapping")
    return data


def _read_json(path: Path) -> dict[str, Any]:
    """A run's summary (``{}`` if absent or still empty); :class:`DamagedRun` if unreadable."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_SUMMARY_BYTES + 1)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return {}
    except OSError as exc:
        raise DamagedRun(f"{path}: {exc.strerror}") from None
    if not raw:
        return {}
    if len(raw) > MAX_SUMMARY_BYTES:
        raise DamagedRun(f"{path}: larger than {MAX_SUMMARY_BYTES} bytes")
    try:
        data = json.loads(raw.decode("utf-8"))
    except ValueError as exc:  # not UTF-8, or not JSON
        raise DamagedRun(f"{path}: not a JSON summary ({clip(str(exc), 80)})") from None
    if not isinstance(data, dict):
        raise DamagedRun(f"{path}: not a JSON object")
    return data


def comparable_config(run_dir: PathLike) -> dict[str, Any]:
    """A run's config flattened to dotted keys, without bookkeeping (versions, output dir).

    What the dashboard groups by and diffs: lists and mappings become JSON text so that
    every value compares and displays as one scalar.
    """
    flat = flatten_config(_read_yaml(Path(run_dir) / CONFIG_FILE))
    return {
        key: json.dumps(value, sort_keys=True) if isinstance(value, list | dict) else value
        for key, value in flat.items()
        if not key.startswith(("versions.", "output."))
    }


def _get(mapping: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(mapping, dict):
            return None
        mapping = mapping.get(key)
    return mapping


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def flatten_config(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"task": {"partition": {"alpha": 0.3}}}`` → ``{"task.partition.alpha": 0.3}``.

    Lists stay values (a list of hidden sizes is one setting, not several). Used for grouping
    by any dotted config key and for the run table's "differs from the others" column.
    """
    flat: dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten_config(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def config_value(config: dict[str, Any], dotted: str) -> Any:
    """The value at ``dotted`` in a nested config, or ``None`` where any level is missing."""
    return _get(config, *dotted.split("."))


def _checked_seed(run_dir: Path, seed: Any) -> int | None:
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= INT64_MAX:
        raise DamagedRun(f"{run_dir}: seed {echo(seed)} is not an integer in 0..2**63-1")
    return seed


def _checked_text(run_dir: Path, summary: dict[str, Any], key: str) -> None:
    value = summary.get(key)
    if value is not None and not isinstance(value, str | int | float):
        raise DamagedRun(f"{run_dir}: summary {key} {echo(value)} is not a scalar")


def _labels(run_dir: Path, tags: Any) -> str:
    """A run's tags as one comma-separated cell (a list does not fit a table column)."""
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise DamagedRun(f"{run_dir}: tags {echo(tags)} are not a list of strings")
    return ", ".join(tags)


def _info(run_dir: Path, config: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    algorithm = config.get("algorithm")
    algo_name = algorithm.get("name") if isinstance(algorithm, dict) else algorithm
    seed = _checked_seed(run_dir, _first(summary.get("seed"), config.get("seed")))
    for key in ("name", "algorithm", "run_id", "status"):
        _checked_text(run_dir, summary, key)
    return {
        "scenario": str(_first(summary.get("name"), config.get("name"), run_dir.parent.name)),
        "algorithm": str(_first(summary.get("algorithm"), algo_name, "unknown")),
        "seed": seed,
        "run_id": str(_first(summary.get("run_id"), run_dir.name)),
        "status": str(_first(summary.get("status"), "unknown")),
        "config_hash": config_hash(config),
        "tags": _labels(run_dir, _first(config.get("tags"), summary.get("tags"), [])),
        "notes": str(_first(config.get("notes"), summary.get("notes"), "")),
        "dataset": _get(config, "task", "dataset"),
        "partition": _get(config, "task", "partition", "kind"),
        "alpha": _get(config, "task", "partition", "alpha"),
        "num_clients": _get(config, "task", "num_clients"),
        "model": _get(config, "task", "model", "name"),
        "lr": _get(config, "algorithm", "lr"),
        "run_dir": str(run_dir),
    }


def run_info(run_dir: PathLike) -> dict[str, Any]:
    """Identity and flattened config of one run, from ``summary.json`` then ``config.yaml``.

    The summary is preferred for identity (it is what the engine decided), the config fills
    gaps, and the directory layout is the last resort so that a run without either file is
    still listed rather than dropped.
    """
    run_dir = Path(run_dir)
    return _info(run_dir, _read_yaml(run_dir / CONFIG_FILE), _read_json(run_dir / SUMMARY_FILE))


def wall_seconds(summary: dict[str, Any]) -> float | None:
    """Total wall-clock seconds the engine recorded for a run (``None`` while it runs)."""
    timings = summary.get("timings")
    if not isinstance(timings, dict):
        return None
    value = _first(timings.get("wall_seconds"), timings.get("total_s"))
    return float(value) if isinstance(value, int | float) else None


def _typed_run_table(records: list[dict[str, Any]]) -> pd.DataFrame:
    table = pd.DataFrame.from_records(records, columns=RUN_COLUMNS)
    table["seed"] = pd.array(table["seed"], dtype="Int64")
    table["num_clients"] = pd.array(table["num_clients"], dtype="Int64")
    for col in ("alpha", "lr"):
        table[col] = pd.to_numeric(table[col], errors="coerce").astype("float64")
    return table


def load_run_table(paths: PathLike | Iterable[PathLike]) -> pd.DataFrame:
    """One row per run (see :data:`RUN_COLUMNS`), including runs with no metric rows yet.

    Kept separate from :func:`load_runs` because a run that failed before its first
    evaluation has no metric rows but must still appear in a report's table. Damaged runs
    are skipped with a warning.
    """
    infos = []
    for run_dir in find_run_dirs(paths):
        try:
            infos.append(run_info(run_dir))
        except DamagedRun as exc:
            log.warning("skipped a damaged run: %s", exc)
    return _typed_run_table(infos)


def _normalise_metrics(df: pd.DataFrame) -> pd.DataFrame:
    """Numeric dtypes for metric columns and the derived ``bytes_total`` / ``communications``.

    ``communications`` (messages sent) is the x axis of decentralized and asynchronous
    comparisons; an engine that does not record it separately counts one message per event,
    so it falls back to ``events`` row by row.
    """
    for col in df.columns:
        # Object or string columns: the writer spells non-finite floats "inf" / "-inf" in jsonl,
        # and Arrow's JSON reader types a column that starts null and then holds "inf" as string.
        if df[col].dtype == object or pd.api.types.is_string_dtype(df[col].dtype):
            converted = pd.to_numeric(df[col], errors="coerce")
            # Keep genuinely non-numeric extras (e.g. a string tag) as they are.
            if converted.notna().sum() >= df[col].notna().sum():
                df[col] = converted
    if "round" in df.columns and len(df) and df["round"].notna().all():
        df["round"] = df["round"].astype("int64")
    if "bytes_up" in df.columns or "bytes_down" in df.columns:
        up = df["bytes_up"] if "bytes_up" in df.columns else pd.Series(0, index=df.index)
        down = df["bytes_down"] if "bytes_down" in df.columns else pd.Series(0, index=df.index)
        df["bytes_total"] = up.add(down, fill_value=0)
    if "events" in df.columns:
        df["communications"] = (
            df["communications"].fillna(df["events"]) if "communications" in df.columns else df["events"]
        )
    return df


@dataclass
class Results:
    """Everything a report needs, read in one pass over the run directories.

    ``runs`` has one row per run (:data:`RUN_COLUMNS` plus ``wall_seconds`` and ``rows``);
    ``metrics`` is the long frame of :func:`load_runs`; ``configs`` maps each ``run_dir`` to
    its resolved (nested) config and ``summaries`` to its ``summary.json``.
    """

    runs: pd.DataFrame
    metrics: pd.DataFrame
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    summaries: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: One line per run directory that was skipped as damaged (see :class:`DamagedRun`).
    warnings: list[str] = field(default_factory=list)


def _empty_metrics() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="float64") for c in RUN_COLUMNS + CORE_METRICS})


def _rename_clashing(metrics: pd.DataFrame) -> pd.DataFrame:
    """Metric columns named like a run column (a logged ``alpha``) move to ``metric.<name>``.

    The run columns come from the config and label every row, so they keep the plain name;
    the metric keeps its values under :data:`METRIC_CLASH_PREFIX` (repeated while that name
    is taken too), so nothing a run logged is lost. One warning lists every rename.
    """
    renames: dict[str, str] = {}
    taken = set(metrics.columns) | set(RUN_COLUMNS)
    for col in metrics.columns:
        if col in RUN_COLUMNS:
            new = METRIC_CLASH_PREFIX + col
            while new in taken:
                new = METRIC_CLASH_PREFIX + new
            taken.add(new)
            renames[col] = new
    if renames:
        log.warning("metric columns named like run columns were renamed: %s", renames)
        metrics = metrics.rename(columns=renames)
    return metrics


def _concat_metrics(tables: list[pa.Table], run_index: list[int], runs: pd.DataFrame) -> pd.DataFrame:
    """Concatenate per-run Arrow tables and attach run columns with one vectorised take."""
    lengths = np.array([t.num_rows for t in tables], dtype=np.int64)
    try:
        combined = pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        # Incompatible types across runs (e.g. a string extra in one, a float in another):
        # let pandas reconcile them column by column instead.
        metrics = pd.concat([t.to_pandas() for t in tables], ignore_index=True, sort=False)
    else:
        metrics = combined.to_pandas()
    metrics = _rename_clashing(_normalise_metrics(metrics))
    meta = runs[RUN_COLUMNS].take(np.repeat(np.asarray(run_index), lengths)).reset_index(drop=True)
    return pd.concat([meta, metrics], axis=1)


def load_results(paths: PathLike | Iterable[PathLike]) -> Results:
    """Read every run under ``paths`` once: run table, metric rows, configs and summaries."""
    infos: list[dict[str, Any]] = []
    configs: dict[str, dict[str, Any]] = {}
    summaries: dict[str, dict[str, Any]] = {}
    tables: list[pa.Table] = []
    run_index: list[int] = []
    warnings: list[str] = []
    for run_dir in find_run_dirs(paths):
        try:
            config = _read_yaml(run_dir / CONFIG_FILE)
            summary = _read_json(run_dir / SUMMARY_FILE)
            info = _info(run_dir, config, summary)
            table = _metrics_or_damaged(run_dir)
        except DamagedRun as exc:
            log.warning("skipped a damaged run: %s", exc)
            warnings.append(f"skipped a damaged run: {clip(str(exc), 300)}")
            continue
        i = len(infos)
        info["wall_seconds"] = wall_seconds(summary)
        info["rows"] = table.num_rows
        infos.append(info)
        configs[info["run_dir"]] = config
        summaries[info["run_dir"]] = summary
        if table.num_rows == 0:
            log.info("%s: no metric rows yet", run_dir)
            continue
        tables.append(table)
        run_index.append(i)
    runs = _typed_run_table(infos)
    runs["wall_seconds"] = pd.to_numeric(pd.Series([i["wall_seconds"] for i in infos], dtype=object))
    runs["rows"] = pd.array([i["rows"] for i in infos], dtype="int64")
    metrics = _concat_metrics(tables, run_index, runs) if tables else _empty_metrics()
    return Results(runs=runs, metrics=metrics, configs=configs, summaries=summaries, warnings=warnings)


def load_runs(paths: PathLike | Iterable[PathLike]) -> pd.DataFrame:
    """All evaluation rows of every run under ``paths`` as one long DataFrame.

    Columns: :data:`RUN_COLUMNS` (identity and flattened config, repeated on each row), then
    the metric columns in the order the engine wrote them plus ``bytes_total`` and
    ``communications``. Rows keep the file order within a run; runs are ordered by directory.
    A run with no metric rows contributes nothing here (use :func:`load_run_table` to list it).
    """
    return load_results(paths).metrics
