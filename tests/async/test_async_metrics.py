"""Metrics of event runs: the running average under stochastic gradients, event counts by
type, and report panels against virtual time, gradients and communications (docs/algorithms.md A)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

import flsim
from flsim.report import write_report

DASHBOARDS = Path(__file__).resolve().parents[2] / "dashboards"


def test_stochastic_dadao_reports_a_decreasing_running_average(tmp_path, ridge, rows):
    raw = ridge({"name": "dadao", "batch_size": 2}, budget={"time": 150.0}, eval={"every_time": 15.0})
    data = rows(flsim.run(raw, run_dir=tmp_path / "run").run_dir)
    averaged = np.array([row["averaged_sq_dist_to_opt"] for row in data])
    assert np.all(np.diff(averaged) < 0)
    assert averaged[-1] < 0.05 * averaged[0]
    # The last iterate keeps fluctuating at the noise floor; its average does not.
    last = np.array([row["mean_sq_dist_to_opt"] for row in data])
    assert np.std(np.diff(averaged[-4:])) < np.std(np.diff(last[-4:]))


def test_deterministic_runs_report_no_running_average(tmp_path, ridge, rows):
    data = rows(flsim.run(ridge("dadao"), run_dir=tmp_path / "run").run_dir)
    assert all("averaged_sq_dist_to_opt" not in row for row in data)


def test_event_counts_by_type_add_up(tmp_path, ridge, rows):
    for name in ("dadao", "async_gossip_sgd", "adom_plus"):
        data = rows(flsim.run(ridge(name), run_dir=tmp_path / name).run_dir)
        for row in data:
            assert row["gradient_events"] == row["grad_evals"]
            assert row["communication_events"] == row["communications"]
            if name != "adom_plus":  # ADOM+: one event per synchronous iteration
                assert row["events"] == row["grad_evals"] + row["communications"]
        assert data[-1]["communications"] > 0 and data[-1]["grad_evals"] > 0


def test_the_async_dashboard_plots_against_gradients_and_communications(tmp_path, ridge):
    for name in ("dadao", "async_gossip_sgd", "adom_plus"):
        flsim.run(ridge(name, name="async_report"), run_dir=tmp_path / "results" / "async_report" / name)
    out = write_report(tmp_path / "results", tmp_path / "report.html", spec=DASHBOARDS / "async_dadao.yaml")
    text = out.read_text()
    payloads = re.findall(r'class="flsim-figure-data"[^>]*>(.*?)</script>', text, re.S)
    axes = set()
    for payload in payloads:
        figure = json.loads(payload)
        for key, value in figure.get("layout", {}).items():
            if key.startswith("xaxis"):
                axes.add(json.dumps(value.get("title", "")))
    joined = " ".join(axes)
    assert "gradient evaluations" in joined and "communications" in joined
