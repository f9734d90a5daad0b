"""Self-contained, offline HTML comparison report over one or more runs.

The report is meant to be opened from a cluster scratch disk or mailed around, so it embeds
plotly.js once (from the installed ``plotly`` package, never a CDN) and the figure data as
inert JSON blocks that one small script hands to ``Plotly.newPlot``. That layout also lets
tests read the figures back out of the file without executing any JavaScript.
"""

from __future__ import annotations

import html
import logging
import math
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from flsim.results.loading import PathLike, load_run_table, load_runs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Panel:
    """One metric drawn against every x axis in :data:`X_AXES`."""

    column: str
    title: str
    log_y: bool = False


#: Metrics plotted (each only when some run reports it), in display order.
PANELS: list[Panel] = [
    Panel("test_acc", "Test accuracy"),
    Panel("test_loss", "Test loss"),
    Panel("train_loss", "Train loss"),
    Panel("optimality_gap", "Optimality gap", log_y=True),
    Panel("dist_to_opt", "Distance to optimum", log_y=True),
    Panel("consensus_distance", "Consensus distance", log_y=True),
]

#: (column, axis title) of the x axes every metric is drawn against.
X_AXES: list[tuple[str, str]] = [
    ("round", "round"),
    ("virtual_time", "virtual time"),
    ("bytes_total", "total bytes (up + down)"),
]

#: Metrics that get a mean ± std across seeds panel.
BAND_METRICS: list[str] = ["test_acc", "test_loss", "optimality_gap"]

_PALETTE: list[str] = list(qualitative.Plotly) + list(qualitative.Dark24)
_TEMPLATE = "plotly_white"
_RUN_ORDER = ["scenario", "algorithm", "seed", "run_id", "run_dir"]


def run_label(algorithm: str, seed: object, run_id: str) -> str:
    """Legend label of one run: ``"<algorithm> seed=<s> (<run_id>)"``."""
    seed_text = "?" if seed is None or pd.isna(seed) else str(seed)
    return f"{algorithm} seed={seed_text} ({run_id})"


def _color(i: int) -> str:
    return _PALETTE[i % len(_PALETTE)]


def _ordered_runs(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run with its label and colour, in a stable order shared by all figures."""
    runs = df.drop_duplicates("run_dir")[_RUN_ORDER].sort_values(_RUN_ORDER, na_position="last")
    runs = runs.reset_index(drop=True)
    runs["label"] = [
        run_label(a, s, r) for a, s, r in zip(runs.algorithm, runs.seed, runs.run_id, strict=True)
    ]
    runs["color"] = [_color(i) for i in range(len(runs))]
    return runs


def _has_data(df: pd.DataFrame, column: str) -> bool:
    return column in df.columns and bool(df[column].notna().any())


def _metric_figure(df: pd.DataFrame, runs: pd.DataFrame, panel: Panel) -> go.Figure:
    """One row of subplots (one per x axis) with exactly one trace per run that has the metric."""
    fig = make_subplots(
        rows=1, cols=len(X_AXES), subplot_titles=[t for _, t in X_AXES], horizontal_spacing=0.06
    )
    by_run = dict(tuple(df.groupby("run_dir", sort=False)))
    for run in runs.itertuples(index=False):
        rows = by_run[run.run_dir]
        if not _has_data(rows, panel.column):
            continue
        for col, (x_col, x_title) in enumerate(X_AXES, start=1):
            x = rows[x_col] if x_col in rows.columns else pd.Series(np.nan, index=rows.index)
            keep = x.notna() & rows[panel.column].notna()
            fig.add_trace(
                go.Scatter(
                    x=x[keep].tolist(),
                    y=rows.loc[keep, panel.column].tolist(),
                    mode="lines+markers" if keep.sum() < 30 else "lines",
                    name=run.label,
                    legendgroup=run.run_dir,
                    showlegend=col == 1,
                    line={"color": run.color},
                    marker={"size": 4},
                    hovertemplate=f"{x_title}=%{{x:.4g}}<br>{panel.column}=%{{y:.4g}}",
                ),
                row=1,
                col=col,
            )
            fig.update_xaxes(title_text=x_title, row=1, col=col)
    fig.update_yaxes(title_text=panel.column, row=1, col=1)
    if panel.log_y:
        fig.update_yaxes(type="log")
    fig.update_layout(
        title=panel.title + (" (log scale)" if panel.log_y else ""),
        template=_TEMPLATE,
        height=420,
        legend={"groupclick": "togglegroup"},
        meta={"flsim_panel": panel.column},
    )
    return fig


def _band_groups(df: pd.DataFrame) -> dict[tuple[str, str], list[str]]:
    """(scenario, algorithm) groups that have runs with at least two distinct seeds."""
    groups: dict[tuple[str, str], list[str]] = {}
    for (scenario, algorithm), rows in df.groupby(["scenario", "algorithm"], sort=True):
        if rows["seed"].nunique() >= 2:
            groups[(str(scenario), str(algorithm))] = list(dict.fromkeys(rows["run_dir"]))
    return groups


def _seed_stats(df: pd.DataFrame, run_dirs: list[str], column: str, log_y: bool) -> pd.DataFrame | None:
    """Mean and std across runs at each round all of them reached.

    Only rounds common to every run are used: otherwise the mean would jump where a seed that
    stopped early drops out. Log-scale metrics are averaged in log10 space so that the band
    stays positive and symmetric on the plotted axis.
    """
    series = []
    for run_dir in run_dirs:
        rows = df[(df["run_dir"] == run_dir) & df[column].notna()]
        values = rows.groupby("round")[column].last()
        if log_y:
            values = np.log10(values[values > 0])
        series.append(values)
    table = pd.concat(series, axis=1, join="inner")
    if table.empty or table.shape[1] < 2:
        return None
    stats = pd.DataFrame({"mean": table.mean(axis=1), "std": table.std(axis=1, ddof=1).fillna(0.0)})
    stats["lo"] = stats["mean"] - stats["std"]
    stats["hi"] = stats["mean"] + stats["std"]
    if log_y:
        stats[["mean", "lo", "hi"]] = 10 ** stats[["mean", "lo", "hi"]]
    return stats.sort_index()


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def _band_figure(df: pd.DataFrame) -> go.Figure | None:
    """Mean ± std over seeds against round, one panel per metric, one band per group."""
    groups = _band_groups(df)
    metrics = [p for p in PANELS if p.column in BAND_METRICS and _has_data(df, p.column)]
    if not groups or not metrics:
        return None
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[p.title for p in metrics])
    for g, ((scenario, algorithm), run_dirs) in enumerate(groups.items()):
        color = _color(g)
        label = f"{scenario} / {algorithm} (n={len(run_dirs)})"
        first = True
        for col, panel in enumerate(metrics, start=1):
            stats = _seed_stats(df, run_dirs, panel.column, panel.log_y)
            if stats is None:
                continue
            x = stats.index.tolist()
            fig.add_trace(
                go.Scatter(
                    x=x + x[::-1],
                    y=stats["hi"].tolist() + stats["lo"].tolist()[::-1],
                    fill="toself",
                    fillcolor=_rgba(color, 0.2),
                    line={"width": 0},
                    hoverinfo="skip",
                    name=label,
                    legendgroup=label,
                    showlegend=False,
                ),
                row=1,
                col=col,
            )
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=stats["mean"].tolist(),
                    mode="lines",
                    line={"color": color},
                    name=label,
                    legendgroup=label,
                    showlegend=first,
                    customdata=stats["std"].tolist(),
                    hovertemplate="round=%{x}<br>mean=%{y:.4g}<br>std=%{customdata:.3g}",
                ),
                row=1,
                col=col,
            )
            first = False
            fig.update_xaxes(title_text="round", row=1, col=col)
            if panel.log_y:
                fig.update_yaxes(type="log", row=1, col=col)
    fig.update_layout(
        title="Mean ± std across seeds, by scenario and algorithm",
        template=_TEMPLATE,
        height=420,
        legend={"groupclick": "togglegroup"},
        meta={"flsim_panel": "seed_bands"},
    )
    return fig


def build_figures(df: pd.DataFrame) -> dict[str, go.Figure]:
    """Figures for a :func:`~flsim.results.loading.load_runs` frame, keyed by panel name.

    Keys are metric columns from :data:`PANELS` that some run reports, plus ``"seed_bands"``
    when a (scenario, algorithm) pair has several seeds. Separate from HTML writing so that
    notebooks and tests can use the figure objects directly.
    """
    if df.empty:
        return {}
    runs = _ordered_runs(df)
    figures: dict[str, go.Figure] = {
        p.column: _metric_figure(df, runs, p) for p in PANELS if _has_data(df, p.column)
    }
    bands = _band_figure(df)
    if bands is not None:
        figures["seed_bands"] = bands
    return figures


def _last(rows: pd.DataFrame, column: str) -> float:
    if column not in rows.columns:
        return math.nan
    values = rows[column].dropna()
    return float(values.iloc[-1]) if len(values) else math.nan


def summarize_runs(df: pd.DataFrame, run_table: pd.DataFrame | None = None) -> pd.DataFrame:
    """Final (and best) metrics per run, one row per run.

    ``run_table`` (from :func:`~flsim.results.loading.load_run_table`) adds runs that have
    no metric rows, e.g. a run that failed before its first evaluation, so that the table
    still shows them with their status.
    """
    base = run_table if run_table is not None else df.drop_duplicates("run_dir")
    if base.empty:
        return pd.DataFrame(columns=["scenario", "algorithm", "seed", "run_id", "status", "run_dir"])
    base = base[
        ["scenario", "algorithm", "seed", "run_id", "status", "dataset", "partition", "alpha", "run_dir"]
    ]
    by_run = dict(tuple(df.groupby("run_dir", sort=False))) if not df.empty else {}
    records = []
    for run in base.itertuples(index=False):
        rows = by_run.get(run.run_dir, pd.DataFrame())
        acc = rows["test_acc"].dropna() if "test_acc" in rows.columns else pd.Series(dtype=float)
        records.append(
            {
                "final_test_acc": float(acc.iloc[-1]) if len(acc) else math.nan,
                "best_test_acc": float(acc.max()) if len(acc) else math.nan,
                "final_test_loss": _last(rows, "test_loss"),
                "final_train_loss": _last(rows, "train_loss"),
                "final_optimality_gap": _last(rows, "optimality_gap"),
                "rounds": _last(rows, "round"),
                "virtual_time": _last(rows, "virtual_time"),
                "bytes_total": _last(rows, "bytes_total"),
                "grad_evals": _last(rows, "grad_evals"),
                "wall_time": _last(rows, "wall_time"),
            }
        )
    summary = pd.concat([base.reset_index(drop=True), pd.DataFrame.from_records(records)], axis=1)
    # Drop columns no run reports (e.g. accuracy on a regression task), never the identity ones.
    empty = [c for c in summary.columns if c not in _RUN_ORDER and summary[c].isna().all()]
    summary = summary.drop(columns=empty)
    return summary.sort_values(["scenario", "algorithm", "seed", "run_id"], na_position="last").reset_index(
        drop=True
    )


def summarize_groups(summary: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std of the final metrics per (scenario, algorithm) over its runs."""
    metrics = [
        c
        for c in ("final_test_acc", "best_test_acc", "final_test_loss", "final_optimality_gap")
        if c in summary
    ]
    grouped = summary.groupby(["scenario", "algorithm"], sort=True)
    out = grouped.size().rename("runs").to_frame()
    for col in metrics:
        mean, std = grouped[col].mean(), grouped[col].std(ddof=1)
        out[col] = [
            "" if pd.isna(m) else f"{m:.4g}" + ("" if pd.isna(s) else f" ± {s:.2g}")
            for m, s in zip(mean, std, strict=True)
        ]
    return out.reset_index()


def _fmt(fmt: str) -> Callable[[float], str]:
    """A ``DataFrame.to_html`` formatter that leaves missing values blank."""
    return lambda v: v if isinstance(v, str) else ("" if pd.isna(v) else format(v, fmt))


_FORMATTERS = {
    "final_test_acc": _fmt(".4f"),
    "best_test_acc": _fmt(".4f"),
    "final_test_loss": _fmt(".4g"),
    "final_train_loss": _fmt(".4g"),
    "final_optimality_gap": _fmt(".3e"),
    "rounds": _fmt(".0f"),
    "virtual_time": _fmt(".4g"),
    "bytes_total": lambda v: "" if pd.isna(v) else f"{v / 1e6:.4g}",
    "grad_evals": _fmt(".0f"),
    "wall_time": _fmt(".1f"),
    "alpha": _fmt("g"),
}


def _table_html(table: pd.DataFrame, table_id: str) -> str:
    formatters = {k: v for k, v in _FORMATTERS.items() if k in table.columns}
    # Bytes are shown in one unit (MB) so that the numeric header sort stays correct.
    table = table.rename(columns={"bytes_total": "MB_total"})
    formatters = {("MB_total" if k == "bytes_total" else k): v for k, v in formatters.items()}
    return table.to_html(
        index=False,
        escape=True,
        na_rep="",
        formatters=formatters,
        table_id=table_id,
        classes="flsim-table",
        border=0,
    )


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.5em} h2{font-size:1.2em;margin-top:1.6em}
.flsim-table{border-collapse:collapse;font-size:0.85em}
.flsim-table th,.flsim-table td{padding:3px 8px;border-bottom:1px solid #ddd;
  text-align:right;white-space:nowrap}
.flsim-table th{background:#f4f4f4;cursor:pointer}
.flsim-figure{width:100%;min-height:420px}
.note{color:#666;font-size:0.85em}
"""

# Renders every <script type="application/json" class="flsim-figure-data"> into its div, and
# makes table headers click-sortable; no network access, no external libraries beyond Plotly.
_BOOT_JS = """
document.querySelectorAll('script.flsim-figure-data').forEach(function (el) {
  var fig = JSON.parse(el.textContent);
  Plotly.newPlot(el.dataset.target, fig.data, fig.layout, {responsive: true, displaylogo: false});
});
document.querySelectorAll('table.flsim-table').forEach(function (table) {
  table.querySelectorAll('th').forEach(function (th, col) {
    th.addEventListener('click', function () {
      var body = table.tBodies[0], rows = Array.from(body.rows);
      var asc = th.dataset.order !== 'asc'; th.dataset.order = asc ? 'asc' : 'desc';
      rows.sort(function (a, b) {
        var x = a.cells[col].textContent.trim(), y = b.cells[col].textContent.trim();
        if (x === '' || y === '') { return (x === '') - (y === ''); }  // blanks last
        var nx = Number(x), ny = Number(y);
        var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
        return asc ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


def _figure_block(key: str, fig: go.Figure) -> str:
    target = f"flsim-fig-{key}"
    # plotly's JSON escapes '<' and '>' as \\u003c / \\u003e, so it cannot close the script tag.
    payload = fig.to_json()
    return (
        f'<div id="{target}" class="flsim-figure"></div>\n'
        f'<script type="application/json" class="flsim-figure-data" data-target="{target}" '
        f'data-panel="{html.escape(key)}">{payload}</script>'
    )


def render_report(df: pd.DataFrame, run_table: pd.DataFrame | None = None, title: str | None = None) -> str:
    """The full HTML document for already loaded runs (see :func:`write_report`)."""
    title = title or "flsim report"
    figures = build_figures(df)
    summary = summarize_runs(df, run_table)
    n_runs = len(summary)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style>",
        # Embedded once; the whole page works without network access.
        f'<script type="text/javascript">{get_plotlyjs()}</script>',
        "</head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="note">{n_runs} run(s). Click a legend entry to hide a run in all panels of a figure; '
        "click a table header to sort.</p>",
        "<h2>Runs</h2>",
        _table_html(summary.drop(columns=["run_dir"]), "flsim-runs"),
    ]
    if not summary.empty and summary.groupby(["scenario", "algorithm"]).size().max() >= 2:
        parts += [
            "<h2>By scenario and algorithm</h2>",
            _table_html(summarize_groups(summary), "flsim-groups"),
        ]
    if not figures:
        parts.append('<p class="note">No metric rows to plot yet.</p>')
    for key, fig in figures.items():
        parts.append(_figure_block(key, fig))
    parts += [f"<script>{_BOOT_JS}</script>", "</body></html>", ""]
    return "\n".join(parts)


def _atomic_write_text(path: Path, text: str) -> None:
    """Write via a temp file in the same directory and ``os.replace`` it into place.

    A reader (a browser refresh, a CI artifact upload) then never sees a half-written report.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_report(paths: PathLike | Iterable[PathLike], out_path: PathLike, title: str | None = None) -> Path:
    """Write an offline HTML report comparing every run found under ``paths``.

    ``paths`` may be run directories, scenario directories or results roots (see
    :func:`~flsim.results.loading.find_run_dirs`). Raises ``ValueError`` when no run is
    found, so that a mistyped path fails loudly instead of producing an empty page.
    """
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    paths = list(paths)
    run_table = load_run_table(paths)
    if run_table.empty:
        raise ValueError(f"no run directories (with metrics.jsonl or metrics.parquet) under {paths}")
    df = load_runs(paths)
    out = Path(out_path)
    _atomic_write_text(out, render_report(df, run_table, title))
    log.info("wrote report for %d run(s) to %s", len(run_table), out)
    return out
