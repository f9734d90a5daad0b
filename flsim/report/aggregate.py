"""Aggregation over seeds, time-to-target and grouping, on the long frame of ``load_runs``.

These are the numbers a researcher decides with, so they are kept apart from plotting and
tested on hand-made runs. Conventions, chosen so that a summary never flatters a method:

* **Curves.** The runs of a group are put on one x grid: the sorted union of their x values
  restricted to the range that *every* run covers (no extrapolation, so the centre does not
  jump where a short seed drops out). Each run is linearly interpolated onto that grid; where
  all runs share their x values (rounds, and bytes or gradients of synchronous methods) this
  is exact. The centre is the median (or mean) across runs at each grid point; the band is
  the 25th–75th percentiles (numpy's linear interpolation) or the min and max.
* **Time to target.** A run reaches the target at its first evaluation row where the metric
  is ≥ the target (``above``) or ≤ it (``below``); the measures (round, bytes, virtual time,
  ...) are read at that row, without interpolating between evaluations. A run that never
  reaches it counts as +∞, so a group's median is +∞ ("not reached") unless more than half of
  its runs reached the target.
* **Final values.** A run's final value of a metric is its last non-missing value.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from flsim.results.loading import config_value

#: Grid points per aggregated curve at most; a denser union of x values is thinned evenly.
MAX_GRID = 1000

BandKind = str  # "iqr" | "minmax" | "none"


def quantiles(matrix: np.ndarray, qs: Iterable[float]) -> np.ndarray:
    """Column-wise quantiles of ``matrix`` (runs × points), ignoring NaN, linear between ranks.

    Equal to ``numpy.nanpercentile(..., method="linear")`` on finite data. It exists because
    numpy's interpolation turns +∞ (an unreached target) into NaN (∞ − ∞, or 0 · ∞ at an
    exact rank); here a quantile that needs an infinite neighbour is +∞, and one that falls
    exactly on a finite rank is that value.
    """
    matrix = np.asarray(matrix, dtype=float)
    ordered = np.sort(matrix, axis=0)  # NaN sorts last
    n = np.sum(~np.isnan(matrix), axis=0)
    out = []
    for q in qs:
        h = (np.maximum(n, 1) - 1) * q
        lo = np.floor(h).astype(int)
        hi = np.ceil(h).astype(int)
        t = h - lo
        a = np.take_along_axis(ordered, lo[None, :], axis=0)[0]
        b = np.take_along_axis(ordered, hi[None, :], axis=0)[0]
        with np.errstate(invalid="ignore"):
            mixed = np.where(np.isposinf(b), np.inf, a + (b - a) * t)
        value = np.where(t == 0, a, mixed)
        out.append(np.where(n > 0, value, np.nan))
    return np.vstack(out) if out else np.empty((0, matrix.shape[1]))


def band_stats(matrix: np.ndarray, center: str = "median", band: BandKind = "iqr") -> dict[str, np.ndarray]:
    """Centre, lower and upper band of ``matrix`` (runs × points) along the run axis.

    NaNs are ignored per column, so a run with a missing evaluation does not blank the point.
    ``center``: ``median`` or ``mean``; ``band``: ``iqr`` (25th–75th percentile), ``minmax``
    or ``none`` (lo = hi = centre).
    """
    matrix = np.asarray(matrix, dtype=float)
    n = np.sum(~np.isnan(matrix), axis=0)
    q25, q50, q75 = quantiles(matrix, (0.25, 0.5, 0.75))
    if center == "median":
        mid = q50
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            mid = np.where(n > 0, np.nansum(matrix, axis=0) / np.maximum(n, 1), np.nan)
    if band == "iqr":
        lo, hi = q25, q75
    elif band == "minmax":
        lo, hi = quantiles(matrix, (0.0, 1.0))
    else:
        lo, hi = mid.copy(), mid.copy()
    return {"center": mid, "lo": lo, "hi": hi, "n": n}


def run_curves(df: pd.DataFrame, x: str, metric: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``run_dir → (x, y)``: one run's finite points, sorted by x, duplicate x keeping the last."""
    if x not in df.columns or metric not in df.columns:
        return {}
    sub = df[["run_dir", x, metric]]
    xs = pd.to_numeric(sub[x], errors="coerce").to_numpy(dtype=float)
    ys = pd.to_numeric(sub[metric], errors="coerce").to_numpy(dtype=float)
    keep = np.isfinite(xs) & np.isfinite(ys)
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for run_dir, idx in sub.groupby("run_dir", sort=False).indices.items():
        idx = idx[keep[idx]]
        if not len(idx):
            continue
        rx, ry = xs[idx], ys[idx]
        order = np.argsort(rx, kind="stable")
        rx, ry = rx[order], ry[order]
        # Keep the last of equal x values (a resumed run re-evaluates a round).
        last = np.r_[rx[1:] != rx[:-1], True]
        out[str(run_dir)] = (rx[last], ry[last])
    return out


def common_grid(curves: Iterable[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """The union of the curves' x values inside the range all of them cover."""
    curves = list(curves)
    if not curves:
        return np.empty(0)
    start = max(float(c[0][0]) for c in curves)
    stop = min(float(c[0][-1]) for c in curves)
    if start > stop:
        return np.empty(0)
    grid = np.unique(np.concatenate([c[0] for c in curves]))
    grid = grid[(grid >= start) & (grid <= stop)]
    if len(grid) > MAX_GRID:
        grid = grid[np.linspace(0, len(grid) - 1, MAX_GRID).round().astype(int)]
    return grid


def aggregate_curves(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    run_dirs: Iterable[str],
    center: str = "median",
    band: BandKind = "iqr",
) -> pd.DataFrame:
    """Columns ``x, center, lo, hi, n`` for the runs ``run_dirs`` (see the module docstring)."""
    members = [curves[r] for r in run_dirs if r in curves]
    grid = common_grid(members)
    if not len(grid):
        return pd.DataFrame(columns=["x", "center", "lo", "hi", "n"])
    matrix = np.vstack([np.interp(grid, cx, cy) for cx, cy in members])
    stats = band_stats(matrix, center, band)
    return pd.DataFrame({"x": grid, **stats})


def first_reached(
    df: pd.DataFrame, metric: str, target: float, direction: str, measures: list[str]
) -> pd.DataFrame:
    """Per run (index ``run_dir``): the measures at the first row reaching the target.

    Rows are taken in round order within each run. Runs that never reach the target get NaN
    measures and ``reached = False``; runs without the metric are absent.
    """
    columns = ["reached", *measures]
    if metric not in df.columns:
        return pd.DataFrame(columns=columns, index=pd.Index([], name="run_dir"))
    order = ["run_dir", "round"] if "round" in df.columns else ["run_dir"]
    sub = df[df[metric].notna()].sort_values(order, kind="stable")
    values = sub[metric].to_numpy(dtype=float)
    hit = values >= target if direction == "above" else values <= target
    first = sub[hit].groupby("run_dir", sort=False).head(1).set_index("run_dir")
    runs = pd.Index(sub["run_dir"].unique(), name="run_dir")
    out = pd.DataFrame(index=runs)
    out["reached"] = out.index.isin(first.index)
    for m in measures:
        out[m] = first[m].reindex(runs).astype(float) if m in first.columns else np.nan
    return out


def final_values(df: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Per run (index ``run_dir``): the last non-missing value of each metric."""
    present = [m for m in metrics if m in df.columns]
    if df.empty or not present:
        return pd.DataFrame(columns=metrics, index=pd.Index([], name="run_dir"))
    order = ["run_dir", "round"] if "round" in df.columns else ["run_dir"]
    last = df.sort_values(order, kind="stable").groupby("run_dir", sort=False)[present].last()
    return last.reindex(columns=metrics)


def group_labels(runs: pd.DataFrame, configs: Mapping[str, dict[str, Any]], keys: list[str]) -> pd.Series:
    """One label per run (index ``run_dir``) from the group keys.

    A key is a run-identity column (``algorithm``, ``scenario``, ``status``, ``seed``) or a
    dotted config key (``task.partition.alpha``). One key gives its bare value (``fedavg``);
    several give ``key=value`` pairs joined by ", " so that the legend stays unambiguous.
    """
    from flsim.report.spec import IDENTITY_KEYS

    columns: list[list[str]] = []
    for key in keys:
        if key in IDENTITY_KEYS:
            values = runs[IDENTITY_KEYS[key]].tolist()
        else:
            values = [config_value(configs.get(r, {}), key) for r in runs["run_dir"]]
        columns.append([_format_value(v) for v in values])
    if len(keys) == 1:
        labels = columns[0]
    else:
        short = [k.rsplit(".", 1)[-1] for k in keys]
        labels = [
            ", ".join(f"{k}={v}" for k, v in zip(short, vals, strict=True))
            for vals in zip(*columns, strict=True)
        ]
    return pd.Series(labels, index=pd.Index(runs["run_dir"].tolist(), name="run_dir"), dtype=object)


def _format_value(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def summarize_groups(
    per_run: pd.DataFrame, groups: pd.Series, center: str = "median", band: BandKind = "iqr"
) -> pd.DataFrame:
    """Centre and band of every column of ``per_run`` (index ``run_dir``) within each group.

    Returns one row per group with ``runs`` and, per column ``c``, ``c``, ``c_lo``, ``c_hi``.
    Infinite values (unreached targets) take part in the order statistics as +∞.
    """
    rows = []
    for label, members in groups.groupby(groups, sort=True).groups.items():
        block = per_run.reindex(list(members))
        row: dict[str, Any] = {"group": label, "runs": len(members)}
        for col in per_run.columns:
            values = block[col].to_numpy(dtype=float)[None, :].T  # runs × 1
            stats = band_stats(values, center, band)
            row[col], row[f"{col}_lo"], row[f"{col}_hi"] = (
                float(stats["center"][0]),
                float(stats["lo"][0]),
                float(stats["hi"][0]),
            )
            row[f"{col}_n"] = int(stats["n"][0])
        rows.append(row)
    return pd.DataFrame(rows)


def time_to_target(
    df: pd.DataFrame,
    groups: pd.Series,
    metric: str,
    target: float,
    direction: str,
    measures: list[str],
    center: str = "median",
    band: BandKind = "iqr",
) -> pd.DataFrame:
    """Per group: ``reached`` (how many runs reached the target), ``runs`` and, per measure,
    the centre and band over runs with unreached runs as +∞ (see the module docstring)."""
    per_run = first_reached(df, metric, target, direction, measures)
    per_run = per_run.reindex(groups.index)  # runs without the metric count as not reached
    per_run["reached"] = per_run["reached"].fillna(False).astype(bool)
    reached_mask = per_run["reached"].to_numpy()[:, None]
    values = pd.DataFrame(
        np.where(reached_mask, per_run[measures].to_numpy(dtype=float), np.inf),
        index=per_run.index,
        columns=measures,
    )
    summary = summarize_groups(values, groups, center, band)
    reached = per_run["reached"].groupby(groups).sum()
    summary.insert(2, "reached", summary["group"].map(reached).astype(int))
    return summary
