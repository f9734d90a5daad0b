"""The shared run loop (flsim.hosts.run_loop): cadence, time grid, rows, checkpoints, progress
and recovery, checked on a small deterministic driver against hand-computed expectations."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

import pytest

from flsim.hosts.counters import Counters
from flsim.hosts.run_loop import Cadence, Recovery, RunLoop, Step, TimeGrid
from flsim.hosts.sinks import KeptRows, RowCollector


class Lost(Exception):
    pass


class Recorder(RowCollector):
    """Rows, checkpoints and truncations in the order they happen."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[str, Any]] = []

    def append_metrics(self, row: dict[str, Any]) -> None:
        super().append_metrics(row)
        self.log.append(("row", row["round"]))

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        self.log.append(("checkpoint", state["counters"]["round"]))

    def truncate_metrics(self, last_round: int) -> None:
        self.rows = [row for row in self.rows if row["round"] <= last_round]
        self.log.append(("truncate", last_round))


class Progress:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def start(self, total: int, done: int) -> None:
        self.calls.append(("start", total, done))

    def advance(self, done: int, row: dict[str, Any]) -> None:
        self.calls.append(("advance", done, row["round"]))

    def stop(self) -> None:
        self.calls.append(("stop",))


class Toy:
    """x ← 3x + round (mod 1009) per round; ``fail_at`` rounds raise :class:`Lost` once each."""

    def __init__(self, rounds: int, fail_at: tuple[int, ...] = ()) -> None:
        self.rounds = rounds
        self.counters = Counters()
        self.x = 1
        self.fail_at = set(fail_at)
        self.first_points = 0

    def first_point(self) -> str:
        self.first_points += 1
        return "start"

    def steps(self) -> Iterator[Step]:
        while self.counters.round < self.rounds:
            r = self.counters.round + 1
            if r in self.fail_at:
                self.fail_at.discard(r)
                raise Lost(f"worker lost in round {r}")
            self.x = (3 * self.x + r) % 1009
            self.counters.round = r
            yield Step(r, f"after {r}")

    def metrics_row(self, at: Any) -> dict[str, Any]:
        return {"round": self.counters.round, "x": self.x, "at": at}

    def checkpoint_state(self) -> dict[str, Any]:
        return {"counters": asdict(self.counters), "x": self.x}

    def restore(self, state: dict[str, Any]) -> None:
        self.counters = Counters(**state["counters"])
        self.x = state["x"]


def expected_x(rounds: int) -> list[int]:
    x, out = 1, [1]
    for r in range(1, rounds + 1):
        x = (3 * x + r) % 1009
        out.append(x)
    return out


def run(toy: Toy, cadence: Cadence, limit: int = 3) -> tuple[RunLoop, Recorder, Progress, dict[str, Any]]:
    writer, progress = Recorder(), Progress()
    recovery = Recovery(Lost, limit, lambda: None, lambda exc, r: RuntimeError(f"gave up; resume from {r}"))
    loop = RunLoop(toy, cadence, writer, progress, recovery)
    return loop, writer, progress, loop.run()


def test_cadence_rows_every_k_and_after_the_last_checkpoints_every_k():
    cadence = Cadence(total=7, rows_every=3, checkpoint_every=2)
    assert [d for d in range(1, 8) if cadence.row_due(d)] == [3, 6, 7]
    assert [d for d in range(1, 8) if cadence.checkpoint_due(d)] == [2, 4, 6]
    assert not any(Cadence(total=7, checkpoint_every=0).checkpoint_due(d) for d in range(1, 8))


def test_time_grid_yields_index_times_every_and_stops_at_limit_and_horizon():
    grid = TimeGrid(every=0.25, horizon=1.3)
    assert list(grid.due(0.5)) == [0.25, 0.5]
    assert list(grid.due(0.5)) == []  # consumed
    assert list(grid.due(0.75, inclusive=False)) == []
    assert grid.next_time == 0.75
    assert list(grid.due(10.0)) == [0.75, 1.0, 1.25]  # 1.5 is past the horizon
    assert list(TimeGrid(every=0.25, horizon=None, index=3).due(0.75)) == [0.75]  # resumed


def test_time_grid_points_are_products_not_running_sums():
    # Summing 0.1 ten times drifts (0.7999999999999999 for the 8th); k · 0.1 does not.
    assert list(TimeGrid(every=0.1, horizon=None).due(1.0)) == [k * 0.1 for k in range(1, 11)]


def test_rows_checkpoints_and_progress_follow_the_cadence():
    toy = Toy(rounds=7)
    _, writer, progress, last = run(toy, Cadence(total=7, rows_every=3, checkpoint_every=2))
    xs = expected_x(7)
    assert [(row["round"], row["x"]) for row in writer.rows] == [(r, xs[r]) for r in (0, 3, 6, 7)]
    assert writer.rows[0]["at"] == "start" and writer.rows[1]["at"] == "after 3"
    assert [entry for entry in writer.log if entry[0] == "checkpoint"] == [
        ("checkpoint", r) for r in (2, 4, 6)
    ]
    # Progress: started at 0 of 7, advanced every round with the last row written so far.
    assert progress.calls[0] == ("start", 7, 0) and progress.calls[-1] == ("stop",)
    assert progress.calls[1:-1] == [
        ("advance", d, r) for d, r in zip(range(1, 8), (0, 0, 3, 3, 3, 6, 7), strict=True)
    ]
    assert last == writer.rows[-1]
    assert toy.counters.wall_time > 0


def test_a_continued_run_writes_no_first_row_and_starts_progress_where_it_is():
    toy = Toy(rounds=5)
    toy.restore({"counters": asdict(Counters(round=2)), "x": expected_x(2)[2]})
    _, writer, progress, _ = run(toy, Cadence(total=5))
    assert [row["round"] for row in writer.rows] == [3, 4, 5]
    assert [row["x"] for row in writer.rows] == expected_x(5)[3:]
    assert progress.calls[0] == ("start", 5, 2)
    assert toy.first_points == 1  # the driver prepares itself even when continuing


def test_a_lost_worker_rewinds_to_the_last_checkpoint_and_replays_the_same_rows():
    undisturbed = run(Toy(rounds=9), Cadence(total=9, rows_every=2, checkpoint_every=3))[1].rows
    loop, writer, _, last = run(
        Toy(rounds=9, fail_at=(5, 8)), Cadence(total=9, rows_every=2, checkpoint_every=3)
    )
    assert writer.rows == undisturbed
    assert last == undisturbed[-1]
    assert loop.recoveries == 2
    # Round 5 is lost after the checkpoint of round 3, round 8 after that of round 6.
    assert ("truncate", 3) in writer.log and ("truncate", 6) in writer.log


def test_a_loss_before_any_checkpoint_replays_from_the_start():
    undisturbed = run(Toy(rounds=4), Cadence(total=4))[1].rows
    _, writer, _, _ = run(Toy(rounds=4, fail_at=(2,)), Cadence(total=4))
    assert writer.rows == undisturbed and ("truncate", 0) in writer.log


def test_past_the_limit_the_loop_raises_the_drivers_error_with_the_rewind_round():
    with pytest.raises(RuntimeError, match="gave up; resume from 3") as caught:
        run(Toy(rounds=9, fail_at=(5,)), Cadence(total=9, checkpoint_every=3), limit=0)
    assert isinstance(caught.value.__cause__, Lost)


def test_a_loss_while_writing_a_row_is_not_recovered():
    class LosesOnEvaluation(Toy):
        def metrics_row(self, at: Any) -> dict[str, Any]:
            if self.counters.round == 2:
                raise Lost("lost while evaluating")
            return super().metrics_row(at)

    loop_toy = LosesOnEvaluation(rounds=4)
    with pytest.raises(Lost, match="while evaluating"):
        run(loop_toy, Cadence(total=4))


def test_without_recovery_a_lost_worker_propagates():
    toy = Toy(rounds=3, fail_at=(2,))
    with pytest.raises(Lost):
        RunLoop(toy, Cadence(total=3), RowCollector(), Progress()).run()


def test_kept_rows_forwards_keeps_and_truncates():
    target = Recorder()
    kept = KeptRows(target)
    for r in range(4):
        kept.append_metrics({"round": r})
    kept.save_checkpoint({"counters": {"round": 3}})
    kept.truncate_metrics(1)
    assert [row["round"] for row in kept.rows] == [0, 1] == [row["round"] for row in target.rows]
    assert target.log[-2:] == [("checkpoint", 3), ("truncate", 1)]

    class Refuses(RowCollector):
        def append_metrics(self, row: dict[str, Any]) -> None:
            raise ValueError("diverged")

    refusing = KeptRows(Refuses())
    with pytest.raises(ValueError):
        refusing.append_metrics({"round": 0})
    assert refusing.rows == []
