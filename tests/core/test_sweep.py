"""``flsim sweep``: expansion, validation up front, per-run failure isolation, re-runs."""

from __future__ import annotations

import json

import pytest
import yaml

from flsim.cli import main
from flsim.config.errors import ConfigError
from flsim.sweep import expand_sweep, run_sweep
from tests.builders import tiny_linreg


def _sweep_file(tmp_path, **sweep):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(tiny_linreg(rounds=2)))
    spec = {"name": "mini", "base": "base.yaml", "seeds": [0, 1], **sweep}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"sweep": spec}))
    return path


def test_expansion_is_the_full_product(tmp_path):
    path = _sweep_file(
        tmp_path,
        grid={"task.dataset_params.heterogeneity": [0.0, 1.0, 2.0]},
        variants={"slow": {"algorithm": {"name": "fedavg", "lr": 0.01}}, "fast": {"algorithm.lr": 0.2}},
    )
    _spec, runs = expand_sweep(path)
    assert len(runs) == 2 * 3 * 2
    assert len({r.label for r in runs}) == len(runs)
    slow = [r for r in runs if r.label.startswith("slow")]
    assert all(r.scenario["algorithm"] == {"name": "fedavg", "lr": 0.01} for r in slow)
    assert {r.scenario["seed"] for r in runs} == {0, 1}
    assert all(r.scenario["name"] == "mini" for r in runs)


def test_a_bad_variant_fails_before_any_run(tmp_path):
    path = _sweep_file(tmp_path, variants={"ok": {}, "bad": {"algorithm.lr": -1}})
    with pytest.raises(ConfigError, match=r"sweep\.variants\.bad"):
        expand_sweep(path)
    assert main(["sweep", str(path), "--output-dir", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()


def test_local_sweep_runs_each_once_and_isolates_failures(tmp_path, monkeypatch):
    # Validation finds bad input up front, so the failure is one that only running shows.
    diverges = {"algorithm.lr": 1e30}
    path = _sweep_file(tmp_path, variants={"a": {"algorithm.lr": 0.05}, "b": diverges})
    outcomes = run_sweep(path, output_dir=tmp_path / "out")
    assert [o.status for o in outcomes] == ["completed", "completed", "diverged", "diverged"]
    assert "diverged" in outcomes[2].error
    summaries = [json.loads((o.run_dir / "summary.json").read_text()) for o in outcomes]
    assert {s["seed"] for s in summaries} == {0, 1}
    assert [s["status"] for s in summaries] == ["completed", "completed", "diverged", "diverged"]

    import flsim.api

    calls = []
    monkeypatch.setattr(flsim.api, "run", lambda *a, **k: calls.append(a) or None)
    again = run_sweep(path, output_dir=tmp_path / "out")
    assert len(calls) == 2  # only the failed runs are retried
    assert [o.status for o in again][:2] == ["completed", "completed"]
