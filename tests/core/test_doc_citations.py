"""Every document the code, tests, scenarios and docs cite is a file in this repository.

A citation is any path-like token ending in ``.md`` (``docs/algorithms.md``, ``README.md``): it
must resolve, from the repository root or from the citing file's folder, to a file inside the
repository. A citation of a file outside it (a design note only the authors have) fails here.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CITATION = re.compile(r"(?<![\w/.:-])((?:\.\.?/)*[\w.-]+(?:/[\w.-]+)*\.md)\b")
CITING_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".cfg", ".txt", ""}


def _tracked_files() -> list[Path]:
    listing = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    this_checker = Path(__file__).resolve()  # its fixtures cite missing files on purpose
    paths = (ROOT / name for name in listing.stdout.splitlines())
    return [p for p in paths if p.is_file() and p.resolve() != this_checker]


def _dangling_citations(files: list[Path], root: Path = ROOT) -> list[str]:
    dangling = []
    for path in files:
        if path.suffix not in CITING_SUFFIXES:
            continue
        try:
            text = path.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        for match in CITATION.finditer(text):
            cited = match.group(1)
            candidates = ((root / cited).resolve(), (path.parent / cited).resolve())
            if not any(c.is_file() and c.is_relative_to(root.resolve()) for c in candidates):
                dangling.append(f"{path.relative_to(root)}: {cited}")
    return dangling


def test_every_cited_document_exists_in_the_repository():
    assert _dangling_citations(_tracked_files()) == []


def test_a_citation_of_a_missing_document_is_caught(tmp_path):
    """The check itself can fail: a file citing a note outside the repo is reported."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "algorithms.md").write_text("# rules\n")
    fake = tmp_path / "module.py"
    outside = tmp_path.parent / "NOTES.md"  # exists, but outside the repository
    outside.write_text("# private\n")
    cited = "../" + outside.name
    fake.write_text(f'"""See {cited} (F3), missing/RULES.md and docs/algorithms.md."""\n')
    found = _dangling_citations([fake], root=tmp_path)
    assert found == [f"module.py: {cited}", "module.py: missing/RULES.md"]
