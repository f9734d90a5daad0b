"""Shared pieces of the trust tests: running the CLI in process, and planting files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from flsim.cli import main


def write_scenario(path: Path, scenario: dict[str, Any] | str) -> Path:
    text = scenario if isinstance(scenario, str) else yaml.safe_dump(scenario, sort_keys=False)
    path.write_text(text)
    return path


def cli(capsys: Any, *argv: str) -> tuple[int, str, str]:
    """``flsim argv...`` in this process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def one_error_line(err: str) -> str:
    """The single line an exit 2 prints; fails the test if there is not exactly one."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err[:2000]
    assert len(lines[0]) < 500, lines[0][:600]
    assert "Traceback" not in err
    return lines[0]


class Planted:
    """A pickle that would create ``marker`` if anything unpickled it with full pickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))
