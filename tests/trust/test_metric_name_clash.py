"""A metric whose name is also a run column (``alpha``, ``model``) is kept, renamed, not lost."""

from __future__ import annotations

import logging

import pytest

from flsim.results.loading import METRIC_CLASH_PREFIX, load_runs
from tests.report.conftest import fake_metrics, write_run


@pytest.mark.parametrize("parquet", [True, False])
def test_a_clashing_metric_is_renamed_with_the_prefix_and_warned_once(tmp_path, caplog, parquet):
    rows = fake_metrics(3, 0)
    for i, row in enumerate(rows):
        row["alpha"] = 0.5 + i  # e.g. an algorithm logging its own step size "alpha"
        row["model"] = 10 * i
    write_run(tmp_path, seed=0, rows=rows, parquet=parquet)
    write_run(tmp_path, seed=1, rows=[{**r, "alpha": -1.0} for r in rows], parquet=parquet)
    with caplog.at_level(logging.WARNING, logger="flsim.results.loading"):
        frame = load_runs(tmp_path)
    assert METRIC_CLASH_PREFIX == "metric."
    # The run columns keep the config's value; the metric values survive under the prefix.
    assert frame["alpha"].tolist() == [0.3] * 8
    assert frame["metric.alpha"].tolist() == [0.5, 1.5, 2.5, 3.5] + [-1.0] * 4
    assert frame["model"].tolist() == ["mlp"] * 8
    assert frame["metric.model"].tolist() == [0, 10, 20, 30] * 2
    clash = [r for r in caplog.records if "metric." in r.getMessage()]
    assert len(clash) == 1
    assert "alpha" in clash[0].getMessage() and "model" in clash[0].getMessage()


def test_the_prefixed_name_never_overwrites_an_existing_column(tmp_path):
    rows = [{**r, "alpha": 1.0, "metric.alpha": 2.0} for r in fake_metrics(2, 0)]
    write_run(tmp_path, rows=rows)
    frame = load_runs(tmp_path)
    assert frame["metric.alpha"].tolist() == [2.0] * 3
    assert frame["metric.metric.alpha"].tolist() == [1.0] * 3
    assert frame["alpha"].tolist() == [0.3] * 3
