"""``flsim replay`` reads ``events.jsonl`` as untrusted input: a bad log is exit 2 and one line.

Each case plants one defect in an otherwise valid log of a wall-clock run directory (config
and log written here, no Ray needed) and checks the exit code, the single line (naming the
file and the line), that nothing was written, and that a valid log still replays exactly as
the in-memory replay of the same events does.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from flsim.api import load_scenario, replay_run
from flsim.config.errors import ConfigError
from flsim.engine import event_log
from flsim.engine.event_driver import replay
from flsim.hosts.sinks import RowCollector
from flsim.tasks import build_task
from tests.builders import wall_clock_dadao
from tests.trust.helpers import cli, one_error_line


def _wall_scenario() -> dict:
    return wall_clock_dadao()


def _events() -> list[dict]:
    """Alternating gradient and ring-edge events at increasing times in [0, 8)."""
    out = []
    for k in range(60):
        node = k % 6
        if k % 2:
            out.append({"t": 0.13 * k, "kind": "communication", "i": node, "j": (node + 1) % 6})
        else:
            out.append({"t": 0.13 * k, "kind": "gradient", "i": node, "j": -1})
    return out


def _source(tmp_path: Path, lines: list[str] | None = None, tail: bytes = b"") -> Path:
    source = tmp_path / "wall"
    source.mkdir()
    (source / "config.yaml").write_text(yaml.safe_dump(_wall_scenario()))
    lines = [json.dumps(e) for e in _events()] if lines is None else lines
    (source / "events.jsonl").write_bytes("".join(line + "\n" for line in lines).encode() + tail)
    return source


def _with(index: int, **change: object) -> list[str]:
    events = _events()
    events[index] = {**events[index], **change}
    return [json.dumps(e) for e in events]


def test_a_valid_log_replays_as_the_in_memory_replay_of_its_events(tmp_path, capsys):
    source = _source(tmp_path)
    code, out, err = cli(capsys, "replay", str(source), "--run-dir", str(tmp_path / "again"))
    assert code == 0, err
    assert out.strip() == str(tmp_path / "again")
    rows = [json.loads(line) for line in (tmp_path / "again" / "metrics.jsonl").read_text().splitlines()]
    scenario = load_scenario(_wall_scenario())
    collector = RowCollector()
    log = [(e["t"], e["kind"], e["i"], e["j"]) for e in _events()]
    replay(scenario, build_task(scenario.task, scenario.seed), collector, log)
    strip = [{k: v for k, v in row.items() if k != "wall_time"} for row in rows]
    assert strip == [{k: v for k, v in row.items() if k != "wall_time"} for row in collector.rows]
    assert [row["virtual_time"] for row in rows] == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert rows[-1]["events"] == 60


BAD_LINES = {
    "nan time": (_with(3, t=float("nan")), 4, "not a finite number"),
    "infinite time": ([*_with(0)[:5], '{"t": 1e999, "kind": "gradient", "i": 0, "j": -1}'], 6, "finite"),
    "huge time (an endless grid)": (_with(59, t=1e300), 60, "outside [0, 10]"),
    "negative time": (_with(0, t=-1.0), 1, "outside"),
    "out of order": (_with(10, t=0.0), 11, "out of order"),
    "unknown node": (_with(4, i=6), 5, "node i is not a node id in 0..5"),
    "boolean node": (_with(4, i=True), 5, "node i"),
    "self edge": (_with(5, j=5), 6, "other than i"),
    "not neighbours": (_with(5, j=2), 6, "nodes 5 and 2 are not neighbours"),
    "gradient with a peer": (_with(2, j=3), 3, "j = -1"),
    "unknown kind": (_with(2, kind="evil"), 3, "kind is not one of"),
    "missing key": ([*_with(0)[:7], '{"t": 1.0, "kind": "gradient", "i": 0}'], 8, "exactly the keys"),
    "extra key": (_with(1, extra=1), 2, "exactly the keys"),
    "not an object": (["[1, 2, 3]"], 1, "exactly the keys"),
    "blank line": ([*_with(0)[:3], "", *_with(0)[3:]], 4, "not a complete JSON"),
    "gigantic line": ([*_with(0)[:2], "[" + "1," * 5_000_000 + "1]"], 3, "longer than 512 bytes"),
}


@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_a_bad_line_is_exit_2_naming_the_file_and_the_line(tmp_path, capsys, case):
    lines, lineno, reason = BAD_LINES[case]
    source = _source(tmp_path, lines)
    code, _, err = cli(capsys, "replay", str(source), "--run-dir", str(tmp_path / "again"))
    assert code == 2
    line = one_error_line(err)
    assert str(source / "events.jsonl") in line
    assert f"events.jsonl line {lineno}: " in line and reason in line
    assert not (tmp_path / "again").exists()


@pytest.mark.parametrize(
    ("tail", "reason"), [(b'{"t": 7.9, "kind": "grad', "not a complete JSON"), (b"\xff\xfe\n", "not UTF-8")]
)
def test_a_truncated_or_binary_last_line_names_line_61(tmp_path, capsys, tail, reason):
    source = _source(tmp_path, tail=tail)
    code, _, err = cli(capsys, "replay", str(source), "--run-dir", str(tmp_path / "again"))
    assert code == 2
    line = one_error_line(err)
    assert "events.jsonl line 61: " in line and reason in line


def test_more_events_than_the_bound_is_refused_at_the_first_line_past_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(event_log, "MAX_EVENTS", 50)
    source = _source(tmp_path)
    code, _, err = cli(capsys, "replay", str(source), "--run-dir", str(tmp_path / "again"))
    assert code == 2
    assert "events.jsonl line 51: more than 50 events" in one_error_line(err)


def test_a_pipe_in_place_of_the_log_is_refused_without_blocking(tmp_path):
    source = _source(tmp_path)
    (source / "events.jsonl").unlink()
    os.mkfifo(source / "events.jsonl")  # opening it to read would wait for a writer forever
    with pytest.raises(ConfigError, match=r"events\.jsonl is not a regular file"):
        replay_run(source, tmp_path / "again")
    assert not (tmp_path / "again").exists()
