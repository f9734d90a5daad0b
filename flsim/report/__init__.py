"""Comparison reports over finished (or still running) runs.

``write_report`` renders an offline HTML page (per-run traces, or aggregated groups when given
a dashboard spec); ``load_runs`` is re-exported so that report users need one import for
both reading and rendering.
"""

from flsim.report.html import NoRunsError, build_figures, render_report, summarize_runs, write_report
from flsim.report.spec import DashboardSpec, load_spec
from flsim.results.loading import find_run_dirs, load_results, load_runs

__all__ = [
    "DashboardSpec",
    "NoRunsError",
    "build_figures",
    "find_run_dirs",
    "load_results",
    "load_runs",
    "load_spec",
    "render_report",
    "summarize_runs",
    "write_report",
]
