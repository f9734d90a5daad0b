"""The layers of docs/architecture.md hold, and stay held.

``lint-imports`` checks the contracts in ``pyproject.toml`` (layers, no cycles between
packages, ``ray`` only under ``flsim.backends``). Running it here makes a violation fail the
test suite, not only ``make lint``; the second test shows the check has teeth by adding a
wrong import to a copy of the package. The last test keeps every function short enough to
read in one screen.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
MAX_FUNCTION_LINES = 60


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    # The layer contracts are part of the suite: a missing checker is a failure, not a skip.
    assert LINT_IMPORTS.exists(), "import-linter is not installed (pip install -e '.[dev]')"
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )


def test_the_import_contracts_hold():
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout[-4000:]


@pytest.mark.parametrize(
    ("module", "bad_import", "contract"),
    [
        ("rng.py", "import flsim.engine.simulation", "Layers"),
        ("engine/gossip.py", "import ray", "Only flsim.backends imports ray"),
        ("report/html.py", "import flsim.engine.modes", "never import the engine"),
    ],
)
def test_a_wrong_import_breaks_a_contract(tmp_path, module, bad_import, contract):
    shutil.copytree(ROOT / "flsim", tmp_path / "flsim", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "flsim" / module
    target.write_text(target.read_text() + f"\n{bad_import}  # a wrong import, on purpose\n")
    result = _lint_imports(tmp_path)
    assert result.returncode != 0
    assert f"{contract}" in result.stdout and "BROKEN" in result.stdout


def test_no_function_is_longer_than_sixty_lines():
    long: dict[str, int] = {}
    for path in sorted((ROOT / "flsim").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(ROOT).as_posix()}::{node.name}"] = length
    assert not long, f"split these along their seams: {long}"


def test_every_registered_algorithm_has_a_driver_and_a_backend_per_kind():
    from flsim.algorithms import REGISTRY
    from flsim.config.schema import BackendConfig
    from flsim.engine.modes import MODES

    kinds = set(BackendConfig.model_fields["kind"].annotation.__args__)
    for name, algorithm in REGISTRY.items():
        assert algorithm.name == name
        assert set(MODES[algorithm.mode].backends) == kinds, name
