"""Item 6: one damaged run directory does not break the dashboard or the report."""

from __future__ import annotations

import json

import pytest

from flsim.report import write_report
from tests.dashboard.test_server import _get, _json


@pytest.fixture
def damaged(make_run):
    good = make_run(algorithm="fedavg", seed=0)
    bad_seed = make_run(algorithm="fedprox", seed=1)
    summary = json.loads((bad_seed / "summary.json").read_text())
    (bad_seed / "summary.json").write_text(json.dumps({**summary, "seed": "abc"}))
    bad_config = make_run(algorithm="scaffold", seed=2)
    (bad_config / "config.yaml").write_bytes(b"name: caf\xe9\n")
    huge_seed = make_run(algorithm="feddyn", seed=3)
    (huge_seed / "summary.json").write_text(json.dumps({**summary, "seed": 2**64}))
    return good


def test_the_api_lists_the_good_run_and_warns_about_the_others(damaged, server):
    body = _json(server.url, "/api/runs")
    assert [run["algorithm"] for run in body["runs"]] == ["fedavg"]
    assert len(body["warnings"]) == 3
    joined = " ".join(body["warnings"])
    assert "'abc'" in joined and "not UTF-8" in joined and str(2**64) in joined


def test_the_page_shows_warnings_as_text():
    from flsim.dashboard.page import DASHBOARD_JS, index_html

    assert 'id="warnings"' in index_html("t", 1000)
    assert "renderWarnings(data.warnings" in DASHBOARD_JS and "p.textContent = line" in DASHBOARD_JS


def test_the_report_skips_damaged_runs_with_a_warning(damaged, results_root, tmp_path):
    html = write_report([results_root], tmp_path / "r.html").read_text()
    assert html.count('class="warning"') == 3
    assert "fedavg" in html


def test_a_long_path_segment_is_a_404_not_a_500(damaged, server):
    status, _, _ = _get(server.url, "/files/" + "a" * 300)
    assert status == 404
    status, _, _ = _get(server.url, "/files/digits_iid/" + "b" * 256 + "/config.yaml")
    assert status == 404


@pytest.mark.parametrize("name", ["evil.js", "evil.html", "evil.svg", "EVIL.HTML"])
def test_active_content_is_served_as_a_download(damaged, server, name):
    (damaged / name).write_text("<script>alert(1)</script>")
    status, _, headers = _get(server.url, f"/files/digits_iid/{damaged.name}/{name}")
    assert status == 200
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["Content-Disposition"] == "attachment"
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_summary_json_is_plain_text(damaged, server):
    status, _, headers = _get(server.url, f"/files/digits_iid/{damaged.name}/summary.json")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")


def test_metrics_responses_are_capped(make_run, server):
    from flsim.dashboard.store import MAX_ROWS_PER_RESPONSE

    rows = [{"round": r, "train_loss": 1.0} for r in range(MAX_ROWS_PER_RESPONSE + 10)]
    make_run(rows=rows, parquet=False)
    run_id = _json(server.url, "/api/runs")["runs"][0]["id"]
    first = _json(server.url, f"/api/runs/{run_id}/metrics?since=0")
    assert first["next"] == MAX_ROWS_PER_RESPONSE and len(first["columns"]["round"]) == MAX_ROWS_PER_RESPONSE
    rest = _json(server.url, f"/api/runs/{run_id}/metrics?since={first['next']}")
    assert rest["columns"]["round"] == list(range(MAX_ROWS_PER_RESPONSE, MAX_ROWS_PER_RESPONSE + 10))


def test_an_overlong_metrics_line_is_skipped(make_run, server):
    run_dir = make_run(parquet=False)
    with open(run_dir / "metrics.jsonl", "a") as handle:
        handle.write(json.dumps({"round": 99, "pad": "x" * (200 << 10)}) + "\n")
    run = _json(server.url, "/api/runs")["runs"][0]
    assert 99 not in _json(server.url, f"/api/runs/{run['id']}/metrics?since=0")["columns"]["round"]
