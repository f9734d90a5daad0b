"""The HTML report: one trace per run per panel, offline, every run in the table."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from flsim.report import build_figures, load_runs, write_report
from flsim.report.html import X_AXES, run_label

FIG_DATA = re.compile(
    r'<script type="application/json" class="flsim-figure-data" data-target="[^"]+" '
    r'data-panel="([^"]+)">(.*?)</script>',
    re.S,
)


def _figures_from_html(text: str) -> dict[str, dict]:
    return {panel: json.loads(payload) for panel, payload in FIG_DATA.findall(text)}


def _traces_per_panel(fig: dict) -> dict[tuple[str, str], Counter]:
    panels: dict[tuple[str, str], Counter] = {}
    for trace in fig["data"]:
        key = (trace.get("xaxis") or "x", trace.get("yaxis") or "y")
        panels.setdefault(key, Counter())[trace["legendgroup"]] += 1
    return panels


@pytest.fixture
def three_runs(make_run, results_root: Path) -> list[Path]:
    return [
        make_run(scenario="s1", algorithm="fedavg", seed=0, gap=True),
        make_run(scenario="s1", algorithm="fedavg", seed=1, gap=True),
        make_run(scenario="s1", algorithm="scaffold", seed=0, gap=True, parquet=False, status="running"),
    ]


def test_build_figures_one_trace_per_run_per_panel(three_runs, results_root: Path) -> None:
    df = load_runs(results_root)
    figs = build_figures(df)
    assert {"test_acc", "test_loss", "train_loss", "optimality_gap", "seed_bands"} <= set(figs)
    run_dirs = set(df["run_dir"])
    for key in ("test_acc", "test_loss", "train_loss", "optimality_gap"):
        panels = _traces_per_panel(json.loads(figs[key].to_json()))
        assert len(panels) == len(X_AXES)
        for counts in panels.values():
            assert set(counts) == run_dirs and set(counts.values()) == {1}
    assert figs["optimality_gap"].layout.yaxis.type == "log"
    labels = {t.name for t in figs["test_acc"].data}
    assert run_label("fedavg", 1, "fedavg-s1") in labels
    assert labels == {
        "fedavg seed=0 (fedavg-s0)",
        "fedavg seed=1 (fedavg-s1)",
        "scaffold seed=0 (scaffold-s0)",
    }


def test_seed_bands_only_for_groups_with_several_seeds(three_runs, results_root: Path) -> None:
    bands = build_figures(load_runs(results_root))["seed_bands"]
    assert {t.name for t in bands.data} == {"s1 / fedavg (n=2)"}


def test_html_report_offline_traces_and_table(three_runs, results_root: Path, tmp_path: Path) -> None:
    out = write_report(results_root, tmp_path / "out" / "report.html", title="My <report>")
    text = out.read_text(encoding="utf-8")
    # Offline: no external scripts or stylesheets, plotly.js embedded exactly once.
    assert not re.search(r"<script[^>]*\bsrc\s*=", text, re.I)
    assert not re.search(r"<link[^>]*https?://", text, re.I)
    assert text.count("plotly.js v") == 1
    assert "My &lt;report&gt;" in text
    figs = _figures_from_html(text)
    run_dirs = {str(p.resolve()) for p in three_runs}
    for key in ("test_acc", "test_loss", "optimality_gap"):
        for counts in _traces_per_panel(figs[key]).values():
            assert set(counts) == run_dirs and set(counts.values()) == {1}
    table = text[text.index('id="flsim-runs"') : text.index("</table>")]
    for run in three_runs:
        assert f"<td>{run.name}</td>" in table
    assert "<td>running</td>" in table
    assert list(out.parent.iterdir()) == [out]  # atomic write left no temp file behind


def test_table_lists_runs_without_metrics(make_run, results_root: Path, tmp_path: Path) -> None:
    make_run(seed=0)
    make_run(seed=1, rows=[], parquet=False, status="failed")
    text = write_report(results_root, tmp_path / "r.html").read_text(encoding="utf-8")
    table = text[text.index('id="flsim-runs"') : text.index("</table>")]
    assert "<td>fedavg-s1</td>" in table and "<td>failed</td>" in table
    assert len(_figures_from_html(text)["test_loss"]["data"]) == len(X_AXES)  # only the run with rows


def test_no_accuracy_no_accuracy_panel(make_run, results_root: Path) -> None:
    make_run(acc=False)
    assert "test_acc" not in build_figures(load_runs(results_root))


def test_no_runs_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no run directories"):
        write_report(tmp_path, tmp_path / "r.html")


def test_module_entry_point(make_run, results_root: Path, tmp_path: Path) -> None:
    from flsim.report.__main__ import main

    make_run(seed=0)
    out = tmp_path / "cli.html"
    assert main([str(results_root), "-o", str(out), "--title", "t"]) == 0
    assert out.is_file()
    assert main([str(tmp_path / "missing"), "-o", str(out)]) == 2
