"""Model options and client selection are bit-identical on the embedded and Ray backends.

One run covers the stochastic model (SELU with alpha dropout: masks from each client's round
stream, on whichever actor runs it) with importance-weighted temperature sampling (weights set
by the driver, carried on the replies to the server actor); a second covers batch-statistics
normalisation with DPP selection.
"""

from __future__ import annotations

import pytest

import flsim
from tests.builders import metrics_without_wall_time, tiny_digits

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.usefixtures("ray_session")]

CASES = {
    "selu-dropout-importance": (
        {"activation": "selu", "alpha_dropout": 0.1},
        {"kind": "temperature", "tau": 2.0, "weighting": "importance"},
    ),
    "batchnorm-dpp": ({"norm": "batch"}, {"kind": "dpp"}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_local_and_ray_give_identical_metrics(tmp_path, case):
    model, sampling = CASES[case]
    raw = tiny_digits(
        task={"num_clients": 12, "partition": {"kind": "dirichlet", "alpha": 0.1}, "model": model},
        sampling=sampling,
        clients_per_round=4,
        eval={"every": 2},
    )
    local = flsim.run(raw, run_dir=tmp_path / "local")
    remote = flsim.run(
        {**raw, "backend": {"kind": "ray", "num_actors": 2, "timeout_s": 120}}, run_dir=tmp_path / "ray"
    )
    rows = metrics_without_wall_time(local.run_dir)
    assert rows == metrics_without_wall_time(remote.run_dir)
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
