"""Items 7 and 8: one directory per run under concurrency; no file contents in errors; one mode."""

from __future__ import annotations

import multiprocessing
import os
import stat

import flsim
from flsim.scenario import load_scenario
from tests.builders import tiny_linreg
from tests.trust.helpers import cli, one_error_line, write_scenario

PROCESSES = 8


def _claim(args):
    """In a child: wait for the others, then claim a run directory as flsim.run does."""
    from flsim.api import new_run_dir

    scenario, barrier = args
    barrier.wait(timeout=60)
    return str(new_run_dir(scenario))


def test_parallel_processes_each_get_their_own_run_directory(tmp_path):
    """8 processes that start in the same second: before, most trials put several in one."""
    scenario = load_scenario(tiny_linreg(output={"dir": str(tmp_path)}))
    context = multiprocessing.get_context("fork")
    with context.Manager() as manager, context.Pool(PROCESSES) as pool:
        for _trial in range(3):
            barrier = manager.Barrier(PROCESSES)
            claimed = pool.map(_claim, [(scenario, barrier)] * PROCESSES)
            assert len(set(claimed)) == PROCESSES
            assert all(os.path.isdir(path) for path in claimed)


def test_a_topology_error_does_not_quote_the_file(tmp_path, capsys):
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$s3cr3tHASH:19000:0:99999:7:::\n")
    raw = tiny_linreg(
        algorithm={"name": "dpsgd", "lr": 0.05, "local_steps": 1, "batch_size": 8},
        clients_per_round=None,
        topology={"file": str(secret)},
    )
    code, _, err = cli(capsys, "validate", str(write_scenario(tmp_path / "s.yaml", raw)))
    assert code == 2
    line = one_error_line(err)
    assert "line 1" in line and "topology.file" in line
    assert "s3cr3t" not in err and "root:" not in err


def test_a_yaml_error_does_not_quote_the_file(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text("name: x\npassword: [s3cr3t\n")
    code, _, err = cli(capsys, "validate", str(path))
    assert code == 2
    assert "line" in one_error_line(err) and "s3cr3t" not in err


def test_every_file_of_a_run_has_the_same_mode(tmp_path):
    result = flsim.run(tiny_linreg(rounds=3, checkpoint={"every": 1}), run_dir=tmp_path / "run")
    umask = os.umask(0)
    os.umask(umask)
    modes = {
        path.relative_to(result.run_dir).as_posix(): stat.S_IMODE(path.stat().st_mode)
        for path in result.run_dir.rglob("*")
        if path.is_file()
    }
    assert {
        "config.yaml",
        "summary.json",
        "metrics.jsonl",
        "metrics.parquet",
        "checkpoints/latest.pt",
    } <= set(modes)
    assert set(modes.values()) == {0o666 & ~umask}, modes
