"""The study section of the HTML report and of the live dashboard, on a real (reduced) study run."""

from __future__ import annotations

import http.client
import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import flsim
from flsim.report import write_report
from flsim.report.study import criteria_rows, study_figure

REDUCED = [
    "study.max_horizon=1000",
    "study.simplex_horizon=1000",
    "study.simplex_dims=[3, 30]",
    "study.seeds=[0, 1, 2, 3]",
]
FIG_DATA = re.compile(
    r'<script type="application/json" class="flsim-figure-data" data-target="[^"]+" '
    r'data-panel="([^"]+)">(.*?)</script>',
    re.S,
)


@pytest.fixture(scope="module")
def study_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("results")
    flsim.run("scenarios/studies/last_iterate_sgd.yaml", REDUCED, run_dir=root / "last_iterate_sgd" / "run")
    return root


def _summary(root: Path) -> dict:
    return json.loads((root / "last_iterate_sgd" / "run" / "summary.json").read_text())


def test_report_has_the_criteria_table_and_the_study_figures(study_run, tmp_path):
    text = write_report([study_run], tmp_path / "report.html").read_text()
    assert "<h2>Studies</h2>" in text
    table = re.search(r'<table id="flsim-criteria-0".*?</table>', text, re.S).group(0)
    summary = _summary(study_run)
    for name, criterion in summary["criteria"].items():
        assert f"<td>{name}</td>" in table
        assert f"<td>{criterion['value']:.4g}</td>" in table
    assert "in</td><td>[-0.65, -0.35]</td>" in table and "claim (not gating)" in table
    figures = {k: json.loads(v) for k, v in FIG_DATA.findall(text) if k.startswith("study-")}
    assert len(figures) == 3  # one per FigureSpec of the study
    l1, _, simplex = (figures[f"study-0-{j}"] for j in range(3))
    assert l1["layout"]["xaxis"]["type"] == "log" and l1["layout"]["yaxis"]["type"] == "log"
    assert [t["name"] for t in l1["data"]] == ["gap_last", "gap_average"]
    gaps = summary["results"]["gaps"]["l1"]["last"]
    assert l1["data"][0]["y"] == pytest.approx(gaps)
    assert {t["name"] for t in simplex["data"]} == {
        f"gap_last {m} d={d}" for m in ("mirror_descent", "projected_sgd") for d in (3, 30)
    }


def test_a_federated_report_has_no_study_section(tmp_path):
    from tests.report.conftest import write_run

    write_run(tmp_path / "results")
    assert "<h2>Studies</h2>" not in write_report([tmp_path / "results"], tmp_path / "r.html").read_text()


def test_figure_spec_where_and_series_select_rows():
    rows = [
        {"x": 2, "y": 4.0, "s": "b", "f": 1},
        {"x": 1, "y": 1.0, "s": "a", "f": 1},
        {"x": 1, "y": 9.0, "s": "a", "f": 2},
        {"y": 3.0, "s": "a", "f": 1},  # no x: skipped
    ]
    import pandas as pd

    spec = {
        "title": "t",
        "x": "x",
        "y": ["y"],
        "series": "s",
        "where": {"f": 1},
        "log_x": False,
        "log_y": True,
    }
    fig = study_figure(pd.DataFrame(rows), spec)
    assert [(t["name"], t["x"], t["y"]) for t in fig["data"]] == [
        ("y a", [1.0], [1.0]),
        ("y b", [2.0], [4.0]),
    ]
    assert fig["layout"]["yaxis"]["type"] == "log" and "type" not in fig["layout"]["xaxis"]


def test_criteria_rows_tell_gates_from_claims():
    summary = {
        "criteria": {
            "a": {"value": 1.0, "threshold": 2.0, "op": "<=", "pass": True, "gate": True},
            "b": {"value": 3.0, "threshold": 2.0, "op": "<=", "pass": False, "gate": False},
        }
    }
    rows = criteria_rows(summary)
    assert [(r["verdict"], r["gate"]) for r in rows] == [("pass", "gate"), ("not met", "claim (not gating)")]


def _get(url: str, path: str) -> tuple[int, bytes]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.request("GET", path, headers={"Host": f"127.0.0.1:{parts.port}"})
    response = conn.getresponse()
    return response.status, response.read()


def test_dashboard_serves_criteria_figure_specs_and_figures(study_run):
    pytest.importorskip("aiohttp")
    from flsim.dashboard.server import background_server

    with background_server(study_run, poll_ms=500) as server:
        status, body = _get(server.url, "/api/runs")
        (run,) = json.loads(body)["runs"]
        assert status == 200 and run["study"] == "last_iterate_sgd"
        status, body = _get(server.url, f"/api/runs/{run['id']}/study")
        assert status == 200
        payload = json.loads(body)
        summary = _summary(study_run)
        assert payload["pass"] == summary["pass"]
        assert {c["criterion"]: c["value"] for c in payload["criteria"]} == {
            k: c["value"] for k, c in summary["criteria"].items()
        }
        assert payload["figures"] == summary["figures"] and len(payload["plots"]) == 3
        assert payload["plots"][0]["layout"]["yaxis"]["type"] == "log"
        status, script = _get(server.url, "/assets/studies.js")
        assert status == 200 and b"/study" in script
        status, page = _get(server.url, "/")
        assert b'<section id="studies">' in page and b"/assets/studies.js" in page


def test_dashboard_study_api_refuses_a_federated_run(tmp_path):
    pytest.importorskip("aiohttp")
    from flsim.dashboard.server import background_server
    from tests.report.conftest import write_run

    write_run(tmp_path)
    with background_server(tmp_path, poll_ms=500) as server:
        (run,) = json.loads(_get(server.url, "/api/runs")[1])["runs"]
        assert run["study"] is None
        assert _get(server.url, f"/api/runs/{run['id']}/study")[0] == 404


@pytest.mark.slow
def test_dashboard_page_draws_the_study_panel_in_chromium(study_run, tmp_path):
    pytest.importorskip("aiohttp")
    from flsim.dashboard.server import background_server
    from tests.dashboard.browser import chromium, console_errors, wait_for

    criteria = len(_summary(study_run)["criteria"])
    with chromium(tmp_path / "profile") as driver, background_server(study_run, poll_ms=300) as server:
        driver.get(server.url + "/")
        wait_for(
            lambda: driver.execute_script("return window.flsimStudies && window.flsimStudies.panels === 1"),
            timeout=60,
            what="the study panel",
        )
        drawn = wait_for(
            lambda: driver.execute_script(
                "var plots = document.querySelectorAll('#studies .study-plot');"
                "return plots.length === 3 && Array.prototype.every.call(plots, function (p) {"
                "  return p.querySelectorAll('.scatterlayer g.trace').length > 0; }) ? plots.length : 0;"
            ),
            timeout=60,
            what="three study figures with traces",
        )
        assert drawn == 3
        rows = driver.execute_script("return document.querySelectorAll('#studies table tr').length")
        assert rows == criteria + 1  # a header row, then one per criterion
        assert "last_iterate_sgd" in driver.execute_script(
            "return document.querySelector('#studies h3').textContent"
        )
        assert console_errors(driver) == []
