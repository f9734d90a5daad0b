"""Dashboard specs: validation errors name the key, shipped specs load, spec reports render."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from flsim.cli import main as flsim_main
from flsim.config.errors import ConfigError, ConfigErrors
from flsim.report import write_report
from flsim.report.html import config_differences
from flsim.report.spec import load_spec, parse_spec

DASHBOARDS = Path(__file__).resolve().parents[2] / "dashboards"
FIG_DATA = re.compile(
    r'<script type="application/json" class="flsim-figure-data" data-target="[^"]+" '
    r'data-panel="([^"]+)">(.*?)</script>',
    re.S,
)


def _figures(text: str) -> dict[str, dict]:
    return {panel: json.loads(payload) for panel, payload in FIG_DATA.findall(text)}


def _spec(**updates: object) -> dict:
    base = {
        "title": "t",
        "group_by": "algorithm",
        "panels": [{"metric": "test_acc", "x": ["round", "bytes_total"]}],
    }
    base.update(updates)
    return base


@pytest.mark.parametrize("path", sorted(DASHBOARDS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_specs_are_valid(path: Path) -> None:
    spec = load_spec(path)
    assert spec.panels


def test_shipped_specs_cover_the_required_comparisons() -> None:
    specs = {p.stem: load_spec(p) for p in DASHBOARDS.glob("*.yaml")}
    assert {"centralized", "decentralized", "async_dadao", "compression"} <= set(specs)
    dec = [(p.metric, p.x_axes) for p in specs["decentralized"].panels]
    assert any(m == "consensus_distance" and "bytes_total" in x for m, x in dec)
    asy = [(p.metric, p.x_axes) for p in specs["async_dadao"].panels]
    assert any("grad_evals" in x and "communications" in x for _, x in asy)


@pytest.mark.parametrize(
    ("data", "key", "needle"),
    [
        (_spec(panels=[{"metric": "test_accuracy"}]), "panels.0.metric", "did you mean 'test_acc'"),
        (_spec(panels=[{"metric": "test_acc", "colour": "red"}]), "panels.0.colour", "unknown key"),
        (_spec(panels=[{"metric": "test_acc", "x": "epochs"}]), "panels.0.x", "Input should be"),
        (_spec(group_by="task.partition.alpah"), "group_by", "did you mean 'alpha'"),
        (_spec(group_by=["algorithm", "taks.dataset"]), "group_by.1", "unknown config key 'taks'"),
        (
            _spec(tables=[{"kind": "final", "metrics": ["test_acc", "tset_loss"]}]),
            "tables.0.metrics.1",
            "unknown",
        ),
        (
            _spec(tables=[{"kind": "time_to_target", "metric": "test_acc"}]),
            "tables.0.target",
            "Field required",
        ),
        (
            _spec(tables=[{"kind": "final", "metrics": ["test_acc"], "oops": 1}]),
            "tables.0.oops",
            "unknown key",
        ),
        (_spec(aggregate={"band": "std"}), "aggregate.band", "Input should be"),
        (
            _spec(filter={"config": {"algorithm.name": ["fedavg"], "sytem.link": [1]}}),
            "filter.config.sytem.link",
            "",
        ),
        (_spec(panel=[]), "panel", "unknown key"),
    ],
)
def test_bad_specs_name_the_key(data: dict, key: str, needle: str) -> None:
    with pytest.raises((ConfigError, ConfigErrors)) as info:
        parse_spec(data, "x.yaml")
    text = str(info.value)
    assert f"x.yaml: {key}:" in text
    assert needle in text


def test_extra_metrics_and_free_form_config_keys_are_accepted() -> None:
    spec = parse_spec(
        _spec(
            extra_metrics=["drift_norm"],
            panels=[{"metric": "drift_norm"}],
            group_by=["algorithm.mu", "task.dataset_params.dim", "compression.uplink.kind"],
        )
    )
    assert spec.group_keys == ["algorithm.mu", "task.dataset_params.dim", "compression.uplink.kind"]


def test_cli_bad_spec_exits_2_naming_the_metric(
    make_run, results_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_run(seed=0)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(_spec(panels=[{"metric": "acc"}])))
    code = flsim_main(["report", str(results_root), "--spec", str(bad), "-o", str(tmp_path / "r.html")])
    assert code == 2
    err = capsys.readouterr().err
    assert "panels.0.metric" in err and "'acc'" in err and "unknown metric" in err
    assert not (tmp_path / "r.html").exists()
    assert flsim_main(["report", str(tmp_path / "nope"), "-o", str(tmp_path / "r.html")]) == 2
    assert flsim_main(["report", str(results_root), "--spec", str(tmp_path / "no.yaml")]) == 2


@pytest.fixture
def sweep(make_run, results_root: Path) -> Path:
    for seed in range(3):
        make_run(scenario="s1", algorithm="fedavg", seed=seed, rounds=8)
    for seed in range(2):
        make_run(scenario="s1", algorithm="scaffold", seed=seed, rounds=8)
    make_run(scenario="s1", algorithm="fedprox", seed=0, rounds=4, parquet=False, status="running")
    return results_root


def test_spec_report_traces_tables_and_run_table(sweep: Path, tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "title": "Sweep <1>",
                "group_by": "algorithm",
                "aggregate": {"center": "median", "band": "minmax"},
                "panels": [
                    {"metric": "test_acc", "x": ["round", "bytes_total"]},
                    {"metric": "test_loss", "x": "communications", "log_y": True, "show_runs": True},
                ],
                "tables": [
                    {"kind": "final", "metrics": ["test_acc"]},
                    {"kind": "time_to_target", "metric": "test_loss", "target": 0.5, "measures": ["round"]},
                ],
            }
        )
    )
    out = tmp_path / "report.html"
    assert flsim_main(["report", str(sweep), "--spec", str(spec), "-o", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert text.count("plotly.js v") == 1 and not re.search(r"<script[^>]*\bsrc\s*=", text, re.I)
    assert "Sweep &lt;1&gt;" in text
    figs = _figures(text)
    assert set(figs) == {"panel-0", "panel-1"}
    # Per x axis: fedavg (3 runs) and scaffold (2) get band + centre, fedprox (1 run) a centre only.
    roles = [(t["meta"]["group"], t["meta"]["role"], t["xaxis"]) for t in figs["panel-0"]["data"]]
    assert len(roles) == 2 * 5
    for axis in ("x", "x2"):
        assert sorted((g, r) for g, r, a in roles if a == axis) == [
            ("fedavg", "band"),
            ("fedavg", "center"),
            ("fedprox", "center"),
            ("scaffold", "band"),
            ("scaffold", "center"),
        ]
    assert figs["panel-1"]["layout"]["yaxis"]["type"] == "log"
    assert sum(t["meta"]["role"] == "run" for t in figs["panel-1"]["data"]) == 6
    # Median over fedavg's 3 seeds: seed 1's curve (acc = 0.1 + 0.08 r + 0.01 seed).
    centre = next(t for t in figs["panel-0"]["data"] if t["meta"] == {"group": "fedavg", "role": "center"})
    assert centre["x"] == list(range(9))
    assert centre["y"] == pytest.approx([0.1 + 0.08 * r + 0.01 for r in range(9)])
    # Tables: final accuracy median [min, max]; rounds to test_loss ≤ 0.5 (loss = 2 e^{-0.3 r} +
    # 0.05 (seed + 1)): seed 0 at round 5, seeds 1 and 2 at round 6; fedprox stops at round 4.
    assert "0.75 [0.74, 0.76]" in text  # fedavg final test_acc over seeds 0, 1, 2
    target = text[text.index('id="flsim-table-1"') :]
    target = target[: target.index("</table>")]
    assert re.search(r"<td>scaffold</td><td[^>]*>2</td><td>2/2</td><td[^>]*>5.5 \[5, 6\]</td>", target)
    assert re.search(r"<td>fedprox</td><td[^>]*>1</td><td>0/1</td><td[^>]*>not reached</td>", target)
    assert re.search(r"<td>fedavg</td><td[^>]*>3</td><td>3/3</td><td[^>]*>6 \[5, 6\]</td>", target), target
    runs = text[text.index('id="flsim-runs"') :]
    assert "<td>running</td>" in runs and "<td>fedprox-s0</td>" in runs


def test_spec_filter_and_group_by_config_key(sweep: Path, tmp_path: Path) -> None:
    spec = _spec(filter={"algorithm": ["fedavg", "fedprox"]}, group_by=["task.partition.alpha"])
    text = write_report(sweep, tmp_path / "r.html", spec=parse_spec(spec)).read_text(encoding="utf-8")
    assert "4 run(s) of 6 (filtered)" in text
    groups = {t["meta"]["group"] for t in _figures(text)["panel-0"]["data"]}
    assert groups == {"0.3"}


def test_config_differences_lists_only_varying_keys() -> None:
    configs = {
        "a": {"name": "s", "seed": 0, "algorithm": {"name": "fedavg", "lr": 0.1}, "versions": {"flsim": "1"}},
        "b": {
            "name": "s",
            "seed": 1,
            "algorithm": {"name": "fedprox", "lr": 0.1, "mu": 0.01},
            "versions": {"flsim": "2"},
        },
        "c": {
            "name": "s",
            "seed": 0,
            "algorithm": {"name": "fedavg", "lr": 0.05},
            "versions": {"flsim": "1"},
        },
    }
    assert config_differences(["a", "b", "c"], configs) == [
        "algorithm.lr=0.1",
        "algorithm.lr=0.1, algorithm.mu=0.01",
        "algorithm.lr=0.05",
    ]
    assert config_differences(["a"], configs) == [""]


def test_default_report_run_table_has_differences_and_wall_time(
    make_run, results_root: Path, tmp_path: Path
) -> None:
    make_run(algorithm="fedavg", seed=0)
    make_run(algorithm="scaffold", seed=0)
    text = write_report(results_root, tmp_path / "r.html").read_text(encoding="utf-8")
    table = text[text.index('id="flsim-runs"') : text.index("</table>", text.index('id="flsim-runs"'))]
    assert "<th>differs</th>" in table and "<th>wall_time_s</th>" in table
    assert re.search(r'<td data-sort="1.0">1.0</td></tr>', table)  # summary timings.total_s


@pytest.mark.slow
def test_spec_report_on_real_runs(tmp_path: Path) -> None:
    import flsim
    from tests.builders import tiny_linreg

    for algorithm, seed in [("fedavg", 1), ("fedavg", 2), ("fedprox", 1)]:
        algo = {"name": algorithm, "lr": 0.05, "local_steps": 3, "batch_size": 8}
        if algorithm == "fedprox":
            algo["mu"] = 0.1
        flsim.run(
            tiny_linreg(seed=seed, algorithm=algo), run_dir=tmp_path / "results" / f"{algorithm}-{seed}"
        )
    out = tmp_path / "r.html"
    assert (
        flsim_main(
            [
                "report",
                str(tmp_path / "results"),
                "--spec",
                str(DASHBOARDS / "compression.yaml"),
                "-o",
                str(out),
            ]
        )
        == 0
    )
    text = out.read_text(encoding="utf-8")
    gap = _figures(text)["panel-0"]
    assert {t["meta"]["group"] for t in gap["data"]} == {"fedavg", "fedprox"}
    assert "algorithm.mu=0.1" in text  # fedprox's extra hyperparameter shows as a difference
