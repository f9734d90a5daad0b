"""Checks that a run directory can be resumed without losing or mixing up metric rows.

Resume rewinds ``metrics.jsonl`` to the checkpoint and recomputes what follows. That is only
correct if the rows up to the checkpoint are all there and belong to the same trajectory:
otherwise the resumed run would end ``completed`` with rows missing, or with rows of two
different runs. These checks run before anything in the directory is touched, and a failure
is a :class:`ConfigError` (exit 2) that says what is wrong and how to recover.
"""

from __future__ import annotations

from typing import Any

from flsim.config.errors import ConfigError
from flsim.results.writer import RunWriter

#: Counters a round driver writes into each row and into its checkpoint; ``wall_time`` is
#: left out (it is not part of the deterministic trajectory).
_COUNTERS = ("round", "virtual_time", "events", "bytes_up", "bytes_down", "grad_evals")


def _recovery(writer: RunWriter) -> str:
    checkpoint = writer.run_dir / "checkpoints" / "latest.pt"
    return (
        f"restore metrics.jsonl from a backup, or delete {checkpoint} to recompute the run from the "
        "start with --resume"
    )


def expected_row_rounds(scenario: Any, up_to: int) -> list[int]:
    """Rounds a round driver writes a row for, up to ``up_to``: 0, every ``eval.every``, the last."""
    every, last = scenario.eval.every, scenario.rounds
    return [0] + [done for done in range(1, up_to + 1) if done % every == 0 or done == last]


def _short(rounds: list[int]) -> str:
    text = ", ".join(str(r) for r in rounds[:12])
    return f"[{text}{', ...' if len(rounds) > 12 else ''}] ({len(rounds)} rows)"


def _check_round_rows(scenario: Any, writer: RunWriter, checkpoint: dict[str, Any]) -> None:
    counters = checkpoint["counters"]
    last = int(counters["round"])
    rows = [row for row in writer.read_metrics() if row["round"] <= last]
    found = [row["round"] for row in rows]
    expected = expected_row_rounds(scenario, last)
    if found != expected:
        raise ConfigError(
            "--resume",
            str(writer.run_dir),
            f"metrics.jsonl holds rounds {_short(found)} up to the checkpoint at round {last}, "
            f"expected {_short(expected)}; {_recovery(writer)}",
        )
    if rows and rows[-1]["round"] == last:
        differ = [key for key in _COUNTERS if key in counters and rows[-1].get(key) != counters[key]]
        if differ:
            raise ConfigError(
                "--resume",
                str(writer.run_dir),
                f"the row of round {last} in metrics.jsonl does not match the checkpoint "
                f"({', '.join(differ)} differ): they come from different runs; {_recovery(writer)}",
            )


def _check_event_rows(writer: RunWriter, checkpoint: dict[str, Any]) -> None:
    """An event run's checkpoint carries its rows; the file must begin with the same rounds."""
    saved = [row["round"] for row in checkpoint.get("rows", [])]
    found = [row["round"] for row in writer.read_metrics()][: len(saved)]
    if found != saved:
        raise ConfigError(
            "--resume",
            str(writer.run_dir),
            f"metrics.jsonl begins with rows {_short(found)}, the checkpoint has {_short(saved)}; "
            f"{_recovery(writer)}",
        )


def check_resumable(scenario: Any, writer: RunWriter, checkpoint: dict[str, Any] | None) -> None:
    """Raise :class:`ConfigError` unless resuming from ``checkpoint`` keeps every row intact.

    Without a checkpoint a resume recomputes the run from the start, and there is nothing to
    keep. Malformed lines are reported by :meth:`RunWriter.read_metrics` itself.
    """
    if checkpoint is None:
        return
    if checkpoint.get("kind") == "events":
        _check_event_rows(writer, checkpoint)
    elif "counters" in checkpoint:
        _check_round_rows(scenario, writer, checkpoint)
    else:
        raise ConfigError("checkpoint", str(writer.run_dir), f"has no counters; {_recovery(writer)}")
