"""A run directory (docs/architecture.md §7): resolved config, streamed metrics, summary, checkpoints.

Every file except the append-only ``metrics.jsonl`` is written atomically (temp file, then
``os.replace``), so a reader never sees a half-written summary or checkpoint. The summary
says ``running`` until the run ends, then ``completed``, ``diverged`` or ``failed``.

A run directory may sit on shared storage, so nothing read back from it is trusted: a
checkpoint holds only tensors and plain containers and is loaded with ``weights_only=True``
(a planted pickle cannot run code), it names the run it belongs to (config hash and seed),
and a damaged file is reported as a :class:`ConfigError` naming it instead of a traceback.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import secrets
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from flsim.config.errors import ConfigError

METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
CONFIG = "config.yaml"
CHECKPOINT = "checkpoints/latest.pt"
#: Tag of the checkpoint layout written by :meth:`RunWriter.save_checkpoint`.
CHECKPOINT_FORMAT = "flsim-checkpoint/2"


def _create_temp(path: Path) -> tuple[int, Path]:
    """A fresh temp file next to ``path``, created with the umask's mode like every other file.

    ``tempfile.mkstemp`` would create it 0600, so atomically written files of a run would
    end up with another mode than the appended ``metrics.jsonl``.
    """
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def _json_safe_tree(value: Any) -> Any:
    """:func:`_json_safe` applied through nested mappings, lists and tuples."""
    if isinstance(value, dict):
        return {key: _json_safe_tree(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe_tree(item) for item in value]
    return _json_safe(value)


def _from_json(value: Any) -> Any:
    """Undo :func:`_json_safe` for columnar storage, where a column must have one type."""
    return {"inf": math.inf, "-inf": -math.inf}.get(value, value) if isinstance(value, str) else value


#: Losses whose non-finite value means the run diverged: every later row would be NaN too.
LOSS_KEYS = ("train_loss", "test_loss")


class RunDiverged(RuntimeError):
    """A loss became NaN or infinite; the row that shows it is written before this is raised."""

    def __init__(self, round_index: int, metric: str, value: float) -> None:
        self.round = round_index
        self.metric = metric
        self.value = value
        super().__init__(f"{metric} is {value} at round {round_index}: the run diverged")


def _divergence(row: dict[str, Any]) -> RunDiverged | None:
    for key in LOSS_KEYS:
        value = row.get(key)
        if isinstance(value, float) and not math.isfinite(value):
            return RunDiverged(int(row.get("round", -1)), key, value)
    return None


#: Scenario keys that label a run without changing what it computes.
LABEL_KEYS = ("tags", "notes")
#: Keys left out of :func:`config_hash`: the seed, the labels, where results go, and versions.
_NOT_HASHED = ("seed", "output", "versions", *LABEL_KEYS)


def _sha256(config: dict[str, Any]) -> str:
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def config_identity(config: dict[str, Any], seed: int) -> dict[str, Any]:
    """What ties a checkpoint to its run: the resolved config's hash and the seed.

    Tags and notes are left out: editing a run's description must not orphan its checkpoint.
    """
    return {"config_sha256": _sha256({k: v for k, v in config.items() if k not in LABEL_KEYS}), "seed": seed}


def config_hash(config: dict[str, Any]) -> str:
    """12 hex digits naming a resolved config up to its seed.

    Runs that share it differ only in their seed (and labels or output folder), so they are
    exactly the runs a report may pool as seeds of one configuration.
    """
    return _sha256({k: v for k, v in config.items() if k not in _NOT_HASHED})[:12]


def _describe_identity(identity: Any) -> str:
    if not isinstance(identity, dict):
        return "an unknown run"
    digest = str(identity.get("config_sha256", "?"))[:12]
    return f"seed {identity.get('seed')!r}, config sha256 {digest}"


def _encode(value: Any) -> Any:
    """Numpy values become tagged tensors, so the file holds only what ``weights_only`` loads."""
    if isinstance(value, np.ndarray | np.generic):
        array = np.array(value, order="C")  # a copy: the caller keeps mutating its arrays
        return {"__numpy__": _numpy_to_tensor(array), "scalar": isinstance(value, np.generic)}
    if isinstance(value, dict):
        return {key: _encode(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_encode(item) for item in value)
    return value


def _numpy_to_tensor(array: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(array)


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if "__numpy__" in value:
            array = value["__numpy__"].numpy()
            return array[()] if value.get("scalar") else array
        return {key: _decode(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_decode(item) for item in value)
    return value


def parse_metrics_lines(text: str, source: Path) -> list[dict[str, Any]]:
    """Rows of a ``metrics.jsonl``; only the last line may be partial (a crash mid-write).

    A malformed line with valid rows after it is damage, not a crash, and dropping the rows
    after it would lose data silently, so it is a :class:`ConfigError` naming the line.
    """
    lines = text.splitlines()
    rows = []
    for number, line in enumerate(lines, start=1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if not isinstance(row, dict) or not isinstance(row.get("round"), int):
            if number == len(lines):
                break
            raise ConfigError(
                "metrics.jsonl",
                str(source),
                f"line {number} of {len(lines)} is not a metrics row; restore the file from a "
                "backup, or delete checkpoints/latest.pt to recompute the run with --resume",
            )
        rows.append(row)
    return rows


class RunWriter:
    """Writes one run directory; ``identity`` (see :func:`config_identity`) goes into checkpoints."""

    def __init__(self, run_dir: Path, identity: dict[str, Any] | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.identity = identity
        #: A study records rows of many trajectories (one optimizer may diverge on purpose):
        #: only a simulation's single trajectory stops at a non-finite loss.
        self.stop_on_divergence = True
        self.run_dir.mkdir(parents=True, exist_ok=True)

    @property
    def metrics_path(self) -> Path:
        return self.run_dir / METRICS

    def write_config(self, config: dict[str, Any]) -> None:
        atomic_write_text(self.run_dir / CONFIG, yaml.safe_dump(config, sort_keys=False))

    def write_summary(self, summary: dict[str, Any]) -> None:
        """Strict JSON: a non-finite number (a study criterion never met) becomes "inf" or null.

        Python's default would write ``Infinity``/``NaN``, which browsers' ``JSON.parse``
        rejects, so one such run would break the dashboard.
        """
        text = json.dumps(_json_safe_tree(summary), indent=2, sort_keys=True, allow_nan=False)
        atomic_write_text(self.run_dir / SUMMARY, text + "\n")

    def append_metrics(self, row: dict[str, Any]) -> None:
        """One JSON line, flushed and fsynced, so a crash loses at most the line being written.

        Every driver writes its rows here, so this is where a diverged run is stopped: after
        a NaN or infinite loss the row is kept (it shows where) and :class:`RunDiverged` is
        raised, instead of computing NaN rounds to the end and calling the run completed.
        """
        line = json.dumps({k: _json_safe(v) for k, v in row.items()}) + "\n"
        with open(self.metrics_path, "a") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        diverged = _divergence(row) if self.stop_on_divergence else None
        if diverged is not None:
            raise diverged

    def read_metrics(self) -> list[dict[str, Any]]:
        """Rows written so far, ignoring a trailing partial line left by a crash."""
        if not self.metrics_path.exists():
            return []
        text = self.metrics_path.read_bytes().decode("utf-8", errors="replace")
        return parse_metrics_lines(text, self.metrics_path)

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
        wrapped = {"format": CHECKPOINT_FORMAT, "identity": self.identity, "state": _encode(state)}
        torch.save(wrapped, sink)
        atomic_write_bytes(self.run_dir / CHECKPOINT, sink.getvalue())

    def has_checkpoint(self) -> bool:
        return (self.run_dir / CHECKPOINT).exists()

    def remove_stale_temp_files(self) -> list[Path]:
        """Temp files a killed writer left behind (``.latest.pt.*.tmp``, ...); returns them."""
        stale = [
            path
            for folder in (self.run_dir, (self.run_dir / CHECKPOINT).parent)
            if folder.is_dir()
            for path in folder.glob(".*.tmp")
            if path.is_file()
        ]
        for path in stale:
            path.unlink(missing_ok=True)
        return stale

    def load_checkpoint(self) -> dict[str, Any] | None:
        """The checkpoint's state, or ``None``; a damaged or foreign file is a ConfigError.

        ``weights_only=True``: the file may come from anyone who can write to the results
        directory, and a full unpickler would run whatever code it names.
        """
        path = self.run_dir / CHECKPOINT
        if not path.exists():
            return None
        import torch

        recover = f"delete {path} to resume from the start, or restore it from a backup"
        try:
            wrapped = torch.load(path, weights_only=True, map_location="cpu")
        except Exception as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ConfigError(
                "checkpoint", str(path), f"unreadable checkpoint ({reason[:160]}); {recover}"
            ) from None
        if not isinstance(wrapped, dict) or wrapped.get("format") != CHECKPOINT_FORMAT:
            raise ConfigError("checkpoint", str(path), f"not a {CHECKPOINT_FORMAT} file; {recover}")
        found = wrapped.get("identity")
        if self.identity is not None and found != self.identity:
            raise ConfigError(
                "checkpoint",
                str(path),
                f"belongs to another run ({_describe_identity(found)}), not this one "
                f"({_describe_identity(self.identity)}); {recover}",
            )
        return _decode(wrapped["state"])
