"""Both dashboards in a real headless chromium: plots render, traces count, live updates arrive.

Needs Debian's ``chromium`` and ``chromium-driver`` (``scripts/install-system-deps.sh``, run by
``make test``). Without them the test fails, on purpose: it must not pass silently in CI.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from flsim.report import write_report
from tests.dashboard.browser import chromium, console_errors, wait_for

pytestmark = pytest.mark.slow

FIG_DATA = re.compile(
    r'<script type="application/json" class="flsim-figure-data" data-target="([^"]+)" '
    r'data-panel="[^"]+">(.*?)</script>',
    re.S,
)

# For every figure div: [id, traces in the figure data, trace groups drawn in the SVG].
RENDERED_JS = """
var figs = Array.from(document.querySelectorAll('.flsim-figure'));
if (!figs.length || !figs.every(function (f) { return f._fullLayout; })) { return null; }
return figs.map(function (f) {
  return [f.id, f.data.length, f.querySelectorAll('.scatterlayer g.trace').length];
});
"""

SPEC = {
    "title": "Browser test spec",
    "group_by": "algorithm",
    "aggregate": {"center": "median", "band": "iqr"},
    "panels": [
        {"metric": "test_acc", "x": ["round", "bytes_total"]},
        {"metric": "test_loss", "x": "communications", "log_y": True},
    ],
    "tables": [{"kind": "time_to_target", "metric": "test_acc", "target": 0.5}],
}


@pytest.fixture
def runs(make_run) -> dict[str, Path]:
    out = {}
    for seed in range(3):
        out[f"fedavg-{seed}"] = make_run(scenario="s1", algorithm="fedavg", seed=seed, rounds=8)
    for seed in range(2):
        out[f"scaffold-{seed}"] = make_run(scenario="s1", algorithm="scaffold", seed=seed, rounds=8)
    out["running"] = make_run(
        scenario="s2", algorithm="fedprox", seed=0, rounds=4, parquet=False, status="running"
    )
    return out


def _expected_traces(html_text: str) -> dict[str, int]:
    return {target: len(json.loads(payload)["data"]) for target, payload in FIG_DATA.findall(html_text)}


def _check_report(driver: Any, path: Path, expected: dict[str, int], shot: Path) -> None:
    driver.get(path.as_uri())
    rendered = wait_for(lambda: driver.execute_script(RENDERED_JS), timeout=60, what=f"plots in {path.name}")
    assert {fig_id: n for fig_id, n, _ in rendered} == expected
    for fig_id, n_data, n_svg in rendered:
        assert n_svg == n_data, f"{fig_id}: {n_svg} traces drawn, {n_data} in the data"
    driver.save_screenshot(str(shot))
    assert console_errors(driver) == []


CENTRES_JS = """
var d = document.getElementById('plot').data;
var c = d.filter(function (t) { return t.meta && t.meta.role === 'center'; });
return [d.length, c.map(function (t) { return t.name; }), c.map(function (t) { return t.line.color; })];
"""


def _check_grouping(driver: Any) -> None:
    """Seeds pooled by configuration, one colour per group, group-by a config key, smoothing
    and the config diff of selected runs (fedavg x3, scaffold x2, fedprox x2 at this point)."""
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element("id", "group-by")).select_by_value("config_hash")
    n, names, colours = driver.execute_script(CENTRES_JS)
    # The two fedprox runs differ in rounds as well as seed: two configurations, never pooled.
    assert sorted(names) == [
        "s1 / fedavg rounds=8 (n=3)",
        "s1 / scaffold rounds=8 (n=2)",
        "s2 / fedprox rounds=3 (n=1)",
        "s2 / fedprox rounds=4 (n=1)",
    ]
    assert n == 2 + 2 + 1 + 1 and len(set(colours)) == 4
    Select(driver.find_element("id", "group-by")).select_by_value("seed")
    n, names, colours = driver.execute_script(CENTRES_JS)
    assert sorted(names) == ["seed=0 (n=3)", "seed=1 (n=3)", "seed=2 (n=1)"] and n == 5
    box = driver.find_element("id", "smooth")
    box.clear()
    box.send_keys("3")
    driver.execute_script("document.getElementById('smooth').dispatchEvent(new Event('change'))")
    assert driver.execute_script("return window.flsimDashboard.smooth") == 3
    # One script: the table is redrawn every poll, so element handles go stale between calls.
    driver.execute_script(
        "var p = document.querySelectorAll('#runs tbody input.pick'); p[0].click(); p[p.length - 1].click();"
    )
    keys = driver.execute_script(
        "return Array.from(document.querySelectorAll('#diff-table tr td:first-child'))"
        ".map(function (td) { return td.textContent; });"
    )
    assert "algorithm.name" in keys and "seed" in keys


def test_reports_and_live_dashboard_in_chromium(
    runs: dict[str, Path], results_root: Path, tmp_path: Path
) -> None:
    from flsim.dashboard.server import background_server

    default = write_report(results_root, tmp_path / "report.html")
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(SPEC))
    spec_report = write_report(results_root, tmp_path / "spec.html", spec=spec_file)

    default_expected = _expected_traces(default.read_text(encoding="utf-8"))
    # Independent counts: 6 runs x 3 x axes per metric panel; seed bands (band + median) for the
    # 2 groups with several seeds x 2 metrics (test_acc, test_loss; no optimality gap here).
    assert default_expected["flsim-fig-test_acc"] == 6 * 3
    assert default_expected["flsim-fig-seed_bands"] == 2 * 2 * 2
    spec_expected = _expected_traces(spec_report.read_text(encoding="utf-8"))
    # Per x axis: fedavg and scaffold draw band + median, fedprox (one run) a line only.
    assert spec_expected == {"flsim-fig-panel-0": 2 * 5, "flsim-fig-panel-1": 5}

    with chromium(tmp_path / "profile") as driver:
        _check_report(driver, default, default_expected, tmp_path / "report.png")
        _check_report(driver, spec_report, spec_expected, tmp_path / "report-spec.png")

        with background_server(results_root, poll_ms=300) as server:
            driver.get(server.url + "/?interval=300&group=none")  # every run its own trace
            wait_for(
                lambda: driver.execute_script(
                    "var s = window.flsimDashboard; var p = document.getElementById('plot');"
                    "return s && s.polls >= 1 && p && p.data && p.data.length === 6;"
                ),
                timeout=60,
                what="the dashboard's first poll with 6 traces",
            )
            assert driver.execute_script("return window.flsimDashboard.metric") == "test_acc"
            assert (
                driver.execute_script(
                    "return document.getElementById('plot').querySelectorAll('.scatterlayer g.trace').length"
                )
                == 6
            )
            rows = driver.execute_script("return document.querySelectorAll('#runs tbody tr').length")
            assert rows == 6

            # Live update: append a row to the running run; its trace must grow, page not reloaded.
            driver.execute_script("window.__notReloaded = true;")
            trace_len_js = (
                "var p = document.getElementById('plot');"
                "var t = p.data.filter(function (d) { return d.name.indexOf('fedprox') === 0; })[0];"
                "return t ? [t.x.length, t.x[t.x.length - 1], t.y[t.y.length - 1]] : null;"
            )
            before = driver.execute_script(trace_len_js)
            assert before[0] == 5
            row = {
                "round": 5,
                "virtual_time": 7.5,
                "events": 100,
                "bytes_up": 5000,
                "bytes_down": 10000,
                "grad_evals": 250,
                "train_loss": 0.1,
                "test_loss": 0.2,
                "test_acc": 0.777,
            }
            with open(runs["running"] / "metrics.jsonl", "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")
            after = wait_for(
                lambda: (v := driver.execute_script(trace_len_js)) and v[0] == 6 and v,
                timeout=30,
                what="the appended row on the running run's trace",
            )
            assert after[1:] == [5, 0.777]
            assert driver.execute_script(
                "return window.__notReloaded === true && window.flsimDashboard.appended >= 1"
            )

            # A new run appears without a reload, in the table and as a trace.
            from tests.report.conftest import write_run

            write_run(
                results_root,
                scenario="s2",
                algorithm="fedprox",
                seed=1,
                rounds=3,
                status="running",
                parquet=False,
            )
            wait_for(
                lambda: driver.execute_script("return document.getElementById('plot').data.length") == 7,
                timeout=30,
                what="a new run's trace",
            )
            assert driver.execute_script("return document.querySelectorAll('#runs tbody tr').length") == 7

            # Filters and axis choice.
            from selenium.webdriver.support.ui import Select

            Select(driver.find_element("id", "f-algorithm")).select_by_value("fedavg")
            assert driver.execute_script("return document.getElementById('plot').data.length") == 3
            Select(driver.find_element("id", "f-algorithm")).select_by_value("")
            Select(driver.find_element("id", "f-status")).select_by_value("running")
            assert driver.execute_script("return document.getElementById('plot').data.length") == 2
            Select(driver.find_element("id", "f-status")).select_by_value("")
            Select(driver.find_element("id", "x-axis")).select_by_value("bytes_total")
            Select(driver.find_element("id", "metric")).select_by_value("test_loss")
            layout = driver.execute_script(
                "var l = document.getElementById('plot').layout;"
                "return [l.xaxis.title.text, l.yaxis.title.text];"
            )
            assert layout == ["bytes_total", "test_loss"]
            _check_grouping(driver)
            assert driver.execute_script("return window.__notReloaded === true")
            assert driver.execute_script("return window.flsimDashboard.errors") == []
            driver.save_screenshot(str(tmp_path / "dashboard.png"))
            assert console_errors(driver) == []

    for shot in ("report.png", "report-spec.png", "dashboard.png"):
        assert (tmp_path / shot).stat().st_size > 10_000
