"""Item 3: tiny inputs cannot exhaust memory, time or the stack; echoes are capped."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

import flsim
from flsim.config.errors import ConfigError
from flsim.scenario import load_scenario
from tests.builders import tiny_linreg
from tests.trust.helpers import cli, one_error_line, write_scenario

#: 400 bytes that expand to 9**9 (387 million) strings.
BOMB = "\n".join(
    [
        'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
        *(f"{c}: &{c} [{', '.join(['*' + p] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi", strict=True)),
    ]
)

#: Address-space cap for the subprocess checks: a bomb that expanded would blow through it.
LIMIT = f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({3 << 30}, {3 << 30}))"


def _bounded_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    code = f"{LIMIT}; import sys; from flsim.cli import main; sys.exit(main({list(argv)!r}))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_an_alias_bomb_is_refused_quickly_within_memory(tmp_path):
    path = write_scenario(tmp_path / "bomb.yaml", BOMB)
    assert len(BOMB) < 500
    started = time.perf_counter()
    done = _bounded_cli("validate", str(path))
    assert time.perf_counter() - started < 60
    assert done.returncode == 2, done.stderr[-2000:]
    assert "aliases are expanded" in one_error_line(done.stderr)


def test_a_bomb_inside_dataset_params_is_refused_by_validate(tmp_path, capsys):
    indented = "\n".join("    " + line for line in BOMB.replace(": &", ": &x").splitlines())
    text = f"name: x\ntask:\n  dataset: linreg\n  dataset_params:\n{indented.replace('*', '*x')}\n"
    path = write_scenario(tmp_path / "bomb.yaml", text)
    code, _, err = cli(capsys, "validate", str(path))
    assert code == 2
    assert "aliases are expanded" in one_error_line(err)


def test_a_shared_reference_bomb_given_as_a_mapping_is_refused():
    """The Python API has no YAML layer: the same bound applies to the mapping."""
    level: object = ["lol"] * 9
    for _ in range(8):
        level = [level] * 9
    raw = tiny_linreg()
    raw["task"]["dataset_params"]["bomb"] = level
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="more than 100000 values"):
        load_scenario(raw)
    assert time.perf_counter() - started < 10


@pytest.mark.parametrize("depth", [60, 1000, 100_000])
def test_deep_nesting_is_a_config_error_not_a_recursion_error(tmp_path, capsys, depth):
    path = write_scenario(tmp_path / "deep.yaml", "a: " + "[" * depth + "]" * depth + "\n")
    code, _, err = cli(capsys, "validate", str(path))
    assert code == 2
    assert "nest" in one_error_line(err)


def test_deep_nesting_given_as_a_mapping_is_a_config_error():
    raw = tiny_linreg()
    node = raw["task"]["dataset_params"]
    for _ in range(2000):
        node["x"] = {}
        node = node["x"]
    with pytest.raises(ConfigError, match="levels deep"):
        flsim.run(raw)


def test_a_huge_value_is_echoed_capped(tmp_path, capsys):
    path = write_scenario(tmp_path / "s.yaml", tiny_linreg(output={"dir": str(tmp_path / "out")}))
    huge = "x" * (40 << 20)
    code, _, err = cli(capsys, "validate", str(path), "-o", f"algorithm.lr={huge}")
    assert code == 2
    line = one_error_line(err)
    assert "algorithm.lr" in line
    assert len(err) < 500


def test_an_oversized_file_is_refused_without_reading_it_all(tmp_path, capsys):
    path = tmp_path / "big.yaml"
    path.write_text("name: x\n" + "# padding\n" * 200_000)
    code, _, err = cli(capsys, "validate", str(path))
    assert code == 2
    assert "larger than" in one_error_line(err)


@pytest.mark.parametrize("content", [BOMB.encode(), b"title: caf\xe9\n"])
def test_a_report_spec_goes_through_the_same_bounded_loader(tmp_path, capsys, content):
    spec = tmp_path / "spec.yaml"
    spec.write_bytes(content)
    flsim.run(tiny_linreg(rounds=1), run_dir=tmp_path / "run")
    code, _, err = cli(
        capsys, "report", str(tmp_path / "run"), "--spec", str(spec), "-o", str(tmp_path / "r.html")
    )
    assert code == 2
    assert "--spec" in one_error_line(err)
    assert not (tmp_path / "r.html").exists()
