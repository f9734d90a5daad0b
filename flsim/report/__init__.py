"""Comparison reports over finished (or still running) runs.

``write_report`` renders an offline HTML page; ``load_runs`` is re-exported so that report
users need one import for both reading and rendering.
"""

from flsim.report.html import build_figures, summarize_runs, write_report
from flsim.results.loading import find_run_dirs, load_runs

__all__ = ["build_figures", "find_run_dirs", "load_runs", "summarize_runs", "write_report"]
