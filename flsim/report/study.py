"""The study section of reports and dashboards: criteria tables and each study's own figures.

A study run's ``summary.json`` carries ``study``, ``pass``, ``criteria`` and ``figures`` (its
:class:`~flsim.studies.spec.FigureSpec` list as dicts; runs written before figures were stored
fall back to the registered study's declaration). The figures are built here as plain plotly
dicts from the run's metric rows, so the HTML report and the live dashboard draw the same plot.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np
import pandas as pd

from flsim.report.figures import Figure, color, values

__all__ = [
    "criteria_rows",
    "figure_specs",
    "is_study_run",
    "study_figure",
    "study_payload",
    "study_section",
]


def is_study_run(summary: dict[str, Any]) -> bool:
    return isinstance(summary.get("study"), str) and isinstance(summary.get("criteria"), dict)


def figure_specs(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The run's figure specs: from its summary, else from the registered study (if any)."""
    stored = summary.get("figures")
    if isinstance(stored, list):
        return [f for f in stored if isinstance(f, dict) and "x" in f]
    from flsim.studies.spec import load_builtin_studies

    try:
        spec = load_builtin_studies().get(str(summary.get("study")))
    except Exception:  # a broken study module must not take the report down with it
        return []
    return [f.as_dict() for f in spec.figures] if spec is not None else []


def criteria_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per criterion: name, value, op, threshold, verdict and whether it gates."""
    rows = []
    for name, c in (summary.get("criteria") or {}).items():
        gate = bool(c.get("gate", True))
        verdict = ("pass" if c.get("pass") else "FAIL") if gate else ("holds" if c.get("pass") else "not met")
        rows.append(
            {
                "criterion": name,
                "value": c.get("value"),
                "op": c.get("op"),
                "threshold": c.get("threshold"),
                "verdict": verdict,
                "gate": "gate" if gate else "claim (not gating)",
            }
        )
    return rows


def _rows_for(frame: pd.DataFrame, spec: dict[str, Any]) -> pd.DataFrame:
    """The rows a figure spec draws: its ``where`` filter applied, rows lacking ``x`` dropped."""
    x = spec["x"]
    if x not in frame.columns:
        return frame.iloc[0:0]
    keep = frame[x].notna()
    for column, wanted in (spec.get("where") or {}).items():
        if column not in frame.columns:
            return frame.iloc[0:0]
        keep &= frame[column].astype(object) == wanted
    return frame[keep]


def study_figure(frame: pd.DataFrame, spec: dict[str, Any]) -> Figure:
    """One plotly figure of one run's metric rows: a trace per y column × series value, by x."""
    rows = _rows_for(frame, spec)
    series = spec.get("series")
    groups = rows.groupby(series, sort=True) if series in rows.columns else [(None, rows)]
    y_columns = list(spec.get("y", ()))
    traces = [
        _trace(group, spec["x"], y, value, i * len(y_columns) + k)
        for i, (value, group) in enumerate(groups)
        for k, y in enumerate(y_columns)
        if y in group.columns
    ]
    log_x = {"type": "log"} if spec.get("log_x") else {}
    log_y = {"type": "log"} if spec.get("log_y") else {}
    layout = {
        "title": {"text": spec.get("title") or ", ".join(y_columns)},
        "xaxis": {"title": {"text": spec["x"]}, **log_x},
        "yaxis": {"title": {"text": ", ".join(y_columns)}, **log_y},
        "height": 420,
        "meta": {"flsim_study_figure": spec.get("title", "")},
    }
    return {"data": traces, "layout": layout}


def _trace(group: pd.DataFrame, x: str, y: str, series: Any, index: int) -> dict[str, Any]:
    xs = pd.to_numeric(group[x], errors="coerce").to_numpy(dtype=float)
    ys = pd.to_numeric(group[y], errors="coerce").to_numpy(dtype=float)
    keep = np.isfinite(xs) & np.isfinite(ys)
    order = np.argsort(xs[keep], kind="stable")
    name = y if series is None else f"{y} {series}"
    return {
        "type": "scatter",
        "mode": "lines+markers",
        "x": values(xs[keep][order]),
        "y": values(ys[keep][order]),
        "name": name,
        "line": {"color": color(index)},
        "marker": {"size": 5},
    }


def study_payload(summary: dict[str, Any], rows: list[dict[str, Any]] | pd.DataFrame) -> dict[str, Any]:
    """What the dashboard serves for one study run: verdict, criteria, figure specs and figures."""
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
    specs = figure_specs(summary)
    return {
        "study": summary.get("study"),
        "pass": summary.get("pass"),
        "criteria": criteria_rows(summary),
        "figures": specs,
        "plots": [study_figure(frame, spec) for spec in specs] if not frame.empty else [],
    }


# -- HTML -----------------------------------------------------------------------------------------
_CSS = (
    ".verdict-pass{color:#2ca02c;font-weight:600}.verdict-fail{color:#d62728;font-weight:600}"
    ".verdict-claim{color:#b8860b}"
)


def _value(v: Any) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return f"{v:.4g}" if isinstance(v, int | float) and not isinstance(v, bool) else str(v)


def criteria_table(summary: dict[str, Any], table_id: str) -> str:
    """The criteria of one run as an escaped, sortable ``flsim-table``."""
    head = "".join(f"<th>{c}</th>" for c in ("criterion", "value", "op", "threshold", "verdict", "gate"))
    body = []
    for row in criteria_rows(summary):
        cls = {"pass": "pass", "holds": "pass", "FAIL": "fail", "not met": "claim"}[row["verdict"]]
        cells = [row["criterion"], _value(row["value"]), row["op"], _value(row["threshold"])]
        tds = "".join(f"<td>{html.escape(str(c))}</td>" for c in cells)
        verdict, gate = html.escape(row["verdict"]), html.escape(row["gate"])
        body.append(f'<tr>{tds}<td class="verdict-{cls}">{verdict}</td><td>{gate}</td></tr>')
    table_id = html.escape(table_id)
    return (
        f'<table id="{table_id}" class="flsim-table flsim-criteria"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def study_section(results: Any, figure_block: Any) -> list[str]:
    """HTML parts of the report's "Studies" section (empty when no run is a study run).

    ``results`` is a :class:`~flsim.results.loading.Results`; ``figure_block(key, figure)``
    renders one figure the way the rest of the report does.
    """
    runs = [(r, s) for r, s in results.summaries.items() if is_study_run(s)]
    if not runs:
        return []
    parts = [
        f"<style>{_CSS}</style>",
        "<h2>Studies</h2>",
        '<p class="note">Each study run: its criteria (value op threshold, the verdict computed by the '
        "study; claims marked <i>not gating</i> are reported but do not fail the study), then the "
        "study's own figures.</p>",
    ]
    metrics = results.metrics
    for i, (run_dir, summary) in enumerate(sorted(runs)):
        verdict = "PASS" if summary.get("pass") else "FAIL"
        title = f"{summary['study']} · seed {summary.get('seed', '?')} · {verdict}"
        parts += [f"<h3>{html.escape(title)}</h3>", criteria_table(summary, f"flsim-criteria-{i}")]
        rows = metrics[metrics["run_dir"] == run_dir] if "run_dir" in metrics.columns else metrics.iloc[0:0]
        for j, spec in enumerate(figure_specs(summary)):
            parts.append(figure_block(f"study-{i}-{j}", study_figure(rows, spec)))
    return parts
