"""Incremental, read-only view of a results directory for the live dashboard.

The dashboard polls every couple of seconds while runs are writing, so re-reading every
``metrics.jsonl`` from the start on each poll would cost O(rows) per run per poll. The store
instead remembers, per run, how many bytes of the log it has parsed and reads only what was
appended since; a trailing partial line (a write in progress) is left for the next poll. A
file that shrank or was replaced (``flsim run --resume`` rewinds the log atomically) is
re-read from the start and its row counter restarts, which the API reports as a reset.

Runs are addressed by an opaque id (a hash of the run's path relative to the root), never by
a client-supplied path, so the metrics API cannot be pointed at anything outside the root.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flsim.config.errors import clip
from flsim.results.loading import (
    CONFIG_FILE,
    METRICS_JSONL,
    METRICS_PARQUET,
    SUMMARY_FILE,
    DamagedRun,
    _read_json,
    comparable_config,
    find_run_dirs,
    run_info,
)

log = logging.getLogger(__name__)

#: Columns derived on the server so that every run offers the same x axes.
DERIVED = ("bytes_total", "communications")
#: Most rows one metrics response carries; the page asks again from ``next`` for the rest.
MAX_ROWS_PER_RESPONSE = 5000
#: Most bytes of a metrics log read per refresh, and the longest line kept (an engine row is
#: well under a kilobyte; anything longer was not written by a run).
MAX_READ_BYTES = 8 << 20
MAX_LINE_BYTES = 64 << 10
#: Most keys of a row kept in ``/api/runs`` (its ``last`` entry).
MAX_LAST_KEYS = 200


def run_id_for(rel: str) -> str:
    """The opaque, stable id of the run at ``rel`` (path relative to the results root)."""
    return hashlib.sha1(rel.encode("utf-8")).hexdigest()[:12]


def _derive(row: dict[str, Any]) -> dict[str, Any]:
    """Add ``bytes_total`` and ``communications`` (= ``events`` unless recorded) to a row."""
    up, down = row.get("bytes_up"), row.get("bytes_down")
    if "bytes_total" not in row and isinstance(up, int | float) and isinstance(down, int | float):
        row["bytes_total"] = up + down
    if row.get("communications") is None and "events" in row:
        row["communications"] = row["events"]
    return row


def _json_value(value: Any) -> Any:
    """Non-finite floats as the writer spells them in jsonl (JSON has no NaN or ∞)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


@dataclass
class RunState:
    """What the store knows about one run directory."""

    id: str
    rel: str
    path: Path
    info: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    #: The flattened config the page groups by and diffs (see ``comparable_config``).
    config: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    columns: dict[str, None] = field(default_factory=dict)  # ordered set of metric names
    #: Why the run is skipped (its summary or config is damaged); ``None`` when it is fine.
    damaged: str | None = None
    generation: int = 0  # bumped whenever rows restart from zero
    _offset: int = 0
    _inode: int | None = None
    _summary_mtime: float | None = None
    _config_mtime: float | None = None
    _parquet_mtime: float | None = None

    # -- refresh -------------------------------------------------------------------------------
    def refresh(self) -> None:
        self._refresh_identity()
        self._refresh_metrics()

    def _refresh_identity(self) -> None:
        summary_path, config_path = self.path / SUMMARY_FILE, self.path / CONFIG_FILE
        s_mtime = _mtime(summary_path)
        c_mtime = _mtime(config_path)
        if s_mtime != self._summary_mtime or c_mtime != self._config_mtime or not self.info:
            self._summary_mtime, self._config_mtime = s_mtime, c_mtime
            try:
                self.summary = _read_json(summary_path)
                self.info = run_info(self.path)
                self.config = comparable_config(self.path)
            except DamagedRun as exc:
                self.damaged = clip(str(exc), 300)
                self.summary, self.info, self.config = {}, {}, {}
                return
            self.damaged = None

    def _reset(self) -> None:
        self.rows, self.columns = [], {}
        self._offset = 0
        self.generation += 1

    def _append(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            _derive(row)
            for key in row:
                self.columns.setdefault(key, None)
        self.rows.extend(rows)

    def _refresh_metrics(self) -> None:
        jsonl = self.path / METRICS_JSONL
        try:
            stat = jsonl.stat()
        except FileNotFoundError:
            self._refresh_from_parquet()
            return
        if self._inode is not None and (stat.st_ino != self._inode or stat.st_size < self._offset):
            log.info("%s: metrics log was rewritten; re-reading it", jsonl)
            self._reset()
        self._inode = stat.st_ino
        if stat.st_size == self._offset:
            return
        with jsonl.open("rb") as fh:
            fh.seek(self._offset)
            chunk = fh.read(min(stat.st_size - self._offset, MAX_READ_BYTES))
        end = chunk.rfind(b"\n")
        if end < 0:
            if len(chunk) == MAX_READ_BYTES:  # one line longer than a read: not a metrics row
                log.warning("%s: skipping a line longer than %d bytes", jsonl, MAX_READ_BYTES)
                self._offset += len(chunk)
            return  # only a partial line so far
        complete = chunk[: end + 1]
        self._offset += len(complete)
        rows = []
        for line in complete.decode("utf-8", errors="replace").splitlines():
            if not line.strip():
                continue
            if len(line) > MAX_LINE_BYTES:
                log.warning("%s: skipping a line of %d characters", jsonl, len(line))
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                log.warning("%s: ignoring a malformed line", jsonl)
                continue
            if isinstance(row, dict):
                rows.append(row)
        self._append(rows)

    def _refresh_from_parquet(self) -> None:
        parquet = self.path / METRICS_PARQUET
        mtime = _mtime(parquet)
        if mtime is None or mtime == self._parquet_mtime:
            return
        import pyarrow.parquet as pq

        self._parquet_mtime = mtime
        self._reset()
        table = pq.read_table(parquet)
        rows = [{k: _json_value(v) for k, v in row.items()} for row in table.to_pylist()]
        self._append(rows)

    # -- views ---------------------------------------------------------------------------------
    @property
    def status(self) -> str:
        return str(self.info.get("status", "unknown"))

    def describe(self) -> dict[str, Any]:
        """The run's entry in ``/api/runs``."""
        last = dict(list(self.rows[-1].items())[:MAX_LAST_KEYS]) if self.rows else {}
        return {
            "id": self.id,
            "path": self.rel,
            "scenario": self.info.get("scenario"),
            "algorithm": self.info.get("algorithm"),
            "seed": self.info.get("seed"),
            "run_id": self.info.get("run_id"),
            "config_hash": self.info.get("config_hash"),
            "tags": self.info.get("tags"),
            "config": self.config,
            "status": self.status,
            "study": self.summary.get("study") if isinstance(self.summary, dict) else None,
            "rows": len(self.rows),
            "generation": self.generation,
            "metrics": list(self.columns),
            "last": last,
            "updated": max(
                filter(None, [self._summary_mtime, _mtime(self.path / METRICS_JSONL)]), default=None
            ),
            "files": sorted(
                p.name for p in self.path.iterdir() if p.is_file() and not p.name.startswith(".")
            ),
        }

    def metrics_since(self, since: int) -> dict[str, Any]:
        """Rows ``since..`` as columns; ``reset`` when ``since`` is past the end (log rewound)."""
        reset = since > len(self.rows)
        start = 0 if reset else since
        rows = self.rows[start : start + MAX_ROWS_PER_RESPONSE]
        names = list(self.columns)
        return {
            "id": self.id,
            "since": start,
            "next": start + len(rows),
            "reset": reset,
            "generation": self.generation,
            "status": self.status,
            "columns": {name: [row.get(name) for row in rows] for name in names},
        }


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return None


class RunStore:
    """All runs under ``root``; rescans the tree at most every ``scan_interval`` seconds."""

    def __init__(self, root: str | os.PathLike[str], scan_interval: float = 1.0) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise FileNotFoundError(f"results directory does not exist: {self.root}")
        self.scan_interval = scan_interval
        self._runs: dict[str, RunState] = {}
        self._scanned_at = -math.inf

    def _scan(self) -> None:
        found: dict[str, RunState] = {}
        for path in find_run_dirs(self.root):
            if not path.is_relative_to(self.root):  # a symlink out of the root: not ours to serve
                log.warning("%s: outside %s, skipped", path, self.root)
                continue
            rel = path.relative_to(self.root).as_posix() or "."
            rid = run_id_for(rel)
            found[rid] = self._runs.get(rid) or RunState(id=rid, rel=rel, path=path)
        self._runs = found
        self._scanned_at = time.monotonic()

    def refresh(self, force: bool = False) -> None:
        if force or time.monotonic() - self._scanned_at >= self.scan_interval:
            self._scan()
        for run in self._runs.values():
            try:
                run.refresh()
            except OSError as exc:  # a run deleted or being moved mid-poll
                log.info("%s: %s", run.path, exc)

    def runs(self) -> list[RunState]:
        """Every readable run; damaged ones are left out (see :meth:`warnings`)."""
        self.refresh()
        return sorted((r for r in self._runs.values() if r.damaged is None), key=lambda r: r.rel)

    def warnings(self) -> list[str]:
        """One line per damaged run left out of :meth:`runs`, for the page to show."""
        return [f"skipped a damaged run: {r.damaged}" for r in self._runs.values() if r.damaged]

    def get(self, run_id: str) -> RunState | None:
        run = self._runs.get(run_id)
        if run is None:
            self.refresh(force=True)
            run = self._runs.get(run_id)
        if run is not None:
            run.refresh()
        return run if run is not None and run.damaged is None else None
