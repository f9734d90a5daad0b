"""summary.json is strict JSON, whatever numbers a run or a study puts in it."""

from __future__ import annotations

import json

from flsim.results.writer import RunWriter


def test_a_non_finite_value_is_written_as_strict_json(tmp_path):
    """A criterion never met (value inf) must not write ``Infinity``, which browsers reject."""
    writer = RunWriter(tmp_path / "run")
    writer.write_summary({"criteria": {"steps": {"value": float("inf"), "pass": False}}, "x": [float("nan")]})
    text = (tmp_path / "run" / "summary.json").read_text()
    assert "Infinity" not in text and "NaN" not in text
    assert json.loads(text) == {"criteria": {"steps": {"value": "inf", "pass": False}}, "x": [None]}
