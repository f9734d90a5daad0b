"""Item 2: a resume never ends "completed" with rows missing, and says how to recover."""

from __future__ import annotations

import json

import pytest

import flsim
from flsim.engine.simulation import RoundSimulation
from flsim.results.writer import CHECKPOINT
from tests.builders import metrics_without_wall_time, run_until_crash, tiny_linreg
from tests.trust.helpers import cli, one_error_line

RAW = tiny_linreg(rounds=8, checkpoint={"every": 3}, eval={"every": 1})


@pytest.fixture
def crashed(tmp_path):
    """Killed as round index 7 starts: rows 0..7 written, the checkpoint at round 6."""
    run_dir = tmp_path / "crashed"
    run_until_crash(RAW, run_dir, RoundSimulation, 7)
    return run_dir


def _lines(run_dir):
    return (run_dir / "metrics.jsonl").read_text().splitlines(keepends=True)


def _refused(capsys, run_dir, *words):
    """Resume exits 2 with one line containing ``words``, and changes no file."""
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    code, _, err = cli(capsys, "run", "--resume", str(run_dir), "--progress", "off")
    assert code == 2
    line = one_error_line(err)
    for word in words:
        assert word in line, line
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before
    return line


def test_a_malformed_line_in_the_middle_stops_the_resume(crashed, capsys):
    lines = _lines(crashed)
    lines[2] = '{"round": 2, "train_lo\n'
    (crashed / "metrics.jsonl").write_text("".join(lines))
    _refused(capsys, crashed, "metrics.jsonl", "line 3 of 8", "checkpoints/latest.pt")


def test_deleted_rows_stop_the_resume(crashed, capsys):
    lines = _lines(crashed)
    (crashed / "metrics.jsonl").write_text("".join(lines[:2] + lines[4:]))
    _refused(capsys, crashed, "holds rounds [0, 1, 4, 5, 6]", "expected [0, 1, 2, 3, 4, 5, 6]")


def test_a_deleted_metrics_file_stops_the_resume(crashed, capsys):
    (crashed / "metrics.jsonl").unlink()
    _refused(capsys, crashed, "holds rounds [] (0 rows)")


def test_a_row_of_another_trajectory_stops_the_resume(crashed, capsys):
    lines = _lines(crashed)
    row = json.loads(lines[6])
    row["virtual_time"] += 1.0
    lines[6] = json.dumps(row) + "\n"
    (crashed / "metrics.jsonl").write_text("".join(lines))
    _refused(capsys, crashed, "does not match the checkpoint", "virtual_time")


def test_a_crash_mid_line_still_resumes_bit_identically(crashed, tmp_path):
    """The one damage a crash makes, a partial last line, is not an error."""
    with open(crashed / "metrics.jsonl", "a") as handle:
        handle.write('{"round": 8, "virtual_ti')
    full = flsim.run(RAW, run_dir=tmp_path / "full")
    resumed = flsim.resume(crashed)
    assert resumed.summary["status"] == "completed"
    assert metrics_without_wall_time(resumed.run_dir) == metrics_without_wall_time(full.run_dir)


def test_leftover_temp_files_are_removed(crashed):
    stale = crashed / "checkpoints" / ".latest.pt.0123abcd.tmp"
    stale.write_bytes(b"half a checkpoint")
    flsim.resume(crashed)
    assert not stale.exists()
    assert not list(crashed.rglob(".*.tmp"))


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04trunc", b"garbage, not a checkpoint\n" * 10])
def test_a_damaged_checkpoint_is_one_line_naming_the_file(crashed, capsys, content):
    path = crashed / CHECKPOINT
    path.write_bytes(content)
    line = _refused(capsys, crashed, str(path), "unreadable checkpoint")
    assert "Errno" not in line


def test_a_truncated_checkpoint_is_one_line_naming_the_file(crashed, capsys):
    path = crashed / CHECKPOINT
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    _refused(capsys, crashed, str(path), "unreadable checkpoint")


def test_an_event_run_with_rows_missing_before_its_checkpoint_is_refused(tmp_path, capsys, monkeypatch):
    """Event runs carry their rows in the checkpoint; the file must still begin with them."""
    from flsim.algorithms.dadao import DADAO
    from tests.builders import make_ridge

    raw = make_ridge({"name": "dadao"}, eval={"every_time": 4.0}, checkpoint={"every": 3})
    original = DADAO.on_compute

    def dies_after_time_25(self, *args):
        if args[-1] > 25.0:
            raise RuntimeError("killed")
        return original(self, *args)

    crashed = tmp_path / "crashed"
    with monkeypatch.context() as patch:
        patch.setattr(DADAO, "on_compute", dies_after_time_25)
        with pytest.raises(RuntimeError, match="killed"):
            flsim.run(raw, run_dir=crashed)
    lines = _lines(crashed)
    (crashed / "metrics.jsonl").write_text("".join(lines[:1] + lines[2:]))
    _refused(capsys, crashed, "begins with rows [0, 2, 3", "the checkpoint has [0, 1, 2")
