"""Self-contained, offline HTML comparison report over one or more runs.

The report is meant to be opened from a cluster scratch disk or mailed around, so it embeds
plotly.js once (from the installed ``plotly`` package, never a CDN) and the figure data as
inert JSON blocks that one small script hands to ``Plotly.newPlot``. That layout also lets
tests read the figures back out of the file without executing any JavaScript.

Without a spec the report draws every run as its own trace (good for a handful of runs);
with a :mod:`dashboard spec <flsim.report.spec>` it draws one aggregated curve per group and
adds final-metric and time-to-target tables (good for sweeps of hundreds of runs).
"""

from __future__ import annotations

import html
import json
import logging
import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from flsim.config.errors import ConfigError
from flsim.report import aggregate
from flsim.report.figures import (
    BAND_METRICS,
    PANELS,
    X_AXES,
    X_TITLES,
    Figure,
    Panel,
    as_graph_objects,
    default_figures,
    figure_json,
    run_label,
    spec_panel_figure,
)
from flsim.report.spec import DashboardSpec, FinalTableSpec, TargetTableSpec, load_spec
from flsim.report.study import study_section
from flsim.results.loading import PathLike, Results, config_value, flatten_config, load_results
from flsim.results.writer import atomic_write_text

__all__ = [
    "BAND_METRICS",
    "PANELS",
    "X_AXES",
    "NoRunsError",
    "Panel",
    "build_figures",
    "config_differences",
    "render_report",
    "run_label",
    "summarize_runs",
    "write_report",
]

log = logging.getLogger(__name__)


class NoRunsError(ValueError):
    """No run directory under the given paths (a ``ValueError`` for older callers)."""


#: Config keys never shown as differences: identity columns already in the table, or noise.
_DIFF_SKIP_PREFIXES = ("versions.", "output.")
_DIFF_SKIP_KEYS = {"name", "seed", "algorithm.name", "tags", "notes"}

#: Final metrics shown in the run table when a run reports them, in display order.
_RUN_TABLE_METRICS = [
    "test_acc",
    "test_loss",
    "train_loss",
    "optimality_gap",
    "dist_to_opt",
    "consensus_distance",
]


def build_figures(df: pd.DataFrame) -> dict[str, Any]:
    """Figures for a :func:`~flsim.results.loading.load_runs` frame, keyed by panel name.

    Keys are metric columns from :data:`PANELS` that some run reports, plus ``"seed_bands"``
    when a (scenario, algorithm) pair has several seeds. Returns ``plotly.graph_objects``
    figures for notebooks; the HTML writer uses the faster dict figures directly.
    """
    return {key: as_graph_objects(fig) for key, fig in default_figures(df).items()}


# -- run table ------------------------------------------------------------------------------------
def _hashable(value: Any) -> Any:
    if isinstance(value, list | dict):
        return json.dumps(value, sort_keys=True)
    return value


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str) and "," not in value and value.strip() == value and value:
        return value
    return json.dumps(value) if not isinstance(value, str) else repr(value)


def config_differences(run_dirs: list[str], configs: dict[str, dict[str, Any]]) -> list[str]:
    """Per run, the dotted config keys whose values differ across ``run_dirs``, as ``k=v, ...``.

    Identity keys already in their own columns (scenario name, seed, algorithm name) and
    bookkeeping (package versions, output dir) are left out, so that what remains is what a
    reader needs to tell two runs apart. A key missing from a run (e.g. ``algorithm.mu`` of
    FedProx only) differs, but is shown only where it is set.
    """
    if len(run_dirs) < 2:
        return [""] * len(run_dirs)
    flat = pd.DataFrame.from_records([flatten_config(configs.get(r, {})) for r in run_dirs])
    keep = [c for c in flat.columns if c not in _DIFF_SKIP_KEYS and not c.startswith(_DIFF_SKIP_PREFIXES)]
    flat = flat[keep]
    comparable = flat.map(_hashable)
    varying = [c for c in comparable.columns if comparable[c].nunique(dropna=False) > 1]
    if not varying:
        return [""] * len(run_dirs)
    sub = flat[varying]
    out = []
    for row in sub.itertuples(index=False, name=None):
        items = [
            f"{k}={_show(v)}"
            for k, v in zip(varying, row, strict=True)
            if v is not None and not (isinstance(v, float) and math.isnan(v))
        ]
        out.append(", ".join(items))
    return out


def seed_group_names(runs: pd.DataFrame, configs: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Config hash → readable group name: scenario / algorithm and what sets the group apart.

    A group is the runs whose resolved configs agree on everything but the seed, so only
    seeds are ever pooled. Where two groups would read alike (they differ in a key the
    differences leave out) the hash is appended.
    """
    reps = runs.drop_duplicates("config_hash")
    diffs = config_differences(reps["run_dir"].tolist(), configs)
    names = {
        str(row.config_hash): f"{row.scenario} / {row.algorithm}" + (f" {diff}" if diff else "")
        for row, diff in zip(reps.itertuples(index=False), diffs, strict=True)
    }
    if len(set(names.values())) < len(names):
        names = {digest: f"{name} [{digest}]" for digest, name in names.items()}
    return names


def gossip_matrix_kind(summary: dict[str, Any]) -> str | None:
    """``row-stochastic only`` or ``doubly stochastic`` from a run's ``summary.json`` topology.

    A k-peer W (docs/algorithms.md D) does not preserve the nodes' average, which changes what
    its consensus distance means, so the run table says so; ``None`` for runs without one.
    """
    topology = summary.get("topology")
    if not isinstance(topology, dict) or "row_stochastic_only" not in topology:
        return None
    return "row-stochastic only" if topology["row_stochastic_only"] else "doubly stochastic"


def summarize_runs(
    df: pd.DataFrame,
    run_table: pd.DataFrame | None = None,
    configs: dict[str, dict[str, Any]] | None = None,
    metrics: list[str] | None = None,
    summaries: dict[str, dict[str, Any]] | None = None,
) -> pd.DataFrame:
    """Final metrics per run, one row per run, with config differences and wall time.

    ``run_table`` (``Results.runs``) adds runs that have no metric rows, e.g. a run that
    failed before its first evaluation, so that the table still shows them with their
    status. ``configs`` enables the ``differs`` column. ``metrics`` overrides which final
    metrics are shown. ``summaries`` (``Results.summaries``) adds ``gossip_W``
    (:func:`gossip_matrix_kind`) for decentralized runs. Computed with one grouped pass over
    the metric rows.
    """
    base = run_table if run_table is not None else df.drop_duplicates("run_dir")
    if base.empty:
        return pd.DataFrame(columns=["scenario", "algorithm", "seed", "run_id", "status", "run_dir"])
    base = base.reset_index(drop=True)
    labels = [c for c in ("config_hash", "tags", "notes") if c in base.columns]
    out = base[["scenario", "algorithm", "seed", "run_id", "status", *labels]].copy()
    out = out.drop(columns=[c for c in ("tags", "notes") if c in out and not out[c].astype(bool).any()])
    run_dirs = base["run_dir"].tolist()
    if configs is not None:
        out["differs"] = config_differences(run_dirs, configs)
    if summaries is not None:
        out["gossip_W"] = [gossip_matrix_kind(summaries.get(r, {})) for r in run_dirs]
    wanted = list(dict.fromkeys(metrics if metrics is not None else _RUN_TABLE_METRICS))
    counters = ["round", "virtual_time", "bytes_total", "grad_evals", "wall_time"]
    last = aggregate.final_values(df, wanted + counters).reindex(run_dirs) if not df.empty else None
    final = pd.DataFrame(index=pd.Index(run_dirs))
    for m in wanted:
        final[f"final_{m}"] = last[m].to_numpy() if last is not None else np.nan
        if m == "test_acc" and not df.empty and "test_acc" in df.columns:
            final["best_test_acc"] = df.groupby("run_dir")["test_acc"].max().reindex(run_dirs).to_numpy()
    final["rounds"] = last["round"].to_numpy() if last is not None else np.nan
    for c in ("virtual_time", "bytes_total", "grad_evals"):
        final[c] = last[c].to_numpy() if last is not None else np.nan
    wall = base["wall_seconds"] if "wall_seconds" in base.columns else pd.Series(np.nan, index=base.index)
    last_wall = last["wall_time"].to_numpy() if last is not None else np.nan
    final["wall_time"] = wall.astype(float).fillna(pd.Series(last_wall, index=base.index)).to_numpy()
    summary = pd.concat([out, final.reset_index(drop=True)], axis=1)
    summary["run_dir"] = run_dirs
    # Drop columns no run reports (e.g. accuracy on a regression task), never the identity ones.
    identity = {"scenario", "algorithm", "seed", "run_id", "status", "config_hash", "run_dir", "differs"}
    empty = [c for c in summary.columns if c not in identity and summary[c].isna().all()]
    summary = summary.drop(columns=empty)
    return summary.sort_values(["scenario", "algorithm", "seed", "run_id"], na_position="last").reset_index(
        drop=True
    )


# -- HTML tables ----------------------------------------------------------------------------------
Formatter = Callable[[Any], str]


def _num(fmt: str) -> Formatter:
    return lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def _si(v: Any) -> str:
    """Bytes with an SI prefix: 1.2 MB reads faster than 1200000."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if math.isinf(v):
        return "not reached"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:.3g} {unit}"
    return f"{v:.0f} B"


_FORMATS: dict[str, Formatter] = {
    "seed": lambda v: "" if v is None or pd.isna(v) else str(int(v)),
    "final_test_acc": _num(".4f"),
    "best_test_acc": _num(".4f"),
    "final_optimality_gap": _num(".3e"),
    "final_dist_to_opt": _num(".3e"),
    "final_consensus_distance": _num(".3e"),
    "rounds": _num(".0f"),
    "virtual_time": _num(".4g"),
    "bytes_total": _si,
    "grad_evals": _num(".0f"),
    "wall_time": _num(".1f"),
}
_HEADERS = {"bytes_total": "bytes_total", "wall_time": "wall_time_s"}


def _default_format(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float | np.floating):
        return "" if math.isnan(v) else f"{v:.4g}"
    return "" if v is pd.NA else str(v)


def html_table(
    frame: pd.DataFrame,
    table_id: str,
    formats: dict[str, Formatter] | None = None,
    sort_keys: dict[str, list[Any]] | None = None,
    wide: tuple[str, ...] = (),
) -> str:
    """A sortable ``<table>``: cells are escaped; numeric cells carry ``data-sort`` raw values.

    ``sort_keys`` gives explicit per-column sort values (e.g. the median behind a
    "median [q25, q75]" text); ``wide`` columns wrap and align left (long config diffs).
    """
    formats = {**_FORMATS, **(formats or {})}
    sort_keys = sort_keys or {}
    head = "".join(f"<th>{html.escape(_HEADERS.get(c, c))}</th>" for c in frame.columns)
    body = []
    columns = [frame[c].tolist() for c in frame.columns]
    names = list(frame.columns)
    for i in range(len(frame)):
        cells = []
        for j, name in enumerate(names):
            value = columns[j][i]
            text = formats.get(name, _default_format)(value)
            attrs = ""
            if name in wide:
                attrs, text = _clipped_items(text)
            text = html.escape(text)
            if name == "status" and value == "diverged":
                attrs = ' class="s-diverged"'
            key = sort_keys[name][i] if name in sort_keys else value
            if isinstance(key, int | float | np.integer | np.floating) and not isinstance(key, bool):
                k = float(key)
                if not math.isnan(k):
                    attrs += f' data-sort="{k!r}"' if math.isfinite(k) else ' data-sort="Infinity"'
            cells.append(f"<td{attrs}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<table id="{html.escape(table_id)}" class="flsim-table"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


#: Items of a wide cell (``k=v, k=v``) shown before the rest moves to the cell's tooltip.
WIDE_ITEMS = 4


def _clipped_items(text: str) -> tuple[str, str]:
    """A long ``differs`` cell keeps its first items and a count; the full text is its tooltip.

    A sweep over many keys otherwise grows the cell to ten lines and the table off the page.
    """
    items = text.split(", ")
    if len(items) <= WIDE_ITEMS:
        return ' class="wide"', text
    shown = ", ".join(items[:WIDE_ITEMS]) + f", … (+{len(items) - WIDE_ITEMS} more)"
    return f' class="wide" title="{html.escape(text)}"', shown


def _interval(center: float, lo: float, hi: float, fmt: Formatter) -> str:
    if math.isnan(center):
        return ""
    if math.isinf(center):
        return "not reached"
    if lo == hi == center or (math.isnan(lo) and math.isnan(hi)):
        return fmt(center)
    return f"{fmt(center)} [{fmt(lo)}, {fmt(hi)}]"


def _measure_format(name: str) -> Formatter:
    if name.startswith("bytes") or name == "bytes_total":
        return _si
    if name in ("round", "grad_evals", "communications", "events"):
        return lambda v: "∞" if math.isinf(v) else f"{v:.7g}"  # a median of counts may be x.5
    if name in ("optimality_gap", "dist_to_opt", "consensus_distance", "error_norm"):
        return lambda v: "∞" if math.isinf(v) else f"{v:.3e}"
    return lambda v: "∞" if math.isinf(v) else f"{v:.4g}"


def _group_table_html(summary: pd.DataFrame, columns: list[str], table_id: str, extra: list[str]) -> str:
    """``summarize_groups`` output as "centre [lo, hi]" cells, sortable by the centre."""
    frame = summary[["group", *extra]].copy()
    keys: dict[str, list[Any]] = {}
    for c in columns:
        fmt = _measure_format(c)
        frame[c] = [
            _interval(m, lo, hi, fmt)
            for m, lo, hi in zip(summary[c], summary[f"{c}_lo"], summary[f"{c}_hi"], strict=True)
        ]
        keys[c] = summary[c].tolist()
    return html_table(frame, table_id, formats={c: str for c in columns}, sort_keys=keys)


# -- page -----------------------------------------------------------------------------------------
_CSS = """
.s-diverged{color:#fff;background:#ff7f0e;font-weight:600}
.warning{background:#fff4e5;border-left:4px solid #ff7f0e;padding:0.4em 0.8em}
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.5em} h2{font-size:1.2em;margin-top:1.6em}
.flsim-table{border-collapse:collapse;font-size:0.85em}
.flsim-table th,.flsim-table td{padding:3px 8px;border-bottom:1px solid #ddd;
  text-align:right;white-space:nowrap}
.flsim-table td.wide{white-space:normal;text-align:left;min-width:18em;max-width:48em;font-size:0.95em}
.flsim-table th{background:#f4f4f4;cursor:pointer;position:sticky;top:0}
.flsim-figure{width:100%;min-height:420px}
.table-scroll{max-height:36em;overflow:auto;border:1px solid #eee}
.note{color:#666;font-size:0.85em}
"""

# Renders every <script type="application/json" class="flsim-figure-data"> into its div, and
# makes table headers click-sortable; no network access, no external libraries beyond Plotly.
_BOOT_JS = """
(function () {
  var tmplEl = document.getElementById('flsim-template');
  var template = tmplEl ? JSON.parse(tmplEl.textContent) : undefined;
  document.querySelectorAll('script.flsim-figure-data').forEach(function (el) {
    var fig = JSON.parse(el.textContent);
    if (template && !fig.layout.template) { fig.layout.template = template; }
    Plotly.newPlot(el.dataset.target, fig.data, fig.layout, {responsive: true, displaylogo: false});
  });
  function key(cell) {
    var s = cell.dataset.sort;
    return s !== undefined ? Number(s) : cell.textContent.trim();
  }
  document.querySelectorAll('table.flsim-table').forEach(function (table) {
    table.querySelectorAll('th').forEach(function (th, col) {
      th.addEventListener('click', function () {
        var body = table.tBodies[0], rows = Array.from(body.rows);
        var asc = th.dataset.order !== 'asc'; th.dataset.order = asc ? 'asc' : 'desc';
        rows.sort(function (a, b) {
          var x = key(a.cells[col]), y = key(b.cells[col]);
          if (x === '' || y === '') { return (x === '') - (y === ''); }  // blanks last
          var nx = Number(x), ny = Number(y);
          var c = (!isNaN(nx) && !isNaN(ny)) ? (nx < ny ? -1 : nx > ny ? 1 : 0)
                                             : String(x).localeCompare(String(y));
          return asc ? c : -c;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
})();
"""


def _figure_block(key: str, fig: Figure) -> str:
    target = f"flsim-fig-{key}"
    return (
        f'<div id="{html.escape(target)}" class="flsim-figure"></div>\n'
        f'<script type="application/json" class="flsim-figure-data" data-target="{html.escape(target)}" '
        f'data-panel="{html.escape(key)}">{figure_json(fig)}</script>'
    )


def _template_block() -> str:
    import plotly.io as pio

    return (
        '<script type="application/json" id="flsim-template">'
        + figure_json(pio.templates["plotly_white"].to_plotly_json())
        + "</script>"
    )


#: ``--plotly file``: the shared copy of plotly.js written beside the reports.
PLOTLY_FILE = "plotly.min.js"


def _plotly_tag(plotly: str) -> str:
    """plotly.js embedded (``inline``: the page works alone) or loaded from :data:`PLOTLY_FILE`."""
    if plotly == "file":
        return f'<script type="text/javascript" src="{PLOTLY_FILE}"></script>'
    from plotly.offline import get_plotlyjs

    return f'<script type="text/javascript">{get_plotlyjs()}</script>'


def _page(title: str, body: list[str], plotly: str = "inline") -> str:
    from flsim import __version__

    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f'<meta name="generator" content="flsim {html.escape(__version__)}">',
            '<link rel="icon" href="data:,">',  # no favicon request, so no 404 in the console
            f"<title>{html.escape(title)}</title>",
            f"<style>{_CSS}</style>",
            # Embedded once or read from beside the page: never from the network.
            _plotly_tag(plotly),
            "</head><body>",
            f"<h1>{html.escape(title)}</h1>",
            *body,
            _template_block(),
            f"<script>{_BOOT_JS}</script>",
            "</body></html>",
            "",
        ]
    )


def _runs_section(summary: pd.DataFrame, extra_note: str = "") -> list[str]:
    note = (
        '<p class="note">Click a table header to sort. <i>differs</i> lists the config keys whose '
        "values vary across the runs in this report." + extra_note + "</p>"
    )
    table = html_table(summary.drop(columns=["run_dir"]), "flsim-runs", wide=("differs",))
    return ["<h2>Runs</h2>", note, f'<div class="table-scroll">{table}</div>']


def _default_body(results: Results) -> list[str]:
    df = results.metrics
    names = seed_group_names(results.runs, results.configs)
    figures = default_figures(df, names)
    summary = summarize_runs(df, results.runs, results.configs, summaries=results.summaries)
    parts = [
        f'<p class="note">{len(summary)} run(s). Click a legend entry to hide a run in all panels of a '
        "figure. For sweeps, <code>flsim report --spec dashboards/&lt;name&gt;.yaml</code> aggregates "
        "seeds into median curves with bands.</p>",
        *_runs_section(summary),
    ]
    groups = summary.set_index("run_dir")["config_hash"].map(names) if not summary.empty else summary
    if not summary.empty and groups.value_counts().max() >= 2:
        finals = [c for c in ("final_test_acc", "best_test_acc", "final_test_loss") if c in summary]
        finals += [c for c in ("final_optimality_gap",) if c in summary]
        table = aggregate.summarize_groups(summary.set_index("run_dir")[finals], groups)
        parts += [
            "<h2>By configuration (seeds pooled)</h2>",
            '<p class="note">Median [25th, 75th percentile] over the seeds of each configuration: runs '
            "are pooled only when their resolved configs differ in nothing but the seed (same "
            "<code>config_hash</code>). A spec (<code>--spec</code>) can group otherwise.</p>",
            _group_table_html(table, finals, "flsim-groups", ["runs"]),
        ]
    if not figures and df.empty:  # study runs plot their own figures (the Studies section)
        parts.append('<p class="note">No metric rows to plot yet.</p>')
    parts += [_figure_block(key, fig) for key, fig in figures.items()]
    parts += study_section(results, _figure_block)
    return parts


def filter_results(results: Results, spec: DashboardSpec) -> Results:
    """The runs (and their rows) that pass ``spec.filter``."""
    flt = spec.filter
    runs = results.runs
    keep = np.ones(len(runs), dtype=bool)
    for column, allowed in (("scenario", flt.scenario), ("algorithm", flt.algorithm), ("status", flt.status)):
        if allowed is not None:
            keep &= runs[column].astype(str).isin([str(a) for a in allowed]).to_numpy()
    for key, allowed in flt.config.items():
        text = {str(a) for a in allowed}
        got = [config_value(results.configs.get(r, {}), key) for r in runs["run_dir"]]
        keep &= np.array([v in allowed or str(v) in text for v in got], dtype=bool)
    if keep.all():
        return results
    kept = runs[keep].reset_index(drop=True)
    dirs = set(kept["run_dir"])
    metrics = results.metrics[results.metrics["run_dir"].isin(dirs)].reset_index(drop=True)
    configs = {k: v for k, v in results.configs.items() if k in dirs}
    summaries = {k: v for k, v in results.summaries.items() if k in dirs}
    return Results(runs=kept, metrics=metrics, configs=configs, summaries=summaries)


def spec_figures(results: Results, spec: DashboardSpec) -> dict[str, Figure]:
    """``panel-<i>`` → figure for every panel of ``spec`` (runs already filtered)."""
    groups = aggregate.group_labels(results.runs, results.configs, spec.group_keys)
    return {
        f"panel-{i}": spec_panel_figure(results.metrics, groups, spec, panel, i)
        for i, panel in enumerate(spec.panels)
    }


def _spec_tables(results: Results, spec: DashboardSpec, groups: pd.Series) -> list[str]:
    parts: list[str] = []
    agg = spec.aggregate
    band = {"iqr": "25th, 75th percentile", "minmax": "min, max", "none": ""}[agg.band]
    what = f"{agg.center}" + (f" [{band}]" if band else "")
    for i, table in enumerate(spec.tables):
        if isinstance(table, FinalTableSpec):
            per_run = aggregate.final_values(results.metrics, table.metrics).reindex(groups.index)
            summary = aggregate.summarize_groups(per_run, groups, agg.center, agg.band)
            title = table.title or "Final metrics"
            note = f"{what} over the runs of each group of each run's last value."
            cols = table.metrics
            extra = ["runs"]
        else:
            assert isinstance(table, TargetTableSpec)
            direction = spec.target_direction(table)
            summary = aggregate.time_to_target(
                results.metrics,
                groups,
                table.metric,
                table.target,
                direction,
                table.measures,
                agg.center,
                agg.band,
            )
            summary["reached"] = [
                f"{r}/{n}" for r, n in zip(summary["reached"], summary["runs"], strict=True)
            ]
            sign = "≥" if direction == "above" else "≤"
            title = table.title or f"To reach {table.metric} {sign} {table.target:g}"
            note = (
                f"{what} over the runs of each group, at the first evaluation where {table.metric} "
                f"{sign} {table.target:g}; a run that never gets there counts as ∞ (so the median reads "
                "'not reached' unless more than half of the runs reached it)."
            )
            cols = list(table.measures)
            extra = ["runs", "reached"]
        if summary.empty:
            parts += [f"<h2>{html.escape(title)}</h2>", '<p class="note">No runs.</p>']
            continue
        parts += [
            f"<h2>{html.escape(title)}</h2>",
            f'<p class="note">{html.escape(note)}</p>',
            _group_table_html(summary.rename(columns={"group": "group"}), cols, f"flsim-table-{i}", extra),
        ]
    return parts


def _spec_body(results: Results, spec: DashboardSpec, total_runs: int) -> list[str]:
    groups = aggregate.group_labels(results.runs, results.configs, spec.group_keys)
    figures = spec_figures(results, spec)
    wanted = [p.metric for p in spec.panels]
    for t in spec.tables:
        wanted += t.metrics if isinstance(t, FinalTableSpec) else [t.metric]
    wanted = [m for m in dict.fromkeys(wanted) if m not in X_TITLES and m not in ("events",)]
    summary = summarize_runs(
        results.metrics, results.runs, results.configs, metrics=wanted, summaries=results.summaries
    )
    summary.insert(5, "group", summary["run_dir"].map(groups))
    shown = len(results.runs)
    parts = []
    if spec.description:
        parts.append(f"<p>{html.escape(spec.description)}</p>")
    filtered = f" of {total_runs} (filtered)" if shown != total_runs else ""
    parts.append(
        f'<p class="note">{shown} run(s){filtered} in {groups.nunique()} group(s) by '
        f"<code>{html.escape(', '.join(spec.group_keys))}</code>.</p>"
    )
    parts += _spec_tables(results, spec, groups)
    if results.metrics.empty:
        parts.append('<p class="note">No metric rows to plot yet.</p>')
    parts += [_figure_block(key, fig) for key, fig in figures.items()]
    parts += study_section(results, _figure_block)
    parts += _runs_section(summary)
    return parts


def render_report(
    results: Results, title: str | None = None, spec: DashboardSpec | None = None, plotly: str = "inline"
) -> str:
    """The full HTML document for already loaded runs (see :func:`write_report`)."""
    warnings = [f'<p class="warning">{html.escape(line)}</p>' for line in results.warnings]
    if spec is None:
        return _page(title or "flsim report", warnings + _default_body(results), plotly)
    total = len(results.runs)
    filtered = filter_results(results, spec)
    return _page(title or spec.title, warnings + _spec_body(filtered, spec, total), plotly)


def _write_shared_plotly(path: Path) -> None:
    """Write plotly.js unless the same text is already there (reports share one copy)."""
    from plotly.offline import get_plotlyjs

    text = get_plotlyjs()
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        atomic_write_text(path, text)


def write_report(
    paths: PathLike | Iterable[PathLike],
    out_path: PathLike,
    title: str | None = None,
    spec: str | os.PathLike[str] | DashboardSpec | None = None,
    plotly: str = "inline",
) -> Path:
    """Write an offline HTML report comparing every run found under ``paths``.

    ``plotly="file"`` writes plotly.js once beside the report (``plotly.min.js``, shared by
    every report in that folder) instead of embedding its 4.8 MB in each page.

    ``paths`` may be run directories, scenario directories or results roots (see
    :func:`~flsim.results.loading.find_run_dirs`). ``spec`` is a dashboard spec file (or a
    parsed :class:`DashboardSpec`); it is validated before any run is read, so a typo fails
    fast with a :class:`~flsim.config.errors.ConfigError`. Raises ``ValueError`` when no run is
    found, so that a mistyped path fails loudly instead of producing an empty page.
    """
    parsed = load_spec(spec) if spec is not None else None
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    paths = list(paths)
    results = load_results(paths)
    if results.runs.empty:
        raise NoRunsError(f"no run directories (with metrics.jsonl or metrics.parquet) under {paths}")
    if plotly not in ("inline", "file"):
        raise ConfigError("--plotly", plotly, "choose inline or file")
    out = Path(out_path)
    if plotly == "file":
        _write_shared_plotly(out.parent / PLOTLY_FILE)
    atomic_write_text(out, render_report(results, title, parsed, plotly))
    log.info("wrote report for %d run(s) to %s", len(results.runs), out)
    return out
