"""A k-peer run says that its W is only row-stochastic (docs/algorithms.md D, issue 21).

Three places: ``summary.json`` (``topology.row_stochastic_only``), one log warning when the
run's schedule is built, and the ``gossip_W`` column of the report's run table. A run on a
fixed graph records the opposite, so the column tells the two apart.
"""

from __future__ import annotations

import json
import logging

import flsim
from flsim.report import write_report
from flsim.report.html import summarize_runs
from flsim.results.loading import load_results
from tests.builders import tiny_linreg


def _dfedsam(topology: dict) -> dict:
    return tiny_linreg(
        algorithm={"name": "dfedsam", "lr": 0.05, "local_steps": 2, "batch_size": 8, "rho": 0.05},
        clients_per_round=None,
        rounds=3,
        topology=topology,
    )


def test_k_peer_run_records_logs_once_and_reports_row_stochastic_only(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="flsim"):
        flsim.run(_dfedsam({"time_varying": "k_peers", "peers": 2}), run_dir=tmp_path / "runs" / "k")
    topology = json.loads((tmp_path / "runs" / "k" / "summary.json").read_text())["topology"]
    assert topology["row_stochastic_only"] is True
    assert (topology["mixing"], topology["time_varying"], topology["peers"]) == ("k_peers", "k_peers", 2)
    warnings = [r for r in caplog.records if "only row-stochastic" in r.getMessage()]
    assert len(warnings) == 1

    flsim.run(_dfedsam({"kind": "ring"}), run_dir=tmp_path / "runs" / "ring")
    ring = json.loads((tmp_path / "runs" / "ring" / "summary.json").read_text())["topology"]
    assert ring["row_stochastic_only"] is False
    assert ring["mixing"] == "metropolis" and 0 < ring["slem"] < 1

    results = load_results(tmp_path / "runs")
    table = summarize_runs(results.metrics, results.runs, results.configs, summaries=results.summaries)
    by_run = dict(zip(table["run_id"], table["gossip_W"], strict=True))
    assert by_run == {"k": "row-stochastic only", "ring": "doubly stochastic"}
    html = write_report(tmp_path / "runs", tmp_path / "report.html").read_text(encoding="utf-8")
    assert "gossip_W" in html and "row-stochastic only" in html


def test_centralized_runs_have_no_gossip_column(tmp_path):
    flsim.run(tiny_linreg(rounds=1), run_dir=tmp_path / "runs" / "c")
    results = load_results(tmp_path / "runs")
    summary = json.loads((tmp_path / "runs" / "c" / "summary.json").read_text())
    assert "topology" not in summary
    table = summarize_runs(results.metrics, results.runs, results.configs, summaries=results.summaries)
    assert "gossip_W" not in table.columns
