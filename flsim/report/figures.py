"""Plotly figures as plain dicts: per-run comparison panels, seed bands and spec panels.

Figures are built as the JSON that ``Plotly.newPlot`` takes rather than as
``plotly.graph_objects``: constructing and validating graph objects costs milliseconds per
trace, which for a few hundred runs (thousands of traces) dominated the whole report. The
dicts are the same structure plotly would emit, so :func:`as_graph_objects` can still wrap
them for notebooks.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from plotly.colors import qualitative

from flsim.report.aggregate import aggregate_curves, run_curves
from flsim.report.spec import DashboardSpec, PanelSpec

Figure = dict[str, Any]


@dataclass(frozen=True)
class Panel:
    """One metric drawn against every x axis in :data:`X_AXES`."""

    column: str
    title: str
    log_y: bool = False


#: Metrics plotted by the default report (each only when some run reports it), in display order.
PANELS: list[Panel] = [
    Panel("test_acc", "Test accuracy"),
    Panel("test_loss", "Test loss"),
    Panel("train_loss", "Train loss"),
    Panel("optimality_gap", "Optimality gap", log_y=True),
    Panel("dist_to_opt", "Distance to optimum", log_y=True),
    Panel("consensus_distance", "Consensus distance", log_y=True),
]

#: (column, axis title) of the x axes every default-report metric is drawn against.
X_AXES: list[tuple[str, str]] = [
    ("round", "round"),
    ("virtual_time", "virtual time"),
    ("bytes_total", "total bytes (up + down)"),
]

#: Metrics that get a median and interquartile band across seeds in the default report.
BAND_METRICS: list[str] = ["test_acc", "test_loss", "optimality_gap"]

#: Axis titles of the x axes a spec may choose.
X_TITLES: dict[str, str] = {
    "round": "round",
    "virtual_time": "virtual time",
    "bytes_total": "total bytes (up + down)",
    "grad_evals": "gradient evaluations",
    "communications": "communications (messages)",
    "wall_time": "wall time (s)",
}

PALETTE: list[str] = list(qualitative.Plotly) + list(qualitative.Dark24)
_RUN_ORDER = ["scenario", "algorithm", "seed", "run_id", "run_dir"]


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def run_label(algorithm: str, seed: object, run_id: str) -> str:
    """Legend label of one run: ``"<algorithm> seed=<s> (<run_id>)"``."""
    seed_text = "?" if seed is None or pd.isna(seed) else str(seed)
    return f"{algorithm} seed={seed_text} ({run_id})"


def values(array: np.ndarray) -> list[Any]:
    """A JSON-ready list: non-finite floats become ``null`` (JSON has no NaN or ∞)."""
    array = np.asarray(array)
    if array.dtype.kind in "iub":
        return array.tolist()
    array = array.astype(float)
    finite = np.isfinite(array)
    if finite.all():
        return array.tolist()
    return [v if ok else None for v, ok in zip(array.tolist(), finite.tolist(), strict=True)]


def _axis_suffix(i: int) -> str:
    return "" if i == 1 else str(i)


#: A log axis with few ticks: plotly's default labels 2 and 5 (even every digit) within each
#: decade, which crowds the labels together on a narrow subplot; ``nticks`` lets it keep
#: only powers of ten once a range spans several decades.
_LOG_AXIS: dict[str, Any] = {"type": "log", "exponentformat": "power", "nticks": 6}


def subplot_layout(
    titles: list[str],
    x_titles: list[str],
    y_title: str,
    *,
    log_x: bool = False,
    log_y: bool = False,
    spacing: float = 0.06,
) -> dict[str, Any]:
    """A one-row subplot grid as layout axes (``xaxis``, ``xaxis2``, ...) and title annotations."""
    n = len(titles)
    width = (1.0 - spacing * (n - 1)) / n
    layout: dict[str, Any] = {"annotations": []}
    for i in range(1, n + 1):
        start = (i - 1) * (width + spacing)
        domain = [round(start, 6), round(min(1.0, start + width), 6)]
        s = _axis_suffix(i)
        layout[f"xaxis{s}"] = {
            "domain": domain,
            "anchor": f"y{s}",
            "title": {"text": x_titles[i - 1]},
            **(_LOG_AXIS if log_x else {}),
        }
        layout[f"yaxis{s}"] = {
            "anchor": f"x{s}",
            **({"title": {"text": y_title}} if i == 1 else {}),
            **(_LOG_AXIS if log_y else {}),
        }
        if n > 1:
            layout["annotations"].append(
                {
                    "text": titles[i - 1],
                    "x": (domain[0] + domain[1]) / 2,
                    "xref": "paper",
                    "xanchor": "center",
                    "y": 1.0,
                    "yref": "paper",
                    "yanchor": "bottom",
                    "showarrow": False,
                    "font": {"size": 14},
                }
            )
    return layout


def figure_json(fig: Figure) -> str:
    """Compact JSON safe to inline in a ``<script>`` element.

    ``<``, ``>`` and ``&`` are written as ``\\u`` escapes (valid JSON, identical after parsing)
    so a run name or title can never close the script tag or start an HTML entity.
    """
    try:
        text = json.dumps(fig, separators=(",", ":"), allow_nan=False)
    except ValueError:  # a stray NaN somewhere in the layout: null it rather than fail the report
        text = json.dumps(_nan_to_none(fig), separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_nan_to_none(v) for v in obj]
    return obj


def as_graph_objects(fig: Figure) -> Any:
    """Wrap a dict figure as ``plotly.graph_objects.Figure`` (notebooks, ``fig.show()``)."""
    import plotly.graph_objects as go

    out = go.Figure(fig)
    out.update_layout(template="plotly_white")
    return out


# -- the default report: one trace per run --------------------------------------------------------
def ordered_runs(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run with its label and colour, in a stable order shared by all figures."""
    runs = df.drop_duplicates("run_dir")[_RUN_ORDER].sort_values(_RUN_ORDER, na_position="last")
    runs = runs.reset_index(drop=True)
    runs["label"] = [
        run_label(a, s, r) for a, s, r in zip(runs.algorithm, runs.seed, runs.run_id, strict=True)
    ]
    runs["color"] = [color(i) for i in range(len(runs))]
    return runs


def has_data(df: pd.DataFrame, column: str) -> bool:
    return column in df.columns and bool(df[column].notna().any())


def _column(df: pd.DataFrame, name: str) -> np.ndarray:
    if name not in df.columns:
        return np.full(len(df), np.nan)
    return pd.to_numeric(df[name], errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def metric_figure(df: pd.DataFrame, runs: pd.DataFrame, panel: Panel) -> Figure:
    """One row of subplots (one per x axis) with exactly one trace per run that has the metric."""
    layout = subplot_layout([t for _, t in X_AXES], [t for _, t in X_AXES], panel.column, log_y=panel.log_y)
    y = _column(df, panel.column)
    xs = {x_col: _column(df, x_col) for x_col, _ in X_AXES}
    index = df.groupby("run_dir", sort=False).indices
    traces = []
    for run in runs.itertuples(index=False):
        idx = index[run.run_dir]
        if not np.isfinite(y[idx]).any():
            continue
        for col, (x_col, x_title) in enumerate(X_AXES, start=1):
            x = xs[x_col][idx]
            keep = np.isfinite(x) & np.isfinite(y[idx])
            s = _axis_suffix(col)
            traces.append(
                {
                    "type": "scatter",
                    "x": values(x[keep]),
                    "y": values(y[idx][keep]),
                    "mode": "lines+markers" if keep.sum() < 30 else "lines",
                    "name": run.label,
                    "legendgroup": run.run_dir,
                    "showlegend": col == 1,
                    "line": {"color": run.color},
                    "marker": {"size": 4},
                    "xaxis": f"x{s}",
                    "yaxis": f"y{s}",
                    "hovertemplate": f"{x_title}=%{{x:.4g}}<br>{panel.column}=%{{y:.4g}}",
                }
            )
    layout.update(
        title={"text": panel.title + (" (log scale)" if panel.log_y else "")},
        height=420,
        legend={"groupclick": "togglegroup"},
        meta={"flsim_panel": panel.column},
    )
    return {"data": traces, "layout": layout}


def _band_traces(
    stats: pd.DataFrame, label: str, group: str, fill: str, line_color: str, axis: int, showlegend: bool
) -> list[dict[str, Any]]:
    """A filled band (lo..hi, drawn as one closed polygon) and the centre line on top of it."""
    s = _axis_suffix(axis)
    x = stats["x"].to_numpy(dtype=float)
    traces = []
    if not np.allclose(stats["lo"], stats["hi"], equal_nan=True):
        traces.append(
            {
                "type": "scatter",
                "x": values(np.r_[x, x[::-1]]),
                "y": values(np.r_[stats["hi"].to_numpy(float), stats["lo"].to_numpy(float)[::-1]]),
                "fill": "toself",
                "fillcolor": fill,
                "mode": "lines",  # plotly adds markers to short traces unless told otherwise
                "line": {"width": 0},
                "hoverinfo": "skip",
                "name": label,
                "legendgroup": group,
                "showlegend": False,
                "xaxis": f"x{s}",
                "yaxis": f"y{s}",
                "meta": {"group": group, "role": "band"},
            }
        )
    custom = np.column_stack([stats["lo"], stats["hi"], stats["n"]])
    traces.append(
        {
            "type": "scatter",
            "x": values(x),
            "y": values(stats["center"].to_numpy(float)),
            "mode": "lines",
            "line": {"color": line_color, "width": 2},
            "name": label,
            "legendgroup": group,
            "showlegend": showlegend,
            "xaxis": f"x{s}",
            "yaxis": f"y{s}",
            "customdata": [values(row) for row in custom],
            "hovertemplate": "x=%{x:.4g}<br>centre=%{y:.4g}<br>band=[%{customdata[0]:.3g}, "
            "%{customdata[1]:.3g}]<br>runs=%{customdata[2]}<extra>" + label + "</extra>",
            "meta": {"group": group, "role": "center"},
        }
    )
    return traces


def band_groups(df: pd.DataFrame, names: dict[str, str] | None = None) -> dict[str, list[str]]:
    """Runs that differ only in their seed (one ``config_hash``), where there are at least two seeds.

    Keyed by the group's name: ``names`` maps a config hash to a readable one (see
    :func:`flsim.report.html.seed_group_names`); without it the name is scenario and
    algorithm, plus the hash where that pair has several configs. Runs whose configs differ
    in anything else are never pooled into one band.
    """
    groups: dict[str, list[str]] = {}
    hashes = df.groupby(["scenario", "algorithm"])["config_hash"].nunique()
    keys = ["scenario", "algorithm", "config_hash"]
    for (scenario, algorithm, digest), rows in df.groupby(keys, sort=True):
        if rows["seed"].nunique() >= 2:
            name = f"{scenario} / {algorithm}"
            name += f" [{digest}]" if hashes[(scenario, algorithm)] > 1 else ""
            groups[(names or {}).get(str(digest), name)] = list(dict.fromkeys(rows["run_dir"]))
    return groups


def band_figure(df: pd.DataFrame, names: dict[str, str] | None = None) -> Figure | None:
    """Median and interquartile range over seeds against round, one band per configuration."""
    groups = band_groups(df, names)
    metrics = [p for p in PANELS if p.column in BAND_METRICS and has_data(df, p.column)]
    if not groups or not metrics:
        return None
    layout = subplot_layout([p.title for p in metrics], ["round"] * len(metrics), "", spacing=0.08)
    curves = {p.column: run_curves(df, "round", p.column) for p in metrics}
    traces = []
    for g, (name, run_dirs) in enumerate(groups.items()):
        label = f"{name} (n={len(run_dirs)})"
        first = True
        for col, panel in enumerate(metrics, start=1):
            stats = aggregate_curves(curves[panel.column], run_dirs, "median", "iqr")
            if stats.empty:
                continue
            traces += _band_traces(stats, label, label, rgba(color(g), 0.2), color(g), col, first)
            first = False
            if panel.log_y:
                layout[f"yaxis{_axis_suffix(col)}"].update(_LOG_AXIS)
    layout.update(
        title={"text": "Median and interquartile range across seeds, by configuration"},
        height=420,
        legend={"groupclick": "togglegroup"},
        meta={"flsim_panel": "seed_bands"},
    )
    return {"data": traces, "layout": layout}


def default_figures(df: pd.DataFrame, names: dict[str, str] | None = None) -> dict[str, Figure]:
    """The default report's figures: one per metric in :data:`PANELS`, then ``seed_bands``.

    ``names`` (config hash → group name) labels the seed bands; see :func:`band_groups`.
    """
    if df.empty:
        return {}
    runs = ordered_runs(df)
    figures = {p.column: metric_figure(df, runs, p) for p in PANELS if has_data(df, p.column)}
    bands = band_figure(df, names)
    if bands is not None:
        figures["seed_bands"] = bands
    return figures


# -- spec panels: one aggregated curve per group ---------------------------------------------------
def _run_trace(curve: tuple[Any, Any], run_dir: str, label: str, c: str, col: int) -> dict[str, Any]:
    """One run's own faint line under its group's centre line (``show_runs``)."""
    rx, ry = curve
    return {
        "type": "scatter",
        "x": values(rx),
        "y": values(ry),
        "mode": "lines",
        "line": {"color": rgba(c, 0.35), "width": 1},
        "name": label,
        "legendgroup": label,
        "showlegend": False,
        "hoverinfo": "skip",
        "xaxis": f"x{_axis_suffix(col)}",
        "yaxis": f"y{_axis_suffix(col)}",
        "meta": {"group": label, "role": "run", "run_dir": run_dir},
    }


def spec_panel_figure(
    df: pd.DataFrame, groups: pd.Series, spec: DashboardSpec, panel: PanelSpec, index: int
) -> Figure:
    """One spec panel: per group a centre line and (for groups of ≥ 2 runs) a band, per x axis.

    ``groups`` maps ``run_dir`` to its group label; group colours follow the sorted labels so
    that a group has the same colour in every panel.
    """
    info = spec.metric_info(panel.metric)
    log_y = spec.panel_log_y(panel)
    x_axes = panel.x_axes
    layout = subplot_layout(
        [X_TITLES[x] for x in x_axes],
        [X_TITLES[x] + (" (log)" if panel.log_x else "") for x in x_axes],
        info.title,
        log_x=panel.log_x,
        log_y=log_y,
    )
    labels = sorted(groups.unique().tolist())
    members = {label: groups.index[groups == label].tolist() for label in labels}
    band = spec.aggregate.band
    traces: list[dict[str, Any]] = []
    for col, x in enumerate(x_axes, start=1):
        curves = run_curves(df, x, panel.metric)
        for g, label in enumerate(labels):
            run_dirs = [r for r in members[label] if r in curves]
            if not run_dirs:
                continue
            c = color(g)
            if panel.show_runs:
                traces += [_run_trace(curves[r], r, label, c, col) for r in run_dirs]
            stats = aggregate_curves(
                curves, run_dirs, spec.aggregate.center, band if len(run_dirs) > 1 else "none"
            )
            if stats.empty:
                continue
            name = f"{label} (n={len(run_dirs)})"
            traces += _band_traces(stats, name, label, rgba(c, 0.2), c, col, showlegend=col == 1)
    centre = "median" if spec.aggregate.center == "median" else "mean"
    band_text = {"iqr": ", band: interquartile range", "minmax": ", band: min–max", "none": ""}[band]
    layout.update(
        title={"text": (panel.title or f"{info.title}") + f" <sub>({centre} over runs{band_text})</sub>"},
        height=440,
        legend={"groupclick": "togglegroup", "title": {"text": ", ".join(spec.group_keys)}},
        meta={"flsim_panel": f"panel-{index}", "metric": panel.metric, "x": x_axes},
    )
    return {"data": traces, "layout": layout}
