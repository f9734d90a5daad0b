"""Every document a ``--help`` text cites is a file of this repository."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from flsim.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]


def _parsers(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


def test_help_texts_cite_only_repo_files():
    cited = set()
    for parser in _parsers(build_parser()):
        cited |= set(re.findall(r"[\w./-]+\.md", parser.format_help()))
    assert cited, "no help text cites a document: the test would check nothing"
    missing = sorted(c for c in cited if not (ROOT / c).is_file())
    assert not missing, f"--help cites files that are not in the repository: {missing}"
