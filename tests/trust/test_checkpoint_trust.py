"""Item 1: nothing read back from a run directory can run code; checkpoints name their run."""

from __future__ import annotations

import pytest
import torch

import flsim
from flsim.config.errors import ConfigError
from flsim.engine.simulation import RoundSimulation
from flsim.hosts.state_store import ClientStateStore
from flsim.results.writer import CHECKPOINT, CHECKPOINT_FORMAT, RunWriter
from tests.builders import run_until_crash, tiny_linreg
from tests.trust.helpers import Planted, cli, one_error_line


def _crashed_run(tmp_path, **updates):
    raw = tiny_linreg(rounds=6, checkpoint={"every": 2}, **updates)
    run_dir = tmp_path / "run"
    run_until_crash(raw, run_dir, RoundSimulation, 4)
    return run_dir


def test_a_planted_pickle_in_the_checkpoint_does_not_run(tmp_path, capsys):
    run_dir = _crashed_run(tmp_path)
    marker = tmp_path / "pwned"
    checkpoint = run_dir / CHECKPOINT
    torch.save({"format": CHECKPOINT_FORMAT, "identity": None, "state": Planted(marker)}, checkpoint)
    metrics_before = (run_dir / "metrics.jsonl").read_bytes()

    code, _, err = cli(capsys, "run", "--resume", str(run_dir), "--progress", "off")

    assert not marker.exists(), "the planted pickle ran"
    assert code == 2
    line = one_error_line(err)
    assert str(checkpoint) in line and "unreadable checkpoint" in line
    assert (run_dir / "metrics.jsonl").read_bytes() == metrics_before


def test_a_planted_pickle_as_the_whole_checkpoint_does_not_run(tmp_path):
    run_dir = _crashed_run(tmp_path)
    marker = tmp_path / "pwned"
    torch.save(Planted(marker), run_dir / CHECKPOINT)
    with pytest.raises(ConfigError, match="unreadable checkpoint"):
        flsim.resume(run_dir)
    assert not marker.exists()


def test_a_planted_pickle_in_a_spilled_client_state_does_not_run(tmp_path):
    store = ClientStateStore(lambda c: {"x": torch.zeros(2)}, memory_budget_bytes=0, spill_dir=tmp_path)
    store.put(0, {"x": torch.zeros(2), "note": "not a tensor"})  # spilled through torch.save
    spilled = store._cold[0].path
    marker = tmp_path / "pwned"
    torch.save(Planted(marker), spilled)
    with pytest.raises(Exception, match="Weights only load failed"):
        store.get(0)
    assert not marker.exists()


def test_checkpoints_hold_tensors_and_plain_containers_only(tmp_path):
    """Every driver's checkpoint loads with weights_only=True (fedbuff holds jobs in flight)."""
    raw = tiny_linreg(
        rounds=4,
        checkpoint={"every": 2},
        algorithm={"name": "fedbuff", "lr": 0.05, "local_steps": 2, "buffer_size": 2, "batch_size": 8},
        clients_per_round=None,
    )
    result = flsim.run(raw, run_dir=tmp_path / "run")
    wrapped = torch.load(result.run_dir / CHECKPOINT, weights_only=True)
    assert wrapped["format"] == CHECKPOINT_FORMAT
    assert wrapped["identity"]["seed"] == raw["seed"]
    assert len(wrapped["identity"]["config_sha256"]) == 64


def test_a_checkpoint_of_another_run_is_refused_naming_both(tmp_path, capsys):
    ours = _crashed_run(tmp_path / "a")
    theirs = _crashed_run(tmp_path / "b", seed=7)
    (ours / CHECKPOINT).write_bytes((theirs / CHECKPOINT).read_bytes())

    code, _, err = cli(capsys, "run", "--resume", str(ours), "--progress", "off")

    assert code == 2
    line = one_error_line(err)
    assert "belongs to another run" in line
    assert "seed 7" in line and "seed 1" in line


def test_the_identity_survives_the_config_round_trip(tmp_path):
    """A resume recomputes the hash from config.yaml: it must match the one the run wrote."""
    run_dir = _crashed_run(tmp_path)
    writer = RunWriter(run_dir)
    stored = torch.load(run_dir / CHECKPOINT, weights_only=True)["identity"]
    from flsim.api import resolved_config
    from flsim.config.loading import read_yaml
    from flsim.results.writer import config_identity
    from flsim.scenario import load_scenario

    raw = read_yaml(writer.run_dir / "config.yaml")
    raw.pop("versions")
    scenario = load_scenario(raw)
    assert config_identity(resolved_config(scenario), scenario.seed) == stored
