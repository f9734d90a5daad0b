"""``flsim export RUN --format csv|tensorboard``: a run's metrics for spreadsheets or TensorBoard.

CSV needs nothing beyond pandas. TensorBoard event files are written with ``tensorboardX``
(the ``export`` extra, which ``make`` installs; it is small, unlike TensorBoard itself) or
``torch.utils.tensorboard`` when either is importable; without them the command says what to
install.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pandas as pd

from flsim.config.errors import ConfigError
from flsim.results.loading import find_run_dirs, load_results

log = logging.getLogger(__name__)

FORMATS = ("csv", "tensorboard")

#: Columns that identify the run rather than measure it; not exported as scalars.
_IDENTITY = ["scenario", "algorithm", "seed", "run_id", "config_hash", "status", "run_dir"]
#: Run columns left out of the CSV: the CSV keeps scenario, algorithm, seed, run_id and
#: config_hash, so that files from several runs concatenate into one comparable table.
_NOT_IN_CSV = ["status", "run_dir", "tags", "notes", "dataset", "partition", "model"]


def _one_run(run: str | Path) -> Path:
    try:
        dirs = find_run_dirs(run)
    except FileNotFoundError as exc:
        raise ConfigError("run", str(run), str(exc)) from None
    if len(dirs) != 1:
        raise ConfigError("run", str(run), f"expected one run directory, found {len(dirs)}")
    return dirs[0]


def export_csv(run: str | Path, out: str | Path | None = None) -> Path:
    """Write the run's metric rows (every column, round order) as CSV; returns the path."""
    run_dir = _one_run(run)
    metrics = load_results(run_dir).metrics
    frame = metrics.drop(columns=[c for c in metrics.columns if c in _NOT_IN_CSV])
    path = Path(out) if out else run_dir / "metrics.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    log.info("wrote %d rows to %s", len(frame), path)
    return path


def _summary_writer(logdir: Path) -> object:
    try:
        from tensorboardX import SummaryWriter  # type: ignore[import-not-found]
    except ImportError:
        try:
            from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package
        except ImportError:
            raise ConfigError(
                "--format",
                "tensorboard",
                "needs tensorboardX: pip install 'flsim-des[export]'",
            ) from None
    return SummaryWriter(log_dir=str(logdir))


def export_tensorboard(run: str | Path, out: str | Path | None = None) -> Path:
    """Write every numeric metric as a TensorBoard scalar, stepped by round."""
    run_dir = _one_run(run)
    metrics = load_results(run_dir).metrics
    logdir = Path(out) if out else run_dir / "tensorboard"
    writer = _summary_writer(logdir)
    numeric = [
        c
        for c in metrics.columns
        if c not in _IDENTITY and c != "round" and pd.api.types.is_numeric_dtype(metrics[c])
    ]
    for row in metrics[["round", *numeric]].itertuples(index=False):
        step = int(row[0])
        for name, value in zip(numeric, row[1:], strict=True):
            if value is not None and not (isinstance(value, float) and math.isnan(value)):
                writer.add_scalar(name, float(value), step)  # type: ignore[attr-defined]
    writer.close()  # type: ignore[attr-defined]
    return logdir


def export_run(run: str | Path, fmt: str, out: str | Path | None = None) -> Path:
    if fmt == "csv":
        return export_csv(run, out)
    if fmt == "tensorboard":
        return export_tensorboard(run, out)
    raise ConfigError("--format", fmt, f"choose one of {', '.join(FORMATS)}")
