"""The study harness and study 21 (last-iterate SGD rates)."""

from __future__ import annotations

import json

import pytest

import flsim
from flsim.config.errors import ConfigError, ConfigErrors


def test_study_runs_in_the_harness_and_reports_its_claim(tmp_path):
    result = flsim.run("scenarios/studies/last_iterate_sgd.yaml", run_dir=tmp_path / "run")
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["pass"] is True
    assert summary["criteria"]["slope_strongly_convex"]["value"] == pytest.approx(-1.0, abs=0.15)
    assert summary["criteria"]["slope_lipschitz"]["value"] == pytest.approx(-0.5, abs=0.15)
    frame = flsim.load_runs(result.run_dir)
    assert len(frame) == 8 and (frame["gap_strongly_convex"].diff().dropna() < 0).all()


def test_the_claim_can_fail(tmp_path):
    """A tolerance of zero cannot be met by a noisy estimate: the pass flag is honest."""
    result = flsim.run(
        "scenarios/studies/last_iterate_sgd.yaml", ["study.tolerance=0.0"], run_dir=tmp_path / "r"
    )
    assert result.summary["pass"] is False


def test_unknown_study_is_a_config_error():
    with pytest.raises(ConfigError, match=r"study\.name"):
        flsim.run({"kind": "study", "study": {"name": "nope"}})


def test_a_malformed_study_parameter_names_its_key():
    with pytest.raises(ConfigErrors, match=r"study\.repeats"):
        flsim.run({"kind": "study", "study": {"name": "last_iterate_sgd", "repeats": -3}})
    with pytest.raises(ConfigErrors, match=r"study\.repeatz"):
        flsim.run({"kind": "study", "study": {"name": "last_iterate_sgd", "repeatz": 3}})
