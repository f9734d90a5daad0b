"""The default report pools only seeds: runs whose configs differ in anything else stay apart."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from flsim.report import build_figures, load_runs, write_report
from flsim.report.html import seed_group_names
from flsim.results.loading import load_results


def _with_alpha(run_dir: Path, alpha: float, tags: list[str] | None = None) -> Path:
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["task"]["partition"]["alpha"] = alpha
    if tags is not None:
        config["tags"] = tags
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    return run_dir


def _alpha_sweep(make_run) -> None:
    for alpha in (0.1, 1.0):
        for seed in (0, 1):
            run = make_run(scenario="sw", seed=seed, run_id=f"fedavg-alpha{alpha}-s{seed}")
            _with_alpha(run, alpha, tags=["sweep", f"alpha{alpha}"])


def test_runs_differing_in_alpha_are_two_groups_not_four_seeds(make_run, results_root, tmp_path):
    _alpha_sweep(make_run)
    results = load_results(results_root)
    names = seed_group_names(results.runs, results.configs)
    expected = ["sw / fedavg task.partition.alpha=0.1", "sw / fedavg task.partition.alpha=1"]
    assert sorted(names.values()) == expected
    assert results.runs.groupby("config_hash").size().tolist() == [2, 2]

    bands = build_figures(load_runs(results_root))["seed_bands"]
    assert len({t.name for t in bands.data}) == 2
    assert all(t.name.endswith("(n=2)") for t in bands.data)

    page = write_report([results_root], tmp_path / "r.html").read_text()
    groups = page.split('id="flsim-groups"')[1].split("</table>")[0]
    assert len(re.findall(r"<tr", groups)) == 1 + 2  # header and one row per alpha
    assert "alpha0.1" in page  # tags reach the report


def test_tags_do_not_split_a_group(make_run, results_root):
    for seed, tag in ((0, "first"), (1, "second")):
        _with_alpha(make_run(scenario="sw", seed=seed), 0.5, tags=[tag])
    results = load_results(results_root)
    assert results.runs["config_hash"].nunique() == 1
    assert sorted(results.runs["tags"]) == ["first", "second"]
