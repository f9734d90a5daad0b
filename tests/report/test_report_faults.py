"""Smaller report and export faults: line-only bands, sparse log ticks, a bounded ``differs``
cell, a shared plotly.js, ``--output`` everywhere, CSV identity columns, TensorBoard."""

from __future__ import annotations

import csv
from pathlib import Path

from flsim.cli import main
from flsim.report import build_figures, load_runs
from flsim.report.html import PLOTLY_FILE, config_differences, html_table


def test_band_polygons_are_line_only_and_log_axes_keep_few_ticks(make_run, results_root):
    for seed in (0, 1):
        make_run(scenario="s", seed=seed, rounds=3, gap=True)
    bands = build_figures(load_runs(results_root))["seed_bands"].to_dict()
    polygons = [t for t in bands["data"] if t.get("fill") == "toself"]
    assert polygons and all(t["mode"] == "lines" for t in polygons)
    gap = build_figures(load_runs(results_root))["optimality_gap"].to_dict()["layout"]
    assert gap["yaxis"]["type"] == "log" and gap["yaxis"]["nticks"] == 6


def test_a_long_differs_cell_shows_four_items_and_keeps_the_rest_in_its_tooltip():
    configs = {f"r{i}": {"algorithm": {f"k{j}": i for j in range(10)}} for i in range(2)}
    differs = config_differences(["r0", "r1"], configs)
    assert differs[0].count("=") == 10
    import pandas as pd

    page = html_table(pd.DataFrame({"differs": differs}), "t", wide=("differs",))
    assert "(+6 more)" in page and 'title="algorithm.k0=0, ' in page


def test_plotly_file_writes_one_shared_copy(make_run, results_root, tmp_path):
    make_run(seed=0)
    out = tmp_path / "reports"
    for name in ("a.html", "b.html"):
        args = ["report", str(results_root), "--output", str(out / name), "--plotly", "file"]
        assert main(args) == 0
    assert (out / PLOTLY_FILE).stat().st_size > 1_000_000
    assert all((out / n).stat().st_size < 200_000 for n in ("a.html", "b.html"))
    assert f'src="{PLOTLY_FILE}"' in (out / "a.html").read_text()
    inline = tmp_path / "inline.html"
    assert main(["report", str(results_root), "--output", str(inline)]) == 0
    assert inline.stat().st_size > 1_000_000


def test_old_dash_o_for_output_still_works(make_run, results_root, tmp_path):
    make_run(seed=0)
    assert main(["report", str(results_root), "-o", str(tmp_path / "r.html")]) == 0
    assert (tmp_path / "r.html").is_file()


def test_csv_export_keeps_algorithm_seed_and_run_id(make_run, tmp_path):
    run = make_run(algorithm="scaffold", seed=3)
    out = tmp_path / "m.csv"
    assert main(["export", str(run), "--format", "csv", "--output", str(out)]) == 0
    with out.open() as f:
        row = next(csv.DictReader(f))
    assert (row["algorithm"], row["seed"], row["run_id"]) == ("scaffold", "3", "scaffold-s3")
    assert "run_dir" not in row and "status" not in row


def test_tensorboard_export_writes_event_files(make_run, tmp_path):
    run = make_run(seed=0)
    logdir = tmp_path / "tb"
    assert main(["export", str(run), "--format", "tensorboard", "--output", str(logdir)]) == 0
    events = list(logdir.glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 100


def test_the_export_extra_names_tensorboardx():
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    text = pyproject.read_text()
    assert 'export = ["tensorboardX' in text
    makefile = (pyproject.parent / "Makefile").read_text()
    assert "dashboard,export," in makefile
