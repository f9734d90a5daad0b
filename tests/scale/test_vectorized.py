"""Batched client execution, ``backend.vectorize`` (docs/vectorized.md; issue 17, part 2)."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import yaml
from torch import nn

import flsim
from benchmarks.vectorized import time_round
from flsim.algorithms.batched import vectorize_blocker
from flsim.algorithms.client import ClientContext
from flsim.algorithms.fedavg import FedAvg
from flsim.config.errors import ConfigError
from flsim.hosts.batch_indices import epoch_shuffles, step_slices
from flsim.hosts.client_host import ClientHost, initial_model
from flsim.hosts.node_host import NodeHost
from flsim.hosts.stacked_gradients import stacked_gradient
from flsim.hosts.vectorized import AUTO_MIN_CLIENTS
from flsim.rng import torch_rng
from flsim.scenario import load_scenario
from flsim.tasks.base import ModuleObjective, Shard
from flsim.tasks.convex import LeastSquaresObjective, LogisticObjective
from tests.builders import metrics_without_wall_time, tiny_digits, tiny_linreg

#: Covered algorithms with the options that exercise their whole local rule.
COVERED: dict[str, dict[str, Any]] = {
    "fedavg": {"name": "fedavg", "lr": 0.1, "local_epochs": 1, "batch_size": 16},
    "fedprox": {
        "name": "fedprox",
        "mu": 0.1,
        "lr": 0.1,
        "local_steps": 4,
        "batch_size": 16,
        "momentum": 0.5,
        "clip_norm": 1.0,
        "weight_decay": 1e-3,
    },
    "scaffold": {"name": "scaffold", "lr": 0.1, "local_epochs": 1, "batch_size": 16},
    "fedsam": {"name": "fedsam", "rho": 0.05, "lr": 0.1, "local_epochs": 1, "batch_size": 16},
    "feddyn": {"name": "feddyn", "alpha": 0.1, "lr": 0.1, "local_steps": 3, "batch_size": 16},
    "fedspeed": {"name": "fedspeed", "rho": 0.05, "lr": 0.1, "local_steps": 3, "batch_size": 16},
    "fedspeed_active": {
        "name": "fedspeed",
        "rho": 0.05,
        "alpha": 0.5,
        "perturb_normalized": False,
        "h_average": "active",
        "lr": 0.1,
        "local_epochs": 1,
        "batch_size": 16,
    },
    "fedbuff": {"name": "fedbuff", "lr": 0.1, "local_steps": 3, "batch_size": 16, "buffer_size": 2},
    "compressed_sgd": {
        "name": "compressed_sgd",
        "lr": 0.1,
        "batch_size": 16,
        "compressor": {"kind": "qsgd", "levels": 4},
    },
    "ef14": {"name": "ef14", "lr": 0.1, "batch_size": 16, "compressor": {"kind": "topk", "k": 20}},
    "ef21": {"name": "ef21", "lr": 0.1, "batch_size": 16, "compressor": {"kind": "topk", "k": 20}},
    "econtrol": {"name": "econtrol", "lr": 0.1, "batch_size": 16, "compressor": {"kind": "topk", "k": 20}},
    "ef21_sgdm": {"name": "ef21_sgdm", "lr": 0.1, "batch_size": 16, "compressor": {"kind": "sign"}},
}
#: Scenario sections a covered algorithm's case adds (a compressed uplink around local steps).
EXTRA: dict[str, dict[str, Any]] = {
    "fedavg_channel": {"compression": {"uplink": {"kind": "topk", "k": 30}, "error_feedback": "ef21"}},
}
COVERED["fedavg_channel"] = COVERED["fedavg"]


def _rows(raw: dict[str, Any], mode: str, path) -> list[dict[str, Any]]:
    result = flsim.run({**raw, "backend": {**raw.get("backend", {}), "vectorize": mode}}, run_dir=path)
    return metrics_without_wall_time(result.run_dir)


def _assert_close(loop: list[dict[str, Any]], batched: list[dict[str, Any]], rel: float) -> None:
    assert len(loop) == len(batched) > 1
    for a, b in zip(loop, batched, strict=True):
        assert a.keys() == b.keys()
        for key, value in a.items():
            if isinstance(value, float):
                assert b[key] == pytest.approx(value, rel=rel, abs=1e-12), (a["round"], key)
            else:
                assert b[key] == value, (a["round"], key)


@pytest.mark.parametrize("name", sorted(COVERED))
def test_batched_rounds_match_the_client_loop(name, tmp_path):
    """Dirichlet shards of unequal sizes: with local_epochs the clients fall into several
    groups; every metric (counters exactly, losses to 1e-5) is the loop's."""
    raw = tiny_digits(algorithm=COVERED[name], rounds=3, **EXTRA.get(name, {}))
    assert ClientHost(load_scenario({**raw, "backend": {"vectorize": "on"}})).vectorized is not None
    _assert_close(_rows(raw, "off", tmp_path / "off"), _rows(raw, "on", tmp_path / "on"), rel=1e-5)


#: Decentralized local phases (a ring; every node trains every round).
GOSSIP: dict[str, dict[str, Any]] = {
    "dpsgd": {"name": "dpsgd", "lr": 0.1, "batch_size": 16},
    "dfedavg": {"name": "dfedavg", "lr": 0.1, "local_epochs": 1, "batch_size": 16},
    "dfedavgm": {"name": "dfedavgm", "lr": 0.1, "local_steps": 3, "batch_size": 16},
    "dfedsam": {"name": "dfedsam", "lr": 0.1, "local_steps": 3, "batch_size": 16, "order": "gossip_first"},
    "dfedsam_mgs": {"name": "dfedsam_mgs", "lr": 0.1, "local_epochs": 1, "batch_size": 16},
}


@pytest.mark.parametrize("name", sorted(GOSSIP))
def test_batched_local_phases_match_the_node_loop(name, tmp_path):
    raw = tiny_digits(algorithm=GOSSIP[name], rounds=3, topology={"kind": "ring"}, clients_per_round=None)
    assert NodeHost(load_scenario({**raw, "backend": {"vectorize": "on"}})).vectorized is not None
    _assert_close(_rows(raw, "off", tmp_path / "off"), _rows(raw, "on", tmp_path / "on"), rel=1e-5)


#: Models that take the vmap path (docs/vectorized.md).
SELU_MLP = {"name": "mlp", "hidden": [16], "activation": "selu"}
BATCH_NORM_MLP = {"name": "mlp", "hidden": [16], "norm": "batch"}


@pytest.mark.parametrize("model", [SELU_MLP, BATCH_NORM_MLP], ids=["selu", "batch-norm"])
def test_vmapped_models_match_the_client_loop(model, tmp_path):
    raw = tiny_digits(task={"model": model}, algorithm=COVERED["scaffold"], rounds=3)
    _assert_close(_rows(raw, "off", tmp_path / "off"), _rows(raw, "on", tmp_path / "on"), rel=1e-5)


@pytest.mark.parametrize(("name", "batch_size"), [("fedavg", 8), ("scaffold", 8), ("fedavg", "full")])
def test_convex_batched_rounds_are_the_loop_bit_for_bit(name, batch_size, tmp_path):
    """On least squares the stacked gradient is the objective's own arithmetic (docs/vectorized.md)."""
    raw = tiny_linreg(algorithm={"name": name, "lr": 0.05, "local_steps": 3, "batch_size": batch_size})
    assert _rows(raw, "off", tmp_path / "off") == _rows(raw, "on", tmp_path / "on")


def _round_replies(raw: dict[str, Any], parts: list[list[int]]) -> dict[int, dict[str, torch.Tensor]]:
    scenario = load_scenario({**raw, "backend": {"vectorize": "on"}})
    host = ClientHost(scenario)
    assert host.vectorized is not None
    message = host.algorithm.broadcast(host.algorithm.init_server(initial_model(scenario, host.task)), 0)
    return {r.client: r.message for part in parts for r in host.run_clients(message, part, 0)}


@pytest.mark.parametrize(
    "raw",
    [
        tiny_digits(task={"partition": {"kind": "iid"}}, algorithm=COVERED["scaffold"]),
        tiny_digits(algorithm=COVERED["fedprox"]),
        tiny_linreg(),
        tiny_digits(task={"model": SELU_MLP}, algorithm=COVERED["fedavg"]),
        tiny_digits(task={"model": BATCH_NORM_MLP}, algorithm=COVERED["fedavg"]),
    ],
    ids=["mlp-scaffold", "mlp-fedprox-unequal", "linreg", "selu-vmap", "batch-norm-vmap"],
)
def test_a_clients_result_does_not_depend_on_its_stack(raw):
    """What makes local and Ray runs identical: a Ray actor stacks only its share of a round,
    so a client's reply must be the same bits whichever clients share its stack."""
    n = raw["task"]["num_clients"]
    together = _round_replies(raw, [list(range(n))])
    for parts in ([[0], [n - 1], list(range(1, n - 1))], [[c] for c in range(n)]):
        apart = _round_replies(raw, parts)
        assert together.keys() == apart.keys() == set(range(n))
        for client, message in together.items():
            for key, value in message.items():
                assert torch.equal(value, apart[client][key]), (client, key)


def _objectives() -> dict[str, tuple[Any, torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(3)
    k, b, f = 5, 6, 64
    features = torch.randn(k, b, f, generator=gen)
    labels = torch.randint(0, 10, (k, b), generator=gen)
    wide = features.double()
    mlp = nn.Sequential(nn.Linear(f, 16), nn.ReLU(), nn.Linear(16, 7), nn.ReLU(), nn.Linear(7, 10))
    regression = nn.Sequential(nn.Linear(f, 16), nn.ReLU(), nn.Linear(16, 1), nn.Flatten(0))
    tanh = nn.Sequential(nn.Linear(f, 16), nn.Tanh(), nn.Linear(16, 10))
    return {
        "least_squares": (
            LeastSquaresObjective(f, 0.3),
            wide,
            torch.randn(k, b, dtype=torch.float64, generator=gen),
        ),
        "logistic": (LogisticObjective(f, 0.1), wide, (labels % 2).double()),
        "mlp_cross_entropy": (ModuleObjective(mlp, nn.CrossEntropyLoss()), features, labels),
        "mlp_mse": (ModuleObjective(regression, nn.MSELoss()), features, torch.randn(k, b, generator=gen)),
        "tanh_vmap": (ModuleObjective(tanh, nn.CrossEntropyLoss()), features, labels),
    }


@pytest.mark.parametrize("name", sorted(_objectives()))
def test_stacked_gradients_are_each_rows_own_gradient(name):
    objective, x, y = _objectives()[name]
    gradient = stacked_gradient(objective)
    assert callable(gradient), gradient
    gen = torch.Generator().manual_seed(5)
    params = torch.stack([objective.init_params(gen) for _ in range(x.shape[0])])
    params = params + 0.1 * torch.randn(params.shape, generator=gen, dtype=params.dtype)
    stacked = gradient(params, x, y)
    for row in range(x.shape[0]):
        _, expected = objective.loss_and_grad(params[row], x[row], y[row])
        assert expected.abs().max() > 0
        torch.testing.assert_close(stacked[row], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(_objectives()))
@pytest.mark.parametrize("rows", [3, 4, 5])
def test_a_rows_stacked_gradient_does_not_depend_on_the_other_rows(name, rows):
    """Minibatches of 3 and 5 samples give slices whose offsets are not multiples of 64 bytes,
    where MKL's products round by alignment; every split of the stack must agree bit for bit."""
    objective, x, y = _objectives()[name]
    x, y = x[:, :rows], y[:, :rows]
    gradient = stacked_gradient(objective)
    assert callable(gradient), gradient
    gen = torch.Generator().manual_seed(6)
    params = torch.stack([objective.init_params(gen) for _ in range(x.shape[0])])
    together = gradient(params, x, y)
    for cut in range(1, x.shape[0]):
        apart = torch.cat(
            [gradient(params[:cut], x[:cut], y[:cut]), gradient(params[cut:], x[cut:], y[cut:])]
        )
        assert torch.equal(together, apart), cut


def test_models_with_convolutions_or_buffers_have_no_stacked_gradient():
    conv = nn.Sequential(nn.Unflatten(1, (1, 4, 4)), nn.Conv2d(1, 2, 3), nn.Flatten(1), nn.Linear(8, 2))
    assert "Conv2d" in str(stacked_gradient(ModuleObjective(conv, nn.CrossEntropyLoss())))
    norm = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    assert "buffers" in str(stacked_gradient(ModuleObjective(norm, nn.CrossEntropyLoss())))


def test_auto_falls_back_to_the_loop_and_says_why_once(caplog):
    raw = tiny_digits(task={"model": {"name": "cnn"}})
    with caplog.at_level(logging.INFO, logger="flsim.hosts.vectorized"):
        host = ClientHost(load_scenario(raw))
    assert host.vectorized is None
    lines = [r.getMessage() for r in caplog.records if r.name == "flsim.hosts.vectorized"]
    assert len(lines) == 1 and "Conv2d" in lines[0], lines


def test_auto_runs_an_uncovered_algorithm_as_a_loop(caplog):
    raw = tiny_digits(algorithm={"name": "fedamd", "lr": 0.1, "local_steps": 2, "batch_size": 16})
    with caplog.at_level(logging.INFO, logger="flsim.hosts.vectorized"):
        host = ClientHost(load_scenario(raw))
    assert host.vectorized is None
    assert any("'fedamd' has no batched client update" in r.getMessage() for r in caplog.records)


def test_on_with_an_uncovered_algorithm_is_a_config_error_at_load():
    raw = tiny_digits(
        algorithm={"name": "fedamd", "lr": 0.1, "local_steps": 2, "batch_size": 16},
        backend={"vectorize": "on"},
    )
    with pytest.raises(ConfigError) as error:
        load_scenario(raw)
    assert error.value.key == "backend.vectorize" and "fedamd" in str(error.value)


def test_on_with_a_cnn_fails_before_a_run_directory_exists(tmp_path):
    raw = tiny_digits(task={"model": {"name": "cnn"}}, backend={"vectorize": "on"})
    with pytest.raises(ConfigError) as error:
        flsim.run(raw, run_dir=tmp_path / "run")
    assert error.value.key == "backend.vectorize" and "Conv2d" in str(error.value)
    assert not (tmp_path / "run").exists()


def test_only_plain_sgd_steps_are_batched():
    def config(name: str, state: str = "reset") -> SimpleNamespace:
        return SimpleNamespace(client_optimizer=SimpleNamespace(name=name, state=state))

    assert vectorize_blocker(FedAvg, config("sgd")) is None
    assert "adam" in str(vectorize_blocker(FedAvg, config("adam")))
    assert "persist" in str(vectorize_blocker(FedAvg, config("sgd", "persist")))

    class Variant(FedAvg):
        name = "variant"

    assert "no batched client update" in str(vectorize_blocker(Variant, config("sgd")))


@pytest.mark.parametrize(("n", "batch_size", "steps"), [(64, 32, 10), (50, 16, 9), (7, 3, 8), (5, 4, 1)])
def test_stacked_minibatches_are_the_ones_the_loop_draws(n, batch_size, steps):
    """The slices of the concatenated shuffles are ClientContext.batches' minibatches."""
    index = torch.arange(n)
    ctx = ClientContext(0, Shard(index, index), None, torch_rng(4, "client", 0, 2), batch_size, 0.1, 2)
    stream = ctx.batches()
    expected = [next(stream).x for _ in range(steps)]
    shuffles = epoch_shuffles(n, batch_size, steps, torch_rng(4, "client", 0, 2))
    got = [shuffles[s] for s in step_slices(n, batch_size, steps)]
    assert len(got) == steps and all(torch.equal(a, b) for a, b in zip(expected, got, strict=True))


@pytest.mark.parametrize("algorithm", ["fedavg", "scaffold"])
def test_the_benchmark_times_the_same_round_both_ways(algorithm):
    """benchmarks.vectorized compares the engine's loop and batched rounds on the same clients."""
    _, rel = time_round(6, algorithm, repeats=1)
    assert rel <= 1e-5


def test_auto_batches_rounds_from_the_measured_size_on(caplog):
    with caplog.at_level(logging.INFO, logger="flsim.hosts.vectorized"):
        small = ClientHost(load_scenario(tiny_digits(clients_per_round=AUTO_MIN_CLIENTS - 1)))
    large = ClientHost(load_scenario(tiny_digits(clients_per_round=AUTO_MIN_CLIENTS)))
    assert small.vectorized is None and large.vectorized is not None
    assert any("fewer than the" in r.getMessage() for r in caplog.records)


def test_a_bare_yaml_on_or_off_is_the_switch_not_a_boolean(tmp_path):
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(tiny_digits()) + "backend:\n  vectorize: on\n")
    assert load_scenario(path).backend.vectorize == "on"
    assert load_scenario(path, ["backend.vectorize=off"]).backend.vectorize == "off"


def test_a_batched_stateful_run_resumes_bit_identically(tmp_path):
    """SCAFFOLD's c_i, written by the batched rule, are checkpointed and restored like the loop's."""
    from flsim.engine.simulation import RoundSimulation
    from tests.builders import run_until_crash

    raw = tiny_digits(
        algorithm=COVERED["scaffold"], rounds=6, checkpoint={"every": 2}, backend={"vectorize": "on"}
    )
    full = flsim.run(raw, run_dir=tmp_path / "full")
    run_until_crash(raw, tmp_path / "crashed", RoundSimulation, 3)
    resumed = flsim.resume(tmp_path / "crashed")
    assert metrics_without_wall_time(resumed.run_dir) == metrics_without_wall_time(full.run_dir)
