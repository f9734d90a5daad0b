"""A run directory (DESIGN.md §7): resolved config, streamed metrics, summary, checkpoints.

Every file except the append-only ``metrics.jsonl`` is written atomically (temp file, then
``os.replace``), so a reader never sees a half-written summary or checkpoint. The summary
says ``running`` until the run ends, then ``completed`` or ``failed``.
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
CONFIG = "config.yaml"
CHECKPOINT = "checkpoints/latest.pt"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def _from_json(value: Any) -> Any:
    """Undo :func:`_json_safe` for columnar storage, where a column must have one type."""
    return {"inf": math.inf, "-inf": -math.inf}.get(value, value) if isinstance(value, str) else value


class RunWriter:
    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)

    @property
    def metrics_path(self) -> Path:
        return self.run_dir / METRICS

    def write_config(self, config: dict[str, Any]) -> None:
        atomic_write_text(self.run_dir / CONFIG, yaml.safe_dump(config, sort_keys=False))

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_text(self.run_dir / SUMMARY, json.dumps(summary, indent=2, sort_keys=True) + "\n")

    def append_metrics(self, row: dict[str, Any]) -> None:
        """One JSON line, flushed and fsynced, so a crash loses at most the line being written."""
        line = json.dumps({k: _json_safe(v) for k, v in row.items()}) + "\n"
        with open(self.metrics_path, "a") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    def read_metrics(self) -> list[dict[str, Any]]:
        """Rows written so far, ignoring a trailing partial line left by a crash."""
        if not self.metrics_path.exists():
            return []
        rows = []
        for line in self.metrics_path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break
        return rows

    def truncate_metrics(self, last_round: int) -> None:
        """Keep rows up to ``last_round`` (resume rewinds to the checkpoint)."""
        rows = [row for row in self.read_metrics() if row["round"] <= last_round]
        (self.run_dir / "metrics.parquet").unlink(missing_ok=True)  # stale once rows change
        atomic_write_text(self.metrics_path, "".join(json.dumps(row) + "\n" for row in rows))

    def write_parquet(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = self.read_metrics()
        if not rows:
            return
        keys = list(dict.fromkeys(k for row in rows for k in row))
        table = pa.table({k: [_from_json(row.get(k)) for row in rows] for k in keys})
        sink = io.BytesIO()
        pq.write_table(table, sink)
        atomic_write_bytes(self.run_dir / "metrics.parquet", sink.getvalue())

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        import torch  # here, not at module level: reading results must not import torch

        sink = io.BytesIO()
        torch.save(state, sink)
        atomic_write_bytes(self.run_dir / CHECKPOINT, sink.getvalue())

    def has_checkpoint(self) -> bool:
        return (self.run_dir / CHECKPOINT).exists()

    def load_checkpoint(self) -> dict[str, Any] | None:
        path = self.run_dir / CHECKPOINT
        if not path.exists():
            return None
        import torch

        return torch.load(path, weights_only=False)
