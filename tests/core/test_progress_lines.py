"""Progress lines say what is counted: runs of a sweep, and no ``/0`` when the total is unknown."""

from __future__ import annotations

import logging

from flsim.progress import ProgressReporter


def test_a_sweep_counts_runs(caplog):
    reporter = ProgressReporter("sweep s", "lines", unit="run")
    reporter.start(18, 0)
    with caplog.at_level(logging.INFO, logger="flsim"):
        reporter.advance(9, {})
    assert "sweep s run 9/18" in caplog.text


def test_an_open_ended_run_has_no_total_and_few_lines(caplog):
    reporter = ProgressReporter("events", "lines")
    with caplog.at_level(logging.INFO, logger="flsim"):
        for done in range(1, 200):
            reporter.advance(done, {"test_loss": 0.5})
    assert "events round 1 test_loss=0.5" in caplog.text
    assert "/0" not in caplog.text and len(caplog.records) == 1
