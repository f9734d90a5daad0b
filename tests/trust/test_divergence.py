"""Item 5: a NaN or infinite loss ends the run as ``diverged`` (exit 1), shown as such."""

from __future__ import annotations

import json

import pytest

import flsim
from flsim.report import write_report
from flsim.results.writer import RunDiverged
from tests.builders import merge, tiny_linreg
from tests.trust.helpers import cli, write_scenario

#: lr = 1e30 sends the least-squares loss to inf within two rounds.
DIVERGES = {"algorithm": {"name": "fedavg", "lr": 1e30, "local_steps": 3, "batch_size": 8}, "rounds": 6}


def test_a_diverging_run_stops_with_status_diverged_and_the_round(tmp_path):
    with pytest.raises(RunDiverged) as caught:
        flsim.run(tiny_linreg(**DIVERGES), run_dir=tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "diverged"
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert summary["diverged"]["round"] == caught.value.round == rows[-1]["round"] < 6
    assert summary["diverged"]["metric"] in ("train_loss", "test_loss")
    assert summary["final"]["round"] == rows[-1]["round"]
    assert (tmp_path / "run" / "metrics.parquet").is_file()


def test_the_cli_exits_1_and_says_diverged(tmp_path, capsys):
    path = write_scenario(
        tmp_path / "s.yaml", merge(tiny_linreg(**DIVERGES), {"output": {"dir": str(tmp_path)}})
    )
    code, _, err = cli(capsys, "run", str(path), "--progress", "off")
    assert code == 1
    assert "run diverged" in err and "round" in err


def test_a_gossip_run_diverges_too(tmp_path):
    raw = tiny_linreg(
        algorithm={"name": "dpsgd", "lr": 1e30, "local_steps": 3, "batch_size": 8},
        clients_per_round=None,
        topology={"kind": "ring"},
        rounds=6,
    )
    with pytest.raises(RunDiverged):
        flsim.run(raw, run_dir=tmp_path / "run")
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "diverged"


def test_the_report_and_the_dashboard_show_a_diverged_badge(tmp_path):
    root = tmp_path / "results"
    flsim.run(tiny_linreg(rounds=2), run_dir=root / "ok")
    with pytest.raises(RunDiverged):
        flsim.run(tiny_linreg(**DIVERGES), run_dir=root / "bad")
    html = write_report([root], tmp_path / "report.html").read_text()
    assert '<td class="s-diverged">diverged</td>' in html

    from flsim.dashboard.page import DASHBOARD_JS, index_html
    from flsim.dashboard.store import RunStore

    statuses = {run.rel: run.status for run in RunStore(root).runs()}
    assert statuses == {"ok": "completed", "bad": "diverged"}
    assert "'diverged'" in DASHBOARD_JS and ".s-diverged" in index_html("t", 1000)


def test_a_study_records_a_diverging_trajectory_without_stopping(tmp_path):
    from flsim.results.writer import RunWriter

    writer = RunWriter(tmp_path / "study")
    writer.stop_on_divergence = False  # what flsim.api sets for kind: study
    writer.append_metrics({"round": 0, "train_loss": float("nan")})
    writer.stop_on_divergence = True
    with pytest.raises(RunDiverged, match="round 1"):
        writer.append_metrics({"round": 1, "train_loss": float("inf")})
    assert len(writer.read_metrics()) == 2
