"""The event-throughput benchmark runs and reports its ratio (the goal, ≥ 0.5, is measured by
``python -m benchmarks.event_throughput``, not asserted here: timings on shared CI are noise)."""

from __future__ import annotations

from benchmarks import event_throughput


def test_event_throughput_benchmark_prints_its_ratio(capsys):
    result = event_throughput.main(["--time", "0.5", "--repeats", "1", "--graph", "ring"])
    assert result["throughput_ratio"] > 0
    assert "throughput_ratio = " in capsys.readouterr().out
