"""Acceptance fuzz test: mutated shipped scenarios exit 0, or 2 with one short line.

Every shipped scenario file (sweep files aside: they expand these same scenarios) is
mutated (types, ranges, unknown and missing keys, encodings, aliases, nesting, huge numbers,
non-finite floats) and validated in this process, 500 derandomized examples. A smaller set is
also run (``run -o rounds=1``) in process, and a handful of both through the real command
line in a subprocess (``slow``), where exit codes, output and memory are the real ones.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flsim.cli import main

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted(
    p for p in (ROOT / "scenarios").rglob("*.yaml") if set(yaml.safe_load(p.read_text()) or {}) != {"sweep"}
)
#: Quick to run for one round on the embedded backend (the run subset draws from these).
#: The population-scale scenarios are left out: their setup (an exact optimum over 10⁶ clients,
#: about 30 s) is measured by ``benchmarks.scale``, and ``tests/scale`` checks the same lazy
#: machinery on smaller populations; this test's time limit is there to catch a hang on bad input.
RUNNABLE = [
    p
    for p in SCENARIOS
    if not {"studies", "scale"} & set(p.parts) and "ray" not in p.name and "wall" not in p.name
]
#: Seconds one in-process call may take, and the peak resident memory of the whole test.
CALL_SECONDS = 20.0
PEAK_RSS_BYTES = 4 << 30
#: What a fresh interpreter needs to import flsim and torch (on a loaded 2-core machine).
STARTUP_SECONDS = 30.0

HUGE = [2**63, -(2**63) - 1, 2**64, 10**30, 1e30, 1e308, -1e308, 5e-324]
NON_FINITE = [math.inf, -math.inf, math.nan]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from(HUGE + NON_FINITE),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["inf", "nan", "-1", "1e999", "\x00", "..", "a" * 5000, "ring", "fedavg"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def _paths(data: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path in a nested mapping/list, the root excluded."""
    found = []
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else []
    for key, value in items:
        found.append((*prefix, key))
        found += _paths(value, (*prefix, key))
    return found


def _parent(data: Any, path: tuple) -> Any:
    for key in path[:-1]:
        data = data[key]
    return data


@st.composite
def mutated(draw: Any, files: list[Path] = SCENARIOS) -> bytes:
    """The bytes of a mutated scenario file."""
    path = draw(st.sampled_from(files))
    data = yaml.safe_load(path.read_text()) or {}
    kind = draw(
        st.sampled_from(
            ["set", "set", "set", "delete", "unknown", "nest", "alias_bomb", "encoding", "truncate", "bytes"]
        )
    )
    paths = _paths(data)
    if kind == "set" and paths:
        where = draw(st.sampled_from(paths))
        _parent(data, where)[where[-1]] = draw(values)
    elif kind == "delete" and paths:
        where = draw(st.sampled_from(paths))
        _parent(data, where).pop(where[-1])  # dict.pop(key) or list.pop(index)
    elif kind == "unknown":
        mappings = [p for p in paths if isinstance(_parent(data, (*p, None)), dict)] + [()]
        where = draw(st.sampled_from(mappings))
        target = _parent(data, (*where, None))
        target[draw(st.text(min_size=1, max_size=12))] = draw(values)
    elif kind == "nest":
        depth = draw(st.sampled_from([40, 55, 1000, 20_000]))
        return (yaml.safe_dump(data) + "deep: " + "[" * depth + "]" * depth + "\n").encode()
    elif kind == "alias_bomb":
        levels = draw(st.integers(min_value=3, max_value=9))
        lines = ['l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
        lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
        section = draw(st.sampled_from(["algorithm", "task", "study", "topology"]))
        body = yaml.safe_dump(data) + "\n".join(lines) + f"\n{section}_x: *l{levels - 1}\n"
        return body.encode()
    text = yaml.safe_dump(data, allow_unicode=True)
    if kind == "encoding":
        codec = draw(st.sampled_from(["utf-16", "latin-1", "utf-8-sig", "cp1252"]))
        return (text + "note: café ☃\n").encode(codec, errors="replace")
    if kind == "truncate":
        return text.encode()[: draw(st.integers(min_value=0, max_value=len(text)))]
    if kind == "bytes":
        return draw(st.binary(max_size=200)) + text.encode()
    return text.encode()


def _cli(argv: list[str]) -> tuple[int, str, float]:
    """``flsim argv`` in process: exit code, stderr, seconds."""
    err = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    return code, err.getvalue(), time.perf_counter() - started


def _check_outcome(
    code: int, err: str, seconds: float, out_dir: Path | None = None, limit: float = CALL_SECONDS
) -> None:
    assert "Traceback" not in err, err[-3000:]
    assert seconds < limit, seconds
    if code == 2:
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1, err[-3000:]
        assert len(lines[0]) < 500, lines[0][:600]
        if out_dir is not None:
            assert not any(out_dir.rglob("summary.json")), "an exit 2 left a run directory"
    elif code == 1:  # only a run that diverged (item 5) exits 1
        assert out_dir is not None and "run diverged" in err, err[-3000:]
        summaries = [json.loads(p.read_text()) for p in out_dir.rglob("summary.json")]
        assert [s["status"] for s in summaries] == ["diverged"]
    else:
        assert code == 0, (code, err[-3000:])


def test_the_mutations_cover_every_shipped_scenario():
    assert len(SCENARIOS) >= 20 and RUNNABLE


@settings(
    max_examples=500,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
@given(content=mutated())
def test_validate_exits_0_or_2_with_one_short_line(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("fuzz") / "scenario.yaml"
    path.write_bytes(content)
    code, err, seconds = _cli(["validate", str(path)])
    _check_outcome(code, err, seconds)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 < PEAK_RSS_BYTES


#: Mutations for the run subset: everything but huge sizes, which validate (above) covers and
#: which would make a legitimate but long run.
run_values = st.one_of(st.none(), st.booleans(), st.sampled_from([*NON_FINITE, -1, 0, 0.5, "x", [], {}]))


@st.composite
def mutated_runnable(draw: Any) -> bytes:
    path = draw(st.sampled_from(RUNNABLE))
    data = yaml.safe_load(path.read_text())
    paths = _paths(data)
    for _ in range(draw(st.integers(min_value=0, max_value=2))):
        kind = draw(st.sampled_from(["set", "delete", "unknown"]))
        where = draw(st.sampled_from(paths))
        parent = _parent(data, where)
        if kind == "set":
            parent[where[-1]] = draw(run_values)
        elif kind == "delete":
            parent.pop(where[-1])
        elif isinstance(parent, dict):
            parent["unknown_key"] = 1
        paths = _paths(data)
    return yaml.safe_dump(data).encode()


@settings(
    max_examples=40,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(content=mutated_runnable())
def test_run_one_round_exits_0_or_2(tmp_path_factory, content):
    folder = tmp_path_factory.mktemp("fuzzrun")
    path = folder / "scenario.yaml"
    path.write_bytes(content)
    out = folder / "out"
    argv = ["run", str(path), "-o", "rounds=1", "-o", f"output.dir={out}", "--progress", "off"]
    code, err, seconds = _cli([*argv, "-o", "backend.kind=local", "-o", "budget.time=1"])
    _check_outcome(code, err, seconds, out)


def _subprocess(argv: list[str]) -> tuple[int, str, float]:
    limit = "import resource; resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))"
    code = f"{limit}; import sys; from flsim.cli import main; sys.exit(main({argv!r}))"
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    return done.returncode, done.stderr, time.perf_counter() - started


@pytest.mark.slow
@settings(
    max_examples=4, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)
@given(content=mutated(), run=mutated_runnable())
def test_through_the_real_command_line(tmp_path_factory, content, run):
    folder = tmp_path_factory.mktemp("fuzzcli")
    (folder / "v.yaml").write_bytes(content)
    code, err, seconds = _subprocess(["validate", str(folder / "v.yaml")])
    _check_outcome(code, err, seconds, limit=CALL_SECONDS + STARTUP_SECONDS)
    (folder / "r.yaml").write_bytes(run)
    out = folder / "out"
    argv = ["run", str(folder / "r.yaml"), "-o", "rounds=1", "-o", f"output.dir={out}", "--progress", "off"]
    code, err, seconds = _subprocess([*argv, "-o", "backend.kind=local", "-o", "budget.time=1"])
    _check_outcome(code, err, seconds, out, limit=CALL_SECONDS + STARTUP_SECONDS)
